"""`python -m idream train | evaluate | recommend | describe | bench` — thin callers of the library."""

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


def _bool(s: str) -> bool:
    """true/false, yes/no, 1/0 (argparse's type=bool would read "False" as True)."""
    v = s.strip().lower()
    if v in ("true", "yes", "1", "on"):
        return True
    if v in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


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
        # an argument quoted back may hold newlines or control characters: show them escaped
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .catalog import DESCRIPTION_SOURCES
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
        flags = [flag, "--tem"] if f.name == "text_model" else [flag]
        extra = {"choices": DESCRIPTION_SOURCES} if f.name == "descriptions" else {}
        kind = _bool if isinstance(default, bool) else type(default)
        t.add_argument(*flags, type=kind, default=default, help=f"(default: {default})", **extra)
    _add_text_flags(t, model=False, descriptions=False)
    t.add_argument("--dataset", default="ml-100k", help="ml-100k or a dataset folder")
    t.add_argument("--no-residual", dest="item_residual", action="store_false",
                   help="pure text item vectors, the paper's form (no learned residual)")
    t.add_argument("--out", required=True, help="checkpoint folder to write")
    t.add_argument("--cache-dir", default=None, help="embedding cache (default ~/.cache/idream)")
    t.add_argument("--no-eval", action="store_true",
                   help="skip the final report (validation rows, then the test split read once)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    e = sub.add_parser("evaluate", help="HR@K / NDCG@K on the validation or test split")
    e.add_argument("--checkpoint", help="checkpoint folder (not needed for --baseline)")
    e.add_argument("--baseline", choices=["popularity", "textknn"])
    e.add_argument("--dataset", help="dataset for --baseline (default: the checkpoint's)")
    _add_text_flags(e, model_help="text model for --baseline textknn (default minilm); with "
                    "--checkpoint, must be the checkpoint's")
    e.add_argument("--history-len", type=int, default=10, help="history window for --baseline")
    e.add_argument("--split", choices=["valid", "test"], default="test")
    e.add_argument("--steps", type=_ints, default=[1], help="comma list, e.g. 1,10,50")
    e.add_argument("--w", type=float, default=None, help="history guidance (default: checkpoint's)")
    e.add_argument("--rho", type=float, default=None, help="intention strength (default: checkpoint's)")
    e.add_argument("--intention", choices=["none", "generated"], default="none")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--dump-rankings", metavar="FILE", help="per-user top-50 (.csv or .jsonl)")
    e.add_argument("--save", action="store_true",
                   help="merge the rows into the checkpoint's metrics.json and model card "
                        "(default: print only, the checkpoint's files are left alone)")
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
    _add_text_flags(r, model_help="must be the checkpoint's text model (default: the checkpoint's)")

    d = sub.add_parser("describe", help="write item descriptions with a chat LLM (cached, resumable)")
    d.add_argument("--dataset", default="ml-100k", help="ml-100k or a dataset folder")
    d.add_argument("--llm", required=True, metavar="MODEL", help="chat model, e.g. gpt-4o-mini")
    d.add_argument("--max-items", type=int, default=None, help="describe at most N items this run")
    d.add_argument("--concurrency", type=int, default=4, help="requests in flight (default: 4)")
    d.add_argument("--cache-dir", default=None, help="cache folder (default ~/.cache/idream)")
    d.add_argument("--dry-run", action="store_true", help="print the plan, make no request")
    d.add_argument("--quiet", action="store_true", help="no progress bar")

    b = sub.add_parser("bench", help="benchmarks: quality vs peers, request speed, cold start")
    bs = b.add_subparsers(dest="what", required=True, parser_class=Parser)
    c = bs.add_parser("coldstart", help="load + one answer from a fresh process (into metrics.json)")
    c.add_argument("--checkpoint", required=True)
    c.add_argument("--repeats", type=int, default=5)
    q = bs.add_parser("quality", help="every model on the same split and seeds")
    q.add_argument("--dataset", default="ml-100k")
    q.add_argument("--seeds", type=_ints, default=[0, 1, 2])
    q.add_argument("--models", type=lambda s: [m for m in s.split(",") if m],
                   default=["popularity", "textknn", "sasrec", "dreamrec", "idream"])
    q.add_argument("--train-overrides", default="", help='JSON of TrainConfig fields, e.g. {"epochs": 8}')
    q.add_argument("--sasrec-overrides", default="",
                   help="JSON of SASRecConfig fields (default: the settings tuned on validation, "
                        "iDream's time budget)")
    q.add_argument("--dreamrec-overrides", default="",
                   help="JSON of TrainConfig fields for DreamRec alone, over --train-overrides")
    q.add_argument("--device", default="cpu", help="where training runs: cpu or cuda (default: cpu)")
    q.add_argument("--out", default="results")
    q.add_argument("--threads", type=int, default=0,
                   help="torch threads (0: torch's default; 1 when other work shares the CPU)")
    tb = bs.add_parser("table", help="rewrite a quality table (.md) from its .json, no retraining")
    tb.add_argument("json", help="a bench-quality-*.json written by `bench quality`")
    sp = bs.add_parser("speed", help="latency per request and training throughput")
    sp.add_argument("--checkpoint", default="checkpoints/ml-100k")
    sp.add_argument("--sizes", type=_ints, default=[1682, 100_000, 1_000_000])
    sp.add_argument("--repeats", type=int, default=30)
    sp.add_argument("--out", default="results")
    return p


def _add_text_flags(p, model: bool = True, descriptions: bool = True, model_help: str = "") -> None:
    """--tem/--text-model, --tem-dim (OpenAI shortened vectors) and --descriptions."""
    from .catalog import DESCRIPTION_SOURCES

    if model:
        p.add_argument("--tem", "--text-model", dest="text_model", default=None, help=model_help)
    p.add_argument("--tem-dim", type=int, default=None,
                   help="shortened OpenAI embeddings: the `dimensions` of an openai:MODEL text model")
    if descriptions:
        p.add_argument("--descriptions", choices=DESCRIPTION_SOURCES, default=None,
                       help="must be the checkpoint's description source (default: the checkpoint's)")


def _text_model(a) -> str | None:
    """The requested text-model spec with --tem-dim folded in ("openai:MODEL@DIM")."""
    from .openai_backend import spec_with_dimensions

    if a.tem_dim is None:
        return a.text_model
    if a.text_model is None:
        raise CLIError("--tem-dim needs --tem openai:MODEL")
    return spec_with_dimensions(a.text_model, a.tem_dim)


# ---------------------------------------------------------------------------------------------

def cmd_train(a) -> int:
    from .checkpoint import save_checkpoint
    from .report import standard_evaluation, write_model_card
    from .train import TrainConfig, train

    a.text_model = _text_model(a)
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
    from .checkpoint import check_text_request, read_config
    from .report import evaluate_command

    a.text_model = _text_model(a)
    if a.checkpoint:
        check_text_request(read_config(Path(a.checkpoint)), a.checkpoint, a.text_model,
                           a.descriptions)
    a.text_model = a.text_model or "minilm"
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

    rec = Recommender.load(a.checkpoint, text_model=_text_model(a), descriptions=a.descriptions)
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


def cmd_describe(a) -> int:
    from urllib.parse import urlsplit

    from .data import load_dataset
    from .llm import describe_catalog, descriptions_path, plan_descriptions
    from .openai_backend import base_url

    if a.max_items is not None and a.max_items < 0:
        raise CLIError("--max-items must be 0 or more")
    if a.concurrency < 1:
        raise CLIError("--concurrency must be at least 1")
    ds = load_dataset(a.dataset)
    path = descriptions_path(ds.name, a.cache_dir)
    url = urlsplit(base_url() or "https://api.openai.com/v1")
    where = url.hostname + (f":{url.port}" if url.port else "") if url.hostname else "OPENAI_BASE_URL"

    def show(plan) -> None:
        capped = f" (--max-items {a.max_items})" if plan.requests < plan.missing else ""
        print(f"{ds.name}: {plan.total} items, {plan.cached} already described by {a.llm}, "
              f"{plan.missing} to describe")
        print(f"will make {plan.requests} chat requests{capped} to {a.llm} at {where} "
              f"(concurrency {a.concurrency}; retries come on top)", flush=True)

    if a.dry_run:
        show(plan_descriptions(ds.all_item_meta(), a.llm, path, a.max_items))
        return 0
    s = describe_catalog(ds.all_item_meta(), a.llm, path, max_items=a.max_items,
                         concurrency=a.concurrency, progress=not a.quiet, on_plan=show)
    print(f"{s['complete']}/{s['total']} items described by {a.llm} ({s['written']} new, "
          f"{s['retries']} retries); cache: {path}")
    if s["skipped"]:
        print(f"the server refused {len(s['skipped'])} items (ids {', '.join(s['skipped'][:10])}); "
              "see the warnings above", file=sys.stderr)
        return 1
    if s["complete"] < s["total"]:
        print(f"{s['total'] - s['complete']} items still lack a description; run the command "
              "again to continue")
    return 0


def cmd_bench(a) -> int:
    if a.what == "coldstart":
        from .report import bench_coldstart
        print(json.dumps(bench_coldstart(a.checkpoint, a.repeats), indent=2))
    elif a.what == "quality":
        from .bench import main_quality
        main_quality(a)  # it refuses unknown model names before any work
    elif a.what == "table":
        from .bench import main_table
        main_table(a)
    else:
        from .bench import main_speed
        main_speed(a)
    return 0


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no model-loading bar per request
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    handler = {"train": cmd_train, "evaluate": cmd_evaluate, "recommend": cmd_recommend,
               "describe": cmd_describe, "bench": cmd_bench}[args.command]
    from .checkpoint import CheckpointError
    from .data import DatasetError
    from .openai_backend import OpenAIServiceError
    try:
        return handler(args)
    except (CLIError, CheckpointError, DatasetError, ValueError, KeyError, OSError, RuntimeError,
            OpenAIServiceError) as e:  # OSError: unreadable files; RuntimeError: text model missing
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {msg.strip(chr(39))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
