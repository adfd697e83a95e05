"""`python -m idream train`: one flag per TrainConfig field, in groups, then a checkpoint folder,
its evaluation rows and its model card."""

from __future__ import annotations

import sys
from dataclasses import fields

from idream.cli.common import add_text_flags, parse_bool, text_model

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
    "encoder_depth": "transformer blocks of the causal history encoder (SASRec-style)",
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
    "kappa": "weight of the learned guidance term per unit of rho (rho turns toward the intention's text)",
    # training
    "lr": "learning rate of AdamW",
    "weight_decay": "weight decay of AdamW",
    "seq_batch_size": "history windows per step (each: many targets)",
    "epochs": "at most this many passes over the training data",
    "patience": "stop after this many epochs without a validation NDCG@10 gain",
    "seed": "random seed of initialisation, batches and noise",
    "threads": "torch CPU threads (0: torch's default)",
    "device": "where the training steps run: cpu or cuda (evaluation runs on cpu)",
    "ce_weight": "weight of the auxiliary ranking loss (0: the paper's x0 regression only)",
    "tau": "temperature of the ranking loss's softmax over items",
    "future_k": "the ranking loss targets the next k items",
    "future_decay": "weight of the j-th next item is decay**j",
    # budget
    "max_minutes": "training budget in minutes (embedding and evaluation come on top)",
    "clock": "what the budget counts: wall seconds or cpu (this process's) seconds",
}

# TrainConfig fields with no flag of their own
NO_FLAG = {"w_grid": "a tuple; set it in Python (TrainConfig)"}

ADVANCED = ("advanced", "For research; a newcomer never needs them. The defaults are the tuned "
                        "values the shipped model was trained with (docs/tuning.md).")

# The groups of `train --help`, in order, and the destinations each holds, in order: TrainConfig
# fields (their flags are generated) and the other train flags (tem_dim, out, cache_dir, ...).
TRAIN_GROUPS = (
    ("data", None, ("dataset", "history_len")),
    ("text", None, ("text_model", "tem_dim", "descriptions", "transform")),
    ("model", None, ("width", "depth", "heads", "dropout", "denoiser", "item_residual",
                     "text_dims", "id_dims")),
    ("diffusion", None, ("T", "schedule", "p_t_max")),
    ("training", None, ("lr", "weight_decay", "seq_batch_size", "epochs", "patience",
                        "seed", "threads", "device")),
    ("budget", None, ("max_minutes", "clock")),
    ("output", None, ("out", "resume", "cache_dir", "no_eval", "quiet")),
    (*ADVANCED, ("ce_weight", "tau", "future_k", "future_decay", "p_uncond", "p_intention",
                 "intention_pool", "kappa", "encoder_depth", "residual_scale", "item_source", "id_dim",
                 "max_train_samples", "valid_users", "cold_frac", "cold_seed")),
)

_METAVAR = {int: "N", float: "X", str: "NAME", bool: "BOOL"}
_FIELD_METAVAR = {"dataset": "NAME|DIR", "text_model": "SPEC", "descriptions": "SRC",
                  "transform": "KIND", "schedule": "KIND", "denoiser": "KIND", "item_source": "SRC",
                  "clock": "CLOCK", "device": "DEV", "T": "N"}


def _add_train_flags(t) -> None:
    """The train flags, in TRAIN_GROUPS's groups; one per TrainConfig field (but NO_FLAG's)."""
    from idream.data.catalog import DESCRIPTION_SOURCES
    from idream.training.train import TrainConfig

    defaults = TrainConfig()
    by_name = {f.name for f in fields(TrainConfig)}
    placed = [d for _, _, dests in TRAIN_GROUPS for d in dests]
    missing = sorted(set(by_name) - set(HELP)) + sorted(set(by_name) - set(placed) - set(NO_FLAG))
    assert len(placed) == len(set(placed)), "a train flag in two groups"
    if missing:  # a new TrainConfig field needs its words in HELP and a place in TRAIN_GROUPS
        raise RuntimeError(f"idream.cli: TrainConfig fields without help or group: {missing}")
    other = {  # the train flags that are not generated from a field
        "tem_dim": lambda g: add_text_flags(g, model=False, descriptions=False),
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
            extra = {"choices": DESCRIPTION_SOURCES} if name == "descriptions" else {}
            kind = parse_bool if isinstance(default, bool) else type(default)
            metavar = _FIELD_METAVAR.get(name, _METAVAR.get(type(default), "VALUE"))
            g.add_argument(*flags, type=kind, default=default, metavar=metavar,
                           help=f"{HELP[name]} (default: %(default)s)", **extra)


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
