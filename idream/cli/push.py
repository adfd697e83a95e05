"""`python -m idream push`: a checkpoint folder and its model card uploaded to the Hugging Face Hub."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    """The push subcommand."""
    ph = sub.add_parser("push", help="upload a checkpoint folder with its model card to the Hugging Face Hub",
                        description="Upload a checkpoint folder (its config, weights and model card "
                                    "README.md; not an unfinished run's train-state/) to a model repo "
                                    "on the Hugging Face Hub, created if need be. Needs the network "
                                    "and a token that may write (HF_TOKEN or `hf auth login`); load "
                                    "it back anywhere with hf://OWNER/NAME.",
                        usage="%(prog)s DIR OWNER/NAME [--private] [--message TEXT]")
    ph.add_argument("folder", metavar="DIR", help="checkpoint folder to upload")
    ph.add_argument("repo", metavar="OWNER/NAME", help="model repo on the Hub (hf://OWNER/NAME also taken)")
    ph.add_argument("--private", action="store_true", help="create the repo private (if it is new)")
    ph.add_argument("--message", default=None, metavar="TEXT", help="the commit message")


def run(a) -> int:
    from idream.serving.hub import parse, push

    url = push(a.folder, a.repo, private=a.private, message=a.message)
    print(f"pushed {a.folder} to {url}; load it with hf://{parse(a.repo)[0]}", file=sys.stderr)
    return 0
