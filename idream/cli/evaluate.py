"""`python -m idream evaluate`: HR@K / NDCG@K of a checkpoint or a reference scorer on one split,
printed, and with --save merged into the checkpoint's metrics.json and model card."""

from __future__ import annotations

import json
from pathlib import Path

from idream.cli.common import CLIError, add_text_flags, parse_ints, text_model


def add_parser(sub) -> None:
    """The evaluate subcommand."""
    e = sub.add_parser("evaluate", help="HR@K / NDCG@K on the validation or test split")
    e.add_argument("--checkpoint", metavar="DIR",
                   help="checkpoint folder (not needed for --baseline)")
    e.add_argument("--baseline", choices=["popularity", "textknn"],
                   help="evaluate a baseline instead of a checkpoint (default: none)")
    e.add_argument("--dataset", metavar="NAME|DIR",
                   help="dataset for --baseline (default: the checkpoint's)")
    add_text_flags(e, model_help="text model for --baseline textknn (default minilm); with "
                    "--checkpoint, must be the checkpoint's")
    e.add_argument("--history-len", type=int, default=10, metavar="N",
                   help="history window for --baseline (default: %(default)s)")
    e.add_argument("--split", choices=["valid", "test"], default="test",
                   help="which held-out items to rank (default: %(default)s)")
    e.add_argument("--users", type=int, default=0, metavar="N",
                   help="rank the cases of a seeded sample of N users (--seed draws them; "
                        "default: every user)")
    e.add_argument("--steps", type=parse_ints, default=[1], metavar="N[,N...]",
                   help="denoising steps, a comma list such as 1,10,50 (default: 1)")
    e.add_argument("--w", type=float, default=None,
                   help="history guidance weight (default: the checkpoint's)")
    e.add_argument("--rho", type=float, default=None,
                   help="intention strength (default: the checkpoint's)")
    e.add_argument("--intention", choices=["none", "generated"], default="none",
                   help="generated: each case gets an intention written from its target's "
                        "metadata (default: %(default)s)")
    e.add_argument("--seed", type=int, default=0, metavar="N",
                   help="random seed of the sampling noise and intentions (default: %(default)s)")
    e.add_argument("--dump-rankings", metavar="FILE",
                   help="write each user's top 50 to FILE (.csv or .jsonl)")
    e.add_argument("--save", action="store_true",
                   help="merge the rows into the checkpoint's metrics.json and model card "
                        "(default: print only, the checkpoint's files are left alone)")
    e.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="embedding cache (default: ~/.cache/idream)")
    e.add_argument("--json", action="store_true", help="print the result as JSON, not a table")


def run(a) -> int:
    """Check the request, compute the rows, print them (a table, or JSON with --json)."""
    from idream.evaluation.report import METRIC_KEYS
    from idream.serving.checkpoint import check_text_request, read_config

    a.text_model = text_model(a)
    if a.users < 0:
        raise CLIError("--users must be 0 (every user) or more")
    if a.checkpoint:
        check_text_request(read_config(Path(a.checkpoint)), a.checkpoint, a.text_model, a.descriptions)
    a.text_model = a.text_model or "minilm"
    result = _reference_rows(a) if a.baseline else _checkpoint_rows(a)
    if a.json:
        print(json.dumps(result, indent=2))
        return 0
    r0 = result["results"][0]
    sample = f" / {r0['cases']} of {r0['of_cases']} cases, a sample" if "of_cases" in r0 else ""
    print(f"{result['dataset']} / {result['split']} split / seed {result['seed']}{sample}")
    print(f"{'model':<28}" + "".join(f"{k:>9}" for k in METRIC_KEYS))
    for r in result["results"]:
        print(f"{r['label']:<28}" + "".join(f"{r['metrics'][k]:>9.4f}" for k in METRIC_KEYS))
    return 0


def _command(a) -> str:
    """The command that wrote a row, as metrics.json records it."""
    return "python -m idream " + " ".join(getattr(a, "argv", None) or ["evaluate"])


def _reference_rows(a) -> dict:
    """popularity or text-kNN on the checkpoint's dataset and history length (or the given ones)."""
    from idream import text
    from idream.data.catalog import item_embeddings
    from idream.data.datasets import chronological_split, load_dataset
    from idream.evaluation.report import baseline_entry, update_metrics
    from idream.serving.checkpoint import read_config

    if a.checkpoint:
        cfg = read_config(Path(a.checkpoint))
        ds_spec, L = a.dataset or cfg.data.dataset, cfg.model.history_len
        tm, desc = cfg.text.backend, cfg.text.descriptions
    else:
        if not a.dataset:
            raise CLIError("--baseline needs --dataset (or --checkpoint)")
        ds_spec, L, tm = a.dataset, a.history_len, a.text_model
        desc = a.descriptions or "template"
    ds = load_dataset(ds_spec)
    split = chronological_split(ds, L)
    E = item_embeddings(ds, text.get_backend(tm), desc, cache_dir=a.cache_dir, progress=False) \
        if a.baseline == "textknn" else None
    entries = [baseline_entry(a.baseline, ds, split, a.split, E, a.seed, a.dump_rankings, a.users)]
    if a.checkpoint and a.save:  # the card shows the baselines' rows too
        from idream.evaluation.card import write_model_card

        update_metrics(Path(a.checkpoint), entries, ds.name, _command(a))
        write_model_card(Path(a.checkpoint))
    return {"dataset": ds.name, "split": a.split, "seed": a.seed, "results": entries}


def _checkpoint_rows(a) -> dict:
    """The checkpoint, one row per --steps value (with --save: into metrics.json and the card)."""
    from idream.evaluation.card import write_model_card
    from idream.evaluation.report import evaluate_checkpoint, update_metrics
    from idream.serving.recommender import Recommender

    if not a.checkpoint:
        raise CLIError("evaluate needs --checkpoint DIR (or --baseline NAME --dataset D)")
    rec = Recommender.load(a.checkpoint)
    if a.cache_dir:
        rec.config["cache_dir"] = a.cache_dir
    entries = evaluate_checkpoint(rec, a.split, a.steps, a.w, a.rho, a.intention, a.seed,
                                  a.dump_rankings, users=a.users)
    if a.save:
        update_metrics(Path(a.checkpoint), entries, rec.dataset.name, _command(a))
        write_model_card(Path(a.checkpoint))
    return {"dataset": rec.dataset.name, "split": a.split, "seed": a.seed, "results": entries}
