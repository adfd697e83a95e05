"""`python -m idream guidance`: w and ρ chosen again on validation, without retraining."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from idream.cli.common import CLIError


def add_parser(sub) -> None:
    """The guidance subcommand."""
    gd = sub.add_parser("guidance", help="choose w and ρ again on validation (no retraining), "
                                         "then refresh metrics.json and the model card",
                        description="Choose the checkpoint's default w and ρ again on the validation "
                                    "split, as training does at its end (after a change to how "
                                    "guidance works; the weights stay as they are), then evaluate "
                                    "the new defaults and rewrite metrics.json and the model card.")
    gd.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint folder to update")
    gd.add_argument("--kappa", type=float, default=None, metavar="K",
                    help="the learned guidance term's weight per unit of ρ (default: the training config's)")
    gd.add_argument("--no-eval", action="store_true", help="only choose and write the defaults")


def run(a) -> int:
    """Choose w and ρ on validation, write them, then evaluate and rewrite the model card."""
    from idream.data.catalog import item_embeddings
    from idream.data.datasets import chronological_split
    from idream.evaluation.card import write_model_card
    from idream.evaluation.report import forget_guided, standard_evaluation
    from idream.serving.checkpoint import write_json
    from idream.serving.recommender import Recommender
    from idream.training.train import TrainConfig, choose_guidance

    if a.kappa is not None and not (math.isfinite(a.kappa) and 0 <= a.kappa <= 10):
        raise CLIError("--kappa must be a number between 0 and 10")
    rec = Recommender.load(a.checkpoint)
    cfg = TrainConfig.from_dict(rec.config["train"])
    cfg.kappa = cfg.kappa if a.kappa is None else a.kappa
    split = chronological_split(rec.dataset, rec.history_len,
                                cold_items=rec.cold_items)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    choose_guidance(rec, split, cfg, log)
    rec.config["train"]["kappa"] = cfg.kappa
    out = Path(a.checkpoint)
    write_json(out / "config.json", rec.config)
    g = rec.config["guidance"]
    print(f"{out}: w = {g['w']:g}, rho = {g['rho']:g}" + (f" (kappa {g['kappa']:g})" if "kappa" in g else ""))
    forget_guided(out)  # measured under the old guidance
    if not a.no_eval:  # the checkpoint's own text vectors, else embedded again
        E = rec.embeddings if rec.embeddings is not None else item_embeddings(
            rec.dataset, rec.backend, rec.descriptions,
            rec.config.get("cache_dir"), progress=False)
        standard_evaluation(rec, split, E, out, seed=cfg.seed, log_fn=log)
        write_model_card(out)
    return 0
