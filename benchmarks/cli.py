"""`python -m benchmarks quality | text | speed | epoch | newitems | coldstart | ...`: the harness
that measures iDream against its peers. It imports the library; the library never imports it.
Run it from the repository root (it is not installed with the package)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from idream.cli.common import Parser, parse_ints, run_guarded


def build_parser() -> argparse.ArgumentParser:
    """Every benchmark's subcommand and its options."""
    p = Parser(prog="python -m benchmarks", description="iDream's benchmarks: quality against peers, "
                                                       "text steering, speed, new items, cold start")
    bs = p.add_subparsers(dest="what", required=True, parser_class=Parser)
    c = bs.add_parser("coldstart", help="load + one answer from a fresh process (into metrics.json)")
    c.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="checkpoint folder to time (required)")
    c.add_argument("--repeats", type=int, default=5, metavar="N",
                   help="fresh processes to time; the median is reported (default: %(default)s)")
    q = bs.add_parser("quality", help="every model on the same split and seeds")
    q.add_argument("--dataset", default="ml-100k", metavar="NAME|DIR",
                   help="ml-100k or a dataset folder (default: %(default)s)")
    q.add_argument("--seeds", type=parse_ints, default=[0, 1, 2], metavar="N[,N...]",
                   help="training seeds, a comma list (default: 0,1,2)")
    q.add_argument("--models", type=lambda s: [m for m in s.split(",") if m], metavar="M[,M...]",
                   default=["popularity", "textknn", "sasrec", "dreamrec", "idream"],
                   help="models to compare, a comma list "
                        "(default: popularity,textknn,sasrec,dreamrec,idream)")
    q.add_argument("--train-overrides", default="", metavar="JSON",
                   help='JSON of TrainConfig fields, e.g. {"epochs": 8}')
    q.add_argument("--sasrec-overrides", default="", metavar="JSON",
                   help="JSON of SASRecConfig fields (default: the settings tuned on validation, "
                        "iDream's time budget)")
    q.add_argument("--dreamrec-overrides", default="", metavar="JSON",
                   help="JSON of TrainConfig fields for DreamRec alone, over --train-overrides")
    q.add_argument("--cold", type=float, default=0.0, metavar="SHARE",
                   help="cold-start protocol: this share of the items never trains (drawn per seed); "
                        "writes bench-quality-<dataset>-cold.* (default: 0, off)")
    q.add_argument("--device", default="cpu", metavar="DEV",
                   help="where training runs: cpu or cuda (default: cpu)")
    q.add_argument("--out", default="results", metavar="DIR",
                   help="folder for the .json and .md results (default: %(default)s)")
    q.add_argument("--threads", type=int, default=0, metavar="N",
                   help="torch threads (0: torch's default; 1 when other work shares the CPU)")
    tx = bs.add_parser("text", add_help=False,
                       help="free-phrased intentions against text search and late fusion, the ρ dial, "
                            "the generated-intention lift (results/bench-text-<dataset>.md)")
    tx.add_argument("args", nargs=argparse.REMAINDER,
                    help="the text benchmark's own options: `python -m benchmarks text --help` lists them")
    tb = bs.add_parser("table", help="rewrite a quality table (.md) from its .json, no retraining")
    tb.add_argument("json", help="a bench-quality-*.json written by `python -m benchmarks quality`")
    mg = bs.add_parser("merge", help="one quality table from runs made side by side (other seeds or models)")
    mg.add_argument("jsons", nargs="+", help="bench-quality-*.json files of the same dataset and split")
    mg.add_argument("--out", type=Path, default=Path("results"), help="folder for the merged .json/.md")
    sy = bs.add_parser("synthetic", help="write a synthetic dataset folder, by default shaped like "
                                         "MovieLens-20M (to measure loading and training at scale)")
    sy.add_argument("--out", required=True, type=Path, metavar="DIR", help="dataset folder to write")
    sy.add_argument("--users", type=int, default=138_000, metavar="N",
                    help="how many users (default: %(default)s)")
    sy.add_argument("--items", type=int, default=27_000, metavar="N",
                    help="how many items in the catalog (default: %(default)s)")
    sy.add_argument("--interactions", type=int, default=20_000_000, metavar="N",
                    help="how many interactions in all, none repeated (default: %(default)s)")
    sy.add_argument("--seed", type=int, default=0, metavar="N",
                    help="random seed: the same seed writes the same files (default: %(default)s)")
    ep = bs.add_parser("epoch", help="what a training epoch costs: iDream's step against SASRec's")
    ep.add_argument("--dataset", default="ml-100k", metavar="NAME|DIR",
                    help="dataset name or folder whose training windows are timed (default: %(default)s)")
    ep.add_argument("--train-overrides", default="", metavar="JSON", help="iDream TrainConfig fields, as JSON")
    ep.add_argument("--sasrec-overrides", default="", metavar="JSON", help="SASRecConfig fields, as JSON")
    ep.add_argument("--steps", type=int, default=20, metavar="N", help="steps per timed block (default: %(default)s)")
    ep.add_argument("--blocks", type=int, default=3, metavar="N",
                    help="alternating timed blocks per model (default: %(default)s)")
    ep.add_argument("--threads", type=int, default=1, metavar="N", help="torch threads (default: %(default)s)")
    ep.add_argument("--tag", default="", metavar="NAME", help="suffix of the results files' name")
    ep.add_argument("--out", default="results", metavar="DIR",
                    help="folder for the .json and .md results (default: %(default)s)")
    nb = bs.add_parser("newitems", help="hand-written new items ranked against a text-only reference, "
                                        "per half (results/bench-newitems-<dataset>.md)")
    nb.add_argument("--checkpoint", default="checkpoints/ml-100k", metavar="DIR",
                    help="checkpoint folder to measure (default: %(default)s)")
    nb.add_argument("--half", choices=["dev", "test"], default=None,
                    help="dev: where choices are made; test: read once to report (default: both)")
    nb.add_argument("--cases", default=None, metavar="FILE",
                    help="a case file of the same form (default: the benchmark's own hand-written set)")
    nb.add_argument("--out", default="results", metavar="DIR",
                    help="folder for the .json and .md results (default: %(default)s)")
    nb.add_argument("--threads", type=int, default=0, metavar="N",
                    help="torch threads (0: torch's default; 1 when other work shares the CPU)")
    nb.add_argument("--set-c", action="store_true",
                    help="instead: choose c of the checkpoint's new-item rule (how much a new item's "
                         "text closeness to the intention adds) on the dev half, and write it into "
                         "its config.json and model card")
    sp = bs.add_parser("speed", help="latency per request and training throughput")
    sp.add_argument("--checkpoint", default="checkpoints/ml-100k", metavar="DIR",
                    help="checkpoint folder to time (default: %(default)s)")
    sp.add_argument("--sizes", type=parse_ints, default=[1682, 100_000, 1_000_000], metavar="N[,N...]",
                    help="catalog sizes to time, a comma list (default: 1682,100000,1000000)")
    sp.add_argument("--repeats", type=int, default=30, metavar="N",
                    help="timed requests per size (default: %(default)s)")
    sp.add_argument("--users", type=int, default=200, metavar="N",
                    help="real users whose oracles measure the index's recall@10 (default: %(default)s)")
    sp.add_argument("--threads", type=int, default=0, metavar="N",
                    help="torch and faiss threads (0: their defaults; 1 when other work shares the CPU)")
    sp.add_argument("--rows", type=lambda s: [r.strip() for r in s.split(",")], metavar="KIND[,KIND...]",
                    default=["gaussian", "near copies", "noisy copies"],
                    help="synthetic rows beyond the real items: gaussian, near copies, noisy copies")
    sp.add_argument("--merge", action="store_true",
                    help="keep the results file's rows at the sizes and kinds not measured now")
    sp.add_argument("--out", default="results", metavar="DIR",
                    help="folder for the .json and .md results (default: %(default)s)")
    return p


def run(a) -> int:
    """Only the benchmark asked for is imported."""
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if a.what == "coldstart":
        from benchmarks.coldstart import bench_coldstart
        print(json.dumps(bench_coldstart(a.checkpoint, a.repeats), indent=2))
    elif a.what == "quality":
        from benchmarks.quality import main_quality
        main_quality(a)  # it refuses unknown model names before any work
    elif a.what == "text":
        from benchmarks import text as bench_text
        bench_text.main(a.args, prog="python -m benchmarks text")
    elif a.what == "table":
        from benchmarks.quality import main_table
        main_table(a)
    elif a.what == "synthetic":
        from benchmarks.synthetic import generate
        print(json.dumps(generate(a.out, a.users, a.items, a.interactions, a.seed, log=log)))
    elif a.what == "epoch":
        from benchmarks.epoch import main_epoch
        main_epoch(a)
    elif a.what == "merge":
        from benchmarks.quality import main_merge
        main_merge(a)
    elif a.what == "newitems":
        from benchmarks.newitems import main_newitems
        main_newitems(a)
    else:
        from benchmarks.speed import main_speed
        main_speed(a)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if argv[:1] == ["text"]:  # its options are the text benchmark's own, passed on whole
        args = parser.parse_args(argv[:1])
        args.args = argv[1:]
    else:
        args = parser.parse_args(argv)
    args.argv = argv
    return run_guarded(run, args)
