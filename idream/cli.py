"""`python -m idream train | evaluate | recommend | bench` — thin callers of the library."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

EXIT_USAGE = 2


class CLIError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


def _floats(s: str) -> list[float]:
    try:
        return [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None


def _ints(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage first; keep it short)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .train import TrainConfig

    p = Parser(prog="python -m idream", description="iDream: text-guided diffusion recommender")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="train a model and write a checkpoint folder")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name in ("dataset", "w_grid", "rho_grid", "item_residual"):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        t.add_argument(flag, type=type(default), default=default, help=f"(default: {default})")
    t.add_argument("--dataset", default="ml-100k", help="ml-100k or a dataset folder")
    t.add_argument("--no-residual", dest="item_residual", action="store_false",
                   help="pure text item vectors, the paper's form (no learned residual)")
    t.add_argument("--out", required=True, help="checkpoint folder to write")
    t.add_argument("--cache-dir", default=None, help="embedding cache (default ~/.cache/idream)")
    t.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation")
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    e = sub.add_parser("evaluate", help="HR@K / NDCG@K on the validation or test split")
    e.add_argument("--checkpoint", help="checkpoint folder (not needed for --baseline)")
    e.add_argument("--baseline", choices=["popularity", "textknn"])
    e.add_argument("--dataset", help="dataset for --baseline (default: the checkpoint's)")
    e.add_argument("--text-model", default="minilm", help="text model for --baseline textknn")
    e.add_argument("--history-len", type=int, default=10, help="history window for --baseline")
    e.add_argument("--split", choices=["valid", "test"], default="test")
    e.add_argument("--steps", type=_ints, default=[1], help="comma list, e.g. 1,10,50")
    e.add_argument("--w", type=float, default=None, help="history guidance (default: checkpoint's)")
    e.add_argument("--rho", type=float, default=None, help="intention strength (default: checkpoint's)")
    e.add_argument("--intention", choices=["none", "generated"], default="none")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--dump-rankings", metavar="FILE", help="per-user top-50 (.csv or .jsonl)")
    e.add_argument("--no-save", action="store_true", help="do not update the checkpoint's metrics.json")
    e.add_argument("--cache-dir", default=None)
    e.add_argument("--json", action="store_true")

    r = sub.add_parser("recommend", help="rank the catalog for a history and/or an intention")
    r.add_argument("--checkpoint", required=True)
    g = r.add_mutually_exclusive_group()
    g.add_argument("--history", nargs="*", default=[], metavar="ITEM",
                   help="item ids or exact titles, oldest first")
    g.add_argument("--user", help="use this user's items before their test item")
    r.add_argument("--intention", default=None)
    r.add_argument("--rho", type=float, default=None)
    r.add_argument("--w", type=float, default=None)
    r.add_argument("--steps", type=int, default=1)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--k", type=int, default=10)
    r.add_argument("--json", action="store_true")

    b = sub.add_parser("bench", help="measurements written next to the checkpoint")
    b.add_argument("what", choices=["coldstart"])
    b.add_argument("--checkpoint", required=True)
    b.add_argument("--repeats", type=int, default=5)
    return p


# ---------------------------------------------------------------------------------------------

def cmd_train(a) -> int:
    from .checkpoint import save_checkpoint
    from .report import standard_evaluation, write_model_card
    from .train import TrainConfig, train

    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(a).items() if k in known})
    rec, split, E = train(cfg, cache_dir=a.cache_dir, progress=not a.quiet,
                          log_fn=lambda s: print(s, file=sys.stderr, flush=True))
    rec.config["train"]["command"] = "python -m idream " + " ".join(sys.argv[1:])
    out = save_checkpoint(rec, a.out, E)
    print(f"checkpoint written to {out}", file=sys.stderr)
    if not a.no_eval:
        standard_evaluation(rec, split, E, out, seed=cfg.seed, log_fn=lambda s: print(s, file=sys.stderr))
    write_model_card(out)
    return 0


def cmd_evaluate(a) -> int:
    from .report import evaluate_command

    result = evaluate_command(a)
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['dataset']} / {result['split']} split / seed {result['seed']}")
        keys = ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20"]
        print(f"{'model':<28}" + "".join(f"{k:>9}" for k in keys))
        for r in result["results"]:
            print(f"{r['label']:<28}" + "".join(f"{r['metrics'][k]:>9.4f}" for k in keys))
    return 0


def cmd_recommend(a) -> int:
    from .recommender import Recommender

    rec = Recommender.load(a.checkpoint)
    history = list(a.history)
    if a.user is not None:
        history = rec.user_history(a.user)
        history = [rec.dataset.item_meta(i)["item_id"] for i in history]
    out = rec.recommend(history, a.intention, rho=a.rho, w=a.w, steps=a.steps, k=a.k, seed=a.seed)
    if a.json:
        print(json.dumps(out.to_dict(), ensure_ascii=False))
    else:
        print(f"{'rank':>4}  {'item_id':>8}  {'score':>9}  title")
        for row in out.items:
            print(f"{row['rank']:>4}  {row['item_id']!s:>8}  {row['score']:>9.3f}  {row['title']}")
    return 0


def cmd_bench(a) -> int:
    from .report import bench_coldstart

    print(json.dumps(bench_coldstart(a.checkpoint, a.repeats), indent=2))
    return 0


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    handler = {"train": cmd_train, "evaluate": cmd_evaluate, "recommend": cmd_recommend,
               "bench": cmd_bench}[args.command]
    from .checkpoint import CheckpointError
    from .data import DatasetError
    try:
        return handler(args)
    except (CLIError, CheckpointError, DatasetError, ValueError, KeyError, FileNotFoundError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {msg.strip(chr(39))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
