"""DreamRec (NeurIPS 2023), the diffusion recommender iDream extends, on iDream's own code: items are
learned ID vectors alone (the `none:DIM` text model embeds no text), and nothing is trained with an
intention. Its settings, tuned on validation (results/tuning-dreamrec.md), over iDream's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from idream.training.train import TrainConfig, opt


@dataclass
class DreamRecConfig(TrainConfig):
    """iDream's training fields, with the ID vectors' size in place of a text model."""

    id_dim: int = opt(128, "size of the learned ID vectors")

    def __post_init__(self):
        self.text_model, self.transform, self.p_intention = f"none:{self.id_dim}", "none", 0.0
        super().__post_init__()


# the best setting on the validation grid (results/tuning-dreamrec.md)
TUNED = {"ce_weight": 50.0, "dropout": 0.1, "history_len": 10, "id_dim": 128, "lr": 3e-3}


def dreamrec_config(base: TrainConfig, **settings) -> DreamRecConfig:
    """DreamRec over a TrainConfig's budget and seed: its tuned settings, then `settings`."""
    fields = {k: v for k, v in vars(base).items() if k not in ("text_model", "transform", "p_intention")}
    return DreamRecConfig(**{**fields, **TUNED, **settings})
