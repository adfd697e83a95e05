"""What every subcommand shares: the parser with one-line errors, the error a user can act on,
argument types, and the text-model flags."""

from __future__ import annotations

import argparse
import sys

from idream.errors import InputError

EXIT_USAGE = 2


class CLIError(InputError):
    """A user-facing failure: printed as one line, exit code 2."""


def parse_bool(s: str) -> bool:
    """true/false, yes/no, 1/0 (argparse's type=bool would read "False" as True)."""
    v = s.strip().lower()
    if v in ("true", "yes", "1", "on"):
        return True
    if v in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def parse_ints(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


class HelpFormatter(argparse.HelpFormatter):
    """argparse's layout with a wider flag column, so most flags keep their words on one line."""

    def __init__(self, prog, indent_increment=2, max_help_position=26, width=None):
        super().__init__(prog, indent_increment, max_help_position, width)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, exit 2 (argparse prints usage first; keep it short)
        # an argument quoted back may hold newlines or control characters: show them escaped
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def add_text_flags(p, model: bool = True, descriptions: bool = True, model_help: str = "") -> None:
    """--tem/--text-model, --tem-dim (OpenAI shortened vectors) and --descriptions."""
    from idream.data.catalog import DESCRIPTION_SOURCES

    if model:
        p.add_argument("--tem", "--text-model", dest="text_model", default=None, metavar="SPEC",
                       help=model_help)
    p.add_argument("--tem-dim", type=int, default=None, metavar="DIM",
                   help="shorter openai:MODEL vectors: their `dimensions` (default: full length)")
    if descriptions:
        p.add_argument("--descriptions", choices=DESCRIPTION_SOURCES, default=None, metavar="SRC",
                       help="must be the checkpoint's description source (default: the checkpoint's)")


def text_model(a) -> str | None:
    """The requested text-model spec with --tem-dim folded in ("openai:MODEL@DIM")."""
    from idream.text.openai_backend import spec_with_dimensions

    if a.tem_dim is None:
        return a.text_model
    if a.text_model is None:
        raise CLIError("--tem-dim needs --tem openai:MODEL")
    return spec_with_dimensions(a.text_model, a.tem_dim)


def run_guarded(handler, args) -> int:
    """Run a subcommand: what the user can mend (InputError, an unreadable file) is one line on
    stderr and exit code 2; anything else is a bug and keeps its traceback (so does every error
    with --debug)."""
    try:
        return handler(args)
    except (InputError, OSError) as e:
        if getattr(args, "debug", False):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {msg.strip(chr(39))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
