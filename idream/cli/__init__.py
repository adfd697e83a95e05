"""`python -m idream train | evaluate | recommend | guidance | new-items | describe | push`: thin
callers of the library, one module per subcommand (its options and what it runs). The
benchmarks have their own command, `python -m benchmarks`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from idream.cli import describe, evaluate, guidance, new_items, push, recommend, train
from idream.cli.common import Parser, run_guarded

COMMANDS = {"train": train, "evaluate": evaluate, "recommend": recommend, "guidance": guidance,
            "new-items": new_items, "describe": describe, "push": push}


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand's parser, each built by its own module."""
    p = Parser(prog="python -m idream", description="iDream: text-guided diffusion recommender")
    p.add_argument("--debug", action="store_true", help="show the traceback of every error")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "push" not in argv[:2]:  # the Hub's cache alone (HF_HUB_OFFLINE=0 to fetch hf:// ids); push needs the network
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no model-loading bar per request
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    args.argv = [x for x in argv if x != "--debug"]  # the command as written, for the files it makes
    return run_guarded(COMMANDS[args.command].run, args)
