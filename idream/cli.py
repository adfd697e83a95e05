"""`python -m idream train | evaluate | recommend | describe | push | bench` — thin callers of the library."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
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


# Words for every TrainConfig field: `train --help` shows them next to the generated flags, so a
# new field without an entry here stops the parser from being built (tests/test_cli_help.py).
HELP = {
    # data
    "dataset": "ml-100k or a dataset folder",
    "history_len": "how many recent items the model reads per prediction",
    "max_train_samples": "train on about this many targets at random (0: all; for quick tests)",
    "valid_users": "validate on a seeded sample of this many users (0: all; for large data)",
    "cold_frac": "share of the catalog held out of training, the cold-start protocol (0: none)",
    "cold_seed": "seed of the draw of held-out items (with --cold-frac)",
    # text
    "text_model": "text encoder: minilm, st:FOLDER, openai:MODEL[@DIM] or hash:DIM",
    "descriptions": "item texts to embed: template (from metadata) or llm (`describe`)",
    "transform": "map of the text vectors: none, scale or whiten",
    "item_source": "item vectors: text, or id (DreamRec's learned ID vectors, no text)",
    "id_dim": "size of the ID vectors with --item-source id",
    # model
    "width": "hidden width of the transformer blocks",
    "depth": "transformer blocks of the denoiser",
    "heads": "attention heads per block",
    "dropout": "dropout inside the blocks",
    "encoder": "history encoder: causal (SASRec-style) or incontext (the paper's)",
    "encoder_depth": "transformer blocks of the causal history encoder",
    "item_residual": "pure text item vectors, the paper's form (default: a learned residual too)",
    "residual_scale": "multiplier of the learned per-item residual",
    "text_dims": "keep only this many principal text directions, whitened (0: all)",
    "id_dims": "learn each item's residual in this many directions of its own (0: over the text)",
    "denoiser": "denoiser: tokens (a transformer over history, intention, step, x_t) or adaln "
                "(one x_t token conditioned by adaLN-Zero)",
    # diffusion
    "T": "diffusion steps of the noise schedule",
    "schedule": "noise schedule: linear or cosine",
    "p_t_max": "share of targets trained at the last step, the one 1-step sampling uses",
    "p_uncond": "share of targets trained without history (for history guidance w)",
    "p_intention": "share of targets trained with an intention sentence",
    "intention_pool": "generated intention sentences per item for training",
    "w_grid": "history guidance weights w tried on validation after training",
    "rho_grid": "intention strengths rho tried on validation after training (--guidance learned)",
    "guidance": "what rho does: turn (toward the intention's text direction) or learned (the paper's)",
    "kappa": "--guidance turn: weight of the learned guidance term per unit of rho",
    # training
    "lr": "learning rate of AdamW",
    "weight_decay": "weight decay of AdamW",
    "batch_size": "targets per step with --encoder incontext",
    "seq_batch_size": "history windows per step with --encoder causal (each: many targets)",
    "epochs": "at most this many passes over the training data",
    "patience": "stop after this many epochs without a validation NDCG@10 gain",
    "seed": "random seed of initialisation, batches and noise",
    "threads": "torch CPU threads (0: torch's default)",
    "device": "where the training steps run: cpu or cuda (evaluation runs on cpu)",
    "ce_weight": "weight of the auxiliary ranking loss (0: the paper's x0 regression only)",
    "tau": "temperature of the ranking loss's softmax over items",
    "future_k": "causal encoder: the ranking loss targets the next k items",
    "future_decay": "causal encoder: weight of the j-th next item is decay**j",
    # budget
    "max_minutes": "training budget in minutes (embedding and evaluation come on top)",
    "clock": "what the budget counts: wall seconds or cpu (this process's) seconds",
}

# TrainConfig fields with no flag of their own
NO_FLAG = {"w_grid": "a tuple; set it in Python (TrainConfig)",
           "rho_grid": "a tuple; set it in Python (TrainConfig)"}

ADVANCED = ("advanced", "For research; a newcomer never needs them. The defaults are the tuned "
                        "values the shipped model was trained with (docs/tuning.md).")

# The groups of `train --help`, in order, and the destinations each holds, in order: TrainConfig
# fields (their flags are generated) and the other train flags (tem_dim, out, cache_dir, ...).
TRAIN_GROUPS = (
    ("data", None, ("dataset", "history_len")),
    ("text", None, ("text_model", "tem_dim", "descriptions", "transform")),
    ("model", None, ("width", "depth", "heads", "dropout", "encoder", "denoiser", "item_residual",
                     "text_dims", "id_dims")),
    ("diffusion", None, ("T", "schedule", "p_t_max", "guidance")),
    ("training", None, ("lr", "weight_decay", "seq_batch_size", "batch_size", "epochs", "patience",
                        "seed", "threads", "device")),
    ("budget", None, ("max_minutes", "clock")),
    ("output", None, ("out", "resume", "cache_dir", "no_eval", "quiet")),
    (*ADVANCED, ("ce_weight", "tau", "future_k", "future_decay", "p_uncond", "p_intention",
                 "intention_pool", "kappa", "encoder_depth", "residual_scale", "item_source", "id_dim",
                 "max_train_samples", "valid_users", "cold_frac", "cold_seed")),
)

_METAVAR = {int: "N", float: "X", str: "NAME", bool: "BOOL"}
_FIELD_METAVAR = {"dataset": "NAME|DIR", "text_model": "SPEC", "descriptions": "SRC",
                  "transform": "KIND", "schedule": "KIND", "encoder": "KIND", "denoiser": "KIND", "item_source": "SRC",
                  "clock": "CLOCK", "device": "DEV", "T": "N"}


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


def _add_train_flags(t) -> None:
    """The train flags, in TRAIN_GROUPS's groups; one per TrainConfig field (but NO_FLAG's)."""
    from .catalog import DESCRIPTION_SOURCES
    from .train import TrainConfig

    defaults = TrainConfig()
    by_name = {f.name for f in fields(TrainConfig)}
    placed = [d for _, _, dests in TRAIN_GROUPS for d in dests]
    missing = sorted(set(by_name) - set(HELP)) + sorted(set(by_name) - set(placed) - set(NO_FLAG))
    assert len(placed) == len(set(placed)), "a train flag in two groups"
    if missing:  # a new TrainConfig field needs its words in HELP and a place in TRAIN_GROUPS
        raise RuntimeError(f"idream.cli: TrainConfig fields without help or group: {missing}")
    other = {  # the train flags that are not generated from a field
        "tem_dim": lambda g: _add_text_flags(g, model=False, descriptions=False),
        "item_residual": lambda g: g.add_argument(
            "--no-residual", dest="item_residual", action="store_false",  # turns the field off
            help=HELP["item_residual"]),
        "out": lambda g: g.add_argument("--out", required=True, metavar="DIR",
                                        help="checkpoint folder to write (required)"),
        "resume": lambda g: g.add_argument(
            "--resume", action="store_true",
            help="continue the run whose state --out holds (written after every epoch), from its last "
                 "completed epoch; same settings only"),
        "cache_dir": lambda g: g.add_argument("--cache-dir", default=None, metavar="DIR",
                                              help="embedding cache (default: ~/.cache/idream)"),
        "no_eval": lambda g: g.add_argument(
            "--no-eval", action="store_true",
            help="skip the final report (validation rows, then the test split once)"),
        "quiet": lambda g: g.add_argument("--quiet", action="store_true", help="no progress bars"),
    }
    for title, description, dests in TRAIN_GROUPS:
        g = t.add_argument_group(title, description)
        for name in dests:
            if name in other:
                other[name](g)
                continue
            default = getattr(defaults, name)
            flags = ["--" + name.replace("_", "-")] + (["--tem"] if name == "text_model" else [])
            extra = {"choices": DESCRIPTION_SOURCES} if name == "descriptions" else \
                {"choices": ("turn", "learned")} if name == "guidance" else {}
            kind = _bool if isinstance(default, bool) else type(default)
            metavar = _FIELD_METAVAR.get(name, _METAVAR.get(type(default), "VALUE"))
            g.add_argument(*flags, type=kind, default=default, metavar=metavar,
                           help=f"{HELP[name]} (default: %(default)s)", **extra)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m idream", description="iDream: text-guided diffusion recommender")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="train a model and write a checkpoint folder",
                       description="Train a model and write a checkpoint folder (then evaluate "
                                   "it unless --no-eval).",
                       usage="%(prog)s --out DIR [--dataset NAME|DIR] [options]")
    _add_train_flags(t)

    e = sub.add_parser("evaluate", help="HR@K / NDCG@K on the validation or test split")
    e.add_argument("--checkpoint", metavar="DIR",
                   help="checkpoint folder (not needed for --baseline)")
    e.add_argument("--baseline", choices=["popularity", "textknn"],
                   help="evaluate a baseline instead of a checkpoint (default: none)")
    e.add_argument("--dataset", metavar="NAME|DIR",
                   help="dataset for --baseline (default: the checkpoint's)")
    _add_text_flags(e, model_help="text model for --baseline textknn (default minilm); with "
                    "--checkpoint, must be the checkpoint's")
    e.add_argument("--history-len", type=int, default=10, metavar="N",
                   help="history window for --baseline (default: %(default)s)")
    e.add_argument("--split", choices=["valid", "test"], default="test",
                   help="which held-out items to rank (default: %(default)s)")
    e.add_argument("--users", type=int, default=0, metavar="N",
                   help="rank the cases of a seeded sample of N users (--seed draws them; "
                        "default: every user)")
    e.add_argument("--steps", type=_ints, default=[1], metavar="N[,N...]",
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

    r = sub.add_parser("recommend", help="rank the catalog for a history and/or an intention")
    r.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="checkpoint folder to load (required)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--history", nargs="*", default=[], metavar="ITEM",
                   help="item ids or exact titles, oldest first")
    g.add_argument("--user", metavar="ID", help="use this user's items before their test item")
    r.add_argument("--intention", default=None, metavar="TEXT",
                   help='what the user wants, in words, e.g. "a light comedy" (default: none)')
    r.add_argument("--rho", type=float, default=None,
                   help="intention strength (default: the checkpoint's)")
    r.add_argument("--w", type=float, default=None,
                   help="history guidance weight (default: the checkpoint's)")
    r.add_argument("--steps", type=int, default=1, metavar="N",
                   help="denoising steps (default: %(default)s)")
    r.add_argument("--seed", type=int, default=0, metavar="N",
                   help="random seed of the sampling noise (default: %(default)s)")
    r.add_argument("--k", type=int, default=10, metavar="N",
                   help="how many items to list (default: %(default)s)")
    r.add_argument("--json", action="store_true", help="print the answer as JSON, not a table")
    r.add_argument("--exact", action="store_true",
                   help="score every item even where the catalog is large enough for the approximate "
                        "index (default: the index above its size threshold, exact below)")
    _add_text_flags(r, model_help="must be the checkpoint's text model (default: the checkpoint's)")

    gd = sub.add_parser("guidance", help="choose w and ρ again on validation (no retraining), "
                                         "then refresh metrics.json and the model card",
                        description="Choose the checkpoint's default w and ρ again on the validation "
                                    "split, as training does at its end (after a change to how "
                                    "guidance works; the weights stay as they are), then evaluate "
                                    "the new defaults and rewrite metrics.json and the model card.")
    gd.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint folder to update")
    gd.add_argument("--mode", choices=["turn", "learned"], default=None,
                    help="turn: ρ turns the oracle toward the intention's text direction; learned: "
                         "ρ weighs the learned guidance term alone (default: the training config's)")
    gd.add_argument("--kappa", type=float, default=None, metavar="K",
                    help="turn: the learned term's weight per unit of ρ (default: the training config's)")
    gd.add_argument("--no-eval", action="store_true", help="only choose and write the defaults")

    ni = sub.add_parser("new-items", help="choose how items without a learned residual are scored, "
                                          "on the validation of cold-start checkpoints",
                        description="Choose a and b of the new-item rule (idream/newitems.py: an item "
                                    "added without retraining scores as high as its text is close to "
                                    "the history) on the validation split of checkpoints trained with "
                                    "--cold-frac, or with --intention its c (how much the item's text "
                                    "closeness to the intention adds) on the dev half of the "
                                    "hand-written new-item cases, and write it into a checkpoint's "
                                    "config.json and model card.")
    ni.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint folder to update")
    ni.add_argument("--from", dest="sources", nargs="+", default=None, metavar="DIR",
                    help="cold-start checkpoints (same dataset) to choose on, pooled (default: the "
                         "checkpoint itself, which must hold cold items)")
    ni.add_argument("--off", action="store_true", help="switch the rule off instead")
    ni.add_argument("--intention", action="store_true",
                    help="keep a and b; choose c, the weight of a new item's text closeness to the "
                         "intention, on the dev half of the hand-written new-item cases "
                         "(the benchmarks page); choosing a and b again sets c back to 0")
    ni.add_argument("--cases", default=None, metavar="FILE",
                    help="with --intention: a case file of the same form (default: the benchmark's own)")
    ni.add_argument("--threads", type=int, default=0, metavar="N",
                    help="torch threads (0: torch's default; 1 when other work shares the CPU)")

    d = sub.add_parser("describe", help="write item descriptions with a chat LLM (cached, resumable)")
    d.add_argument("--dataset", default="ml-100k", metavar="NAME|DIR",
                   help="ml-100k or a dataset folder (default: %(default)s)")
    d.add_argument("--llm", required=True, metavar="MODEL", help="chat model, e.g. gpt-4o-mini")
    d.add_argument("--max-items", type=int, default=None, metavar="N",
                   help="describe at most N items this run (default: all)")
    d.add_argument("--concurrency", type=int, default=4, metavar="N",
                   help="requests in flight (default: %(default)s)")
    d.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="cache folder (default: ~/.cache/idream)")
    d.add_argument("--dry-run", action="store_true", help="print the plan, make no request")
    d.add_argument("--quiet", action="store_true", help="no progress bar")

    _add_push_parser(sub)

    b = sub.add_parser("bench", help="benchmarks: quality vs peers, request speed, cold start")
    bs = b.add_subparsers(dest="what", required=True, parser_class=Parser)
    c = bs.add_parser("coldstart", help="load + one answer from a fresh process (into metrics.json)")
    c.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="checkpoint folder to time (required)")
    c.add_argument("--repeats", type=int, default=5, metavar="N",
                   help="fresh processes to time; the median is reported (default: %(default)s)")
    q = bs.add_parser("quality", help="every model on the same split and seeds")
    q.add_argument("--dataset", default="ml-100k", metavar="NAME|DIR",
                   help="ml-100k or a dataset folder (default: %(default)s)")
    q.add_argument("--seeds", type=_ints, default=[0, 1, 2], metavar="N[,N...]",
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
                    help="the text benchmark's own options: `bench text --help` lists them")
    tb = bs.add_parser("table", help="rewrite a quality table (.md) from its .json, no retraining")
    tb.add_argument("json", help="a bench-quality-*.json written by `bench quality`")
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
    sp = bs.add_parser("speed", help="latency per request and training throughput")
    sp.add_argument("--checkpoint", default="checkpoints/ml-100k", metavar="DIR",
                    help="checkpoint folder to time (default: %(default)s)")
    sp.add_argument("--sizes", type=_ints, default=[1682, 100_000, 1_000_000], metavar="N[,N...]",
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


def _add_push_parser(sub) -> None:
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


def _add_text_flags(p, model: bool = True, descriptions: bool = True, model_help: str = "") -> None:
    """--tem/--text-model, --tem-dim (OpenAI shortened vectors) and --descriptions."""
    from .catalog import DESCRIPTION_SOURCES

    if model:
        p.add_argument("--tem", "--text-model", dest="text_model", default=None, metavar="SPEC",
                       help=model_help)
    p.add_argument("--tem-dim", type=int, default=None, metavar="DIM",
                   help="shorter openai:MODEL vectors: their `dimensions` (default: full length)")
    if descriptions:
        p.add_argument("--descriptions", choices=DESCRIPTION_SOURCES, default=None, metavar="SRC",
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
    from benchmarks.report import standard_evaluation, write_model_card  # the model card compares to the peers

    from . import train_state
    from .checkpoint import save_checkpoint
    from .train import TrainConfig, train

    a.text_model = _text_model(a)
    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(a).items() if k in known})
    state = train_state.state_dir(a.out)
    trained = train(cfg, cache_dir=a.cache_dir, progress=not a.quiet,
                    log_fn=lambda s: print(s, file=sys.stderr, flush=True), state_dir=state, resume=a.resume)
    if trained is None:  # another process of a torchrun run: rank 0 writes the checkpoint
        return 0
    rec, split, E = trained
    argv = [x for x in sys.argv[1:] if x != "--resume"]  # the command that makes this model, in one go
    rec.config["train"]["command"] = "python -m idream " + " ".join(argv)
    out = save_checkpoint(rec, a.out, E)
    print(f"checkpoint written to {out}", file=sys.stderr)
    if not a.no_eval:
        standard_evaluation(rec, split, E, out, seed=cfg.seed, log_fn=lambda s: print(s, file=sys.stderr))
    write_model_card(out)
    train_state.remove(state)  # kept until here: a run killed during its report resumes into it
    return 0


def cmd_push(a) -> int:
    from .hub import parse, push

    url = push(a.folder, a.repo, private=a.private, message=a.message)
    print(f"pushed {a.folder} to {url}; load it with hf://{parse(a.repo)[0]}", file=sys.stderr)
    return 0


def cmd_evaluate(a) -> int:
    from benchmarks.report import evaluate_command

    from .checkpoint import check_text_request, read_config

    a.text_model = _text_model(a)
    if a.users < 0:
        raise CLIError("--users must be 0 (every user) or more")
    if a.checkpoint:
        check_text_request(read_config(Path(a.checkpoint)), a.checkpoint, a.text_model,
                           a.descriptions)
    a.text_model = a.text_model or "minilm"
    result = evaluate_command(a)
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        r0 = result["results"][0]
        sample = f" / {r0['cases']} of {r0['of_cases']} cases, a sample" if "of_cases" in r0 else ""
        print(f"{result['dataset']} / {result['split']} split / seed {result['seed']}{sample}")
        keys = ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20"]
        print(f"{'model':<28}" + "".join(f"{k:>9}" for k in keys))
        for r in result["results"]:
            print(f"{r['label']:<28}" + "".join(f"{r['metrics'][k]:>9.4f}" for k in keys))
    return 0


def cmd_recommend(a) -> int:
    from .recommender import Recommender

    rec = Recommender.load(a.checkpoint, text_model=_text_model(a), descriptions=a.descriptions,
                           exact=a.exact)
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


def cmd_guidance(a) -> int:
    from benchmarks.report import forget_guided, standard_evaluation, write_model_card

    from .catalog import item_embeddings
    from .checkpoint import write_json
    from .data import chronological_split
    from .recommender import Recommender
    from .train import TrainConfig, choose_guidance

    if a.kappa is not None and not (math.isfinite(a.kappa) and 0 <= a.kappa <= 10):
        raise CLIError("--kappa must be a number between 0 and 10")
    rec = Recommender.load(a.checkpoint)
    cfg = TrainConfig.from_dict(rec.config["train"])
    cfg.guidance = a.mode or cfg.guidance
    cfg.kappa = cfg.kappa if a.kappa is None else a.kappa
    split = chronological_split(rec.dataset, rec.history_len,
                                cold_items=rec.cold_items)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    choose_guidance(rec, split, cfg, log)
    rec.config["train"].update(guidance=cfg.guidance, kappa=cfg.kappa)
    out = Path(a.checkpoint)
    write_json(out / "config.json", rec.config)
    g = rec.config["guidance"]
    print(f"{out}: w = {g['w']:g}, rho = {g['rho']:g}" + (f" (turn, kappa {g['kappa']:g})" if "mode" in g else ""))
    forget_guided(out)  # measured under the old guidance
    if not a.no_eval:  # the checkpoint's own text vectors, else embedded again
        E = rec.embeddings if rec.embeddings is not None else item_embeddings(
            rec.dataset, rec.backend, rec.config["text"].get("descriptions", "template"),
            rec.config.get("cache_dir"), progress=False)
        standard_evaluation(rec, split, E, out, seed=cfg.seed, log_fn=log)
        write_model_card(out)
    return 0


def cmd_new_items(a) -> int:
    from .checkpoint import write_json
    from .data import chronological_split
    from .newitems import NewItemRule, pick, validation_grid
    from .recommender import Recommender

    if a.off and a.intention:
        raise CLIError("--off and --intention: choose one")
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    rec = Recommender.load(a.checkpoint)
    if a.intention:
        rule = _choose_intention(rec, a)
    elif a.off:
        rule = NewItemRule()
    else:
        grids, seeds, fracs = [], [], set()
        for src in a.sources or [a.checkpoint]:
            other = rec if src == a.checkpoint else Recommender.load(src)
            if other.dataset.name != rec.dataset.name:
                raise CLIError(f"{src} was trained on {other.dataset.name}, {a.checkpoint} on {rec.dataset.name}")
            if not len(other.cold_items):
                raise CLIError(f"{src} holds no cold items: train it with --cold-frac")
            split = chronological_split(other.dataset, other.history_len, cold_items=other.cold_items)
            grids.append(validation_grid(other, split.valid))
            seeds.append(str(other.config["train"].get("seed", "?")))
            fracs.add(f"{other.config['train'].get('cold_frac', '?')}")
        rule = pick(grids, f"validation of {len(grids)} cold-start checkpoint(s) ({rec.dataset.name}, "
                           f"--cold-frac {'/'.join(sorted(fracs))}, seeds {', '.join(seeds)})")
    rec.config["new_items"] = rule.to_dict()
    write_json(Path(a.checkpoint) / "config.json", rec.config)
    if (Path(a.checkpoint) / "README.md").exists():  # the model card says how new items score
        from benchmarks.report import write_model_card

        write_model_card(Path(a.checkpoint))
    print(f"{a.checkpoint}: new items " + (f"a = {rule.a:g}, b = {rule.b:g} ({rule.chosen_on})" if rule.on else "off")
          + (f"; c = {rule.c:g} ({rule.c_chosen_on})" if rule.c_chosen_on else ""))
    return 0


def _choose_intention(rec, a):
    """The rule with c chosen on the dev half of the new-item cases (choose_c of the new-item bench)."""
    from benchmarks.newitems import CASES, choose_c

    if not rec.new_item_rule.on:
        raise CLIError(f"the new-item rule is off in {a.checkpoint}: choose a and b first "
                       f"(python -m idream new-items --checkpoint {a.checkpoint})")
    if not rec.default_rho:
        raise CLIError(f"{a.checkpoint}'s default ρ is 0: the intention's closeness would never count")
    rule, _ = choose_c(rec, a.cases or CASES, log=lambda s: print(s, file=sys.stderr, flush=True))
    return rule


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
        show(plan_descriptions(ds.all_item_meta(), a.llm, path, a.max_items, ds.item_kind))
        return 0
    s = describe_catalog(ds.all_item_meta(), a.llm, path, max_items=a.max_items,
                         concurrency=a.concurrency, progress=not a.quiet, on_plan=show,
                         kind=ds.item_kind)
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
    """The harness lives outside the library; only the job asked for is imported."""
    if a.what == "coldstart":
        from benchmarks.report import bench_coldstart
        print(json.dumps(bench_coldstart(a.checkpoint, a.repeats), indent=2))
    elif a.what == "quality":
        from benchmarks.quality import main_quality
        main_quality(a)  # it refuses unknown model names before any work
    elif a.what == "text":
        from benchmarks import text as bench_text
        bench_text.main(a.args, prog="python -m idream bench text")
    elif a.what == "table":
        from benchmarks.quality import main_table
        main_table(a)
    elif a.what == "synthetic":
        from benchmarks.synthetic import generate
        print(json.dumps(generate(a.out, a.users, a.items, a.interactions, a.seed,
                                  log=lambda s: print(s, file=sys.stderr, flush=True))))
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
    if argv[:1] != ["push"]:  # the Hub's cache alone (HF_HUB_OFFLINE=0 to fetch hf:// ids); push needs the network
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no model-loading bar per request
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    parser = build_parser()
    if argv[:2] == ["bench", "text"]:  # its options are the text benchmark's own, passed on whole
        args = parser.parse_args(argv[:2])
        args.args = argv[2:]
    else:
        args = parser.parse_args(argv)
    handler = {"train": cmd_train, "evaluate": cmd_evaluate, "recommend": cmd_recommend,
               "guidance": cmd_guidance, "new-items": cmd_new_items, "describe": cmd_describe,
               "push": cmd_push, "bench": cmd_bench}[args.command]
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
