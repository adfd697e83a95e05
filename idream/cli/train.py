"""`python -m idream train`: one flag per TrainConfig field, in groups, then a checkpoint folder,
its evaluation rows and its model card."""

from __future__ import annotations

import sys
from dataclasses import fields

from idream.cli.common import add_text_flags, parse_bool, text_model

# TrainConfig fields with no flag of their own
NO_FLAG = {"w_grid": "a tuple; set it in Python (TrainConfig)"}

ADVANCED = ("advanced", "For research; a newcomer never needs them. The defaults are the tuned "
                        "values the shipped model was trained with (docs/tuning.md).")

# The groups of `train --help`, in order, and the destinations each holds, in order: TrainConfig
# fields (their flags are generated) and the other train flags (tem_dim, out, cache_dir, ...).
TRAIN_GROUPS = (
    ("data", None, ("dataset", "history_len")),
    ("text", None, ("text_model", "tem_dim", "descriptions", "transform")),
    ("model", None, ("width", "depth", "heads", "dropout", "item_residual")),
    ("diffusion", None, ("T", "schedule", "p_t_max")),
    ("training", None, ("lr", "weight_decay", "seq_batch_size", "epochs", "patience",
                        "seed", "threads", "device", "precision")),
    ("budget", None, ("max_minutes", "clock")),
    ("output", None, ("out", "resume", "cache_dir", "no_eval", "quiet")),
    (*ADVANCED, ("ce_weight", "tau", "future_k", "future_decay", "p_uncond", "p_intention",
                 "intention_pool", "kappa", "encoder_depth", "residual_scale",
                 "max_train_samples", "valid_users", "cold_frac", "cold_seed")),
)

_METAVAR = {int: "N", float: "X", str: "NAME", bool: "BOOL"}
_FIELD_METAVAR = {"dataset": "NAME|DIR", "text_model": "SPEC", "descriptions": "SRC",
                  "transform": "KIND", "schedule": "KIND",
                  "clock": "CLOCK", "device": "DEV", "precision": "KIND", "T": "N"}


def train_help() -> dict[str, str | None]:
    """Each TrainConfig field's words for `train --help`, written beside the field (opt())."""
    from idream.training.train import TrainConfig

    return {f.name: f.metadata.get("help") for f in fields(TrainConfig)}


def _add_train_flags(t) -> None:
    """The train flags, in TRAIN_GROUPS's groups; one per TrainConfig field (but NO_FLAG's)."""
    from idream.data.catalog import DESCRIPTION_SOURCES
    from idream.training.train import TrainConfig

    defaults = TrainConfig()
    helps = train_help()
    placed = [d for _, _, dests in TRAIN_GROUPS for d in dests]
    missing = sorted(n for n, h in helps.items() if not h) + sorted(set(helps) - set(placed) - set(NO_FLAG))
    assert len(placed) == len(set(placed)), "a train flag in two groups"
    if missing:  # a new TrainConfig field needs its words (opt(default, help)) and a place in TRAIN_GROUPS
        raise RuntimeError(f"idream.cli: TrainConfig fields without help or group: {missing}")
    other = {  # the train flags that are not generated from a field
        "tem_dim": lambda g: add_text_flags(g, model=False, descriptions=False),
        "item_residual": lambda g: g.add_argument(
            "--no-residual", dest="item_residual", action="store_false",  # turns the field off
            help=helps["item_residual"]),
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
            extra = {"choices": DESCRIPTION_SOURCES} if name == "descriptions" else {}
            kind = parse_bool if isinstance(default, bool) else type(default)
            metavar = _FIELD_METAVAR.get(name, _METAVAR.get(type(default), "VALUE"))
            g.add_argument(*flags, type=kind, default=default, metavar=metavar,
                           help=f"{helps[name]} (default: %(default)s)", **extra)


def add_parser(sub) -> None:
    """The train subcommand."""
    t = sub.add_parser("train", help="train a model and write a checkpoint folder",
                       description="Train a model and write a checkpoint folder (then evaluate "
                                   "it unless --no-eval).",
                       usage="%(prog)s --out DIR [--dataset NAME|DIR] [options]")
    _add_train_flags(t)


def run(a) -> int:
    """Train, write the checkpoint, evaluate it (unless --no-eval) and write its model card."""
    from idream.evaluation.card import write_model_card
    from idream.evaluation.report import standard_evaluation
    from idream.serving.checkpoint import save_checkpoint
    from idream.training import state as train_state
    from idream.training.train import TrainConfig, train

    a.text_model = text_model(a)
    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(a).items() if k in known})
    state = train_state.state_dir(a.out)
    trained = train(cfg, cache_dir=a.cache_dir, progress=not a.quiet,
                    log_fn=lambda s: print(s, file=sys.stderr, flush=True), state_dir=state, resume=a.resume)
    if trained is None:  # another process of a torchrun run: rank 0 writes the checkpoint
        return 0
    rec, split, E = trained
    argv = [x for x in a.argv if x != "--resume"]  # the command that makes this model, in one go
    rec.config["train"]["command"] = "python -m idream " + " ".join(argv)
    out = save_checkpoint(rec, a.out, E)
    print(f"checkpoint written to {out}", file=sys.stderr)
    if not a.no_eval:
        standard_evaluation(rec, split, E, out, seed=cfg.seed, log_fn=lambda s: print(s, file=sys.stderr))
    write_model_card(out)
    train_state.remove(state)  # kept until here: a run killed during its report resumes into it
    return 0
