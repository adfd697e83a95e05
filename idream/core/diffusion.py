"""Noise schedule, forward process and training loss (DreamRec's x0-prediction)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from idream.core.checks import first, number_problem, string_problem

SCHEDULES = ("linear", "cosine")
MAX_T = 100_000  # a sanity bound for a hand-edited config.json (the schedule is a (T,) array)


@dataclass
class DiffusionConfig:
    T: int = 1000
    schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self):
        """Refuse what is not a noise schedule, naming the field."""
        problem = first(number_problem("diffusion.T", self.T, 1, MAX_T, integer=True),
                        string_problem("diffusion.schedule", self.schedule, SCHEDULES),
                        number_problem("diffusion.beta_start", self.beta_start, 0, 1),
                        number_problem("diffusion.beta_end", self.beta_end, 0, 1))
        if problem is None and not 0 < self.beta_start <= self.beta_end < 1:
            problem = f"diffusion β {self.beta_start}…{self.beta_end} is not a schedule (0 < β_start ≤ β_end < 1)"
        if problem:
            raise ValueError(problem)

    @classmethod
    def from_dict(cls, d: dict) -> "DiffusionConfig":
        """From config.json's "diffusion": every field given (a default would silently change it)."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown diffusion config keys {sorted(unknown)}")
        missing = [k for k in known if k not in d]
        if missing:
            raise ValueError(f"diffusion lacks {', '.join(sorted(missing))}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def make_betas(cfg: DiffusionConfig) -> np.ndarray:
    """β_1..β_T for the chosen schedule.  # (T,)"""
    if cfg.schedule == "linear":
        # β range given for T = 1000; rescaled so any T ends at (nearly) pure noise (iDDPM)
        scale = 1000.0 / cfg.T
        return np.clip(np.linspace(scale * cfg.beta_start, scale * cfg.beta_end, cfg.T), 0, 0.999)
    if cfg.schedule == "cosine":  # Nichol & Dhariwal 2021
        s = 0.008
        x = np.linspace(0, cfg.T, cfg.T + 1) / cfg.T
        f = np.cos((x + s) / (1 + s) * np.pi / 2) ** 2
        return np.clip(1 - f[1:] / f[:-1], 0, 0.999)
    raise ValueError(f"unknown schedule {cfg.schedule!r}: use one of {', '.join(SCHEDULES)}")


class Diffusion:
    """ᾱ_t and the forward process x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε."""

    def __init__(self, cfg: DiffusionConfig):
        self.cfg = cfg
        self.T = cfg.T
        self.alphas_cumprod = torch.from_numpy(np.cumprod(1.0 - make_betas(cfg))).float()  # (T,)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod.to(x0.device)[t][:, None]  # (B, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise


def training_loss(
    x0_pred: torch.Tensor,  # (B, D)
    x0: torch.Tensor,  # (B, D)
    targets: torch.Tensor | None = None,  # (B,) item indices, or (B, k) with target_weights
    items: torch.Tensor | None = None,  # (N, D) item vectors
    ce_weight: float = 0.0,
    tau: float = 10.0,
    target_weights: torch.Tensor | None = None,  # (B, k), rows summing to 1
    exclude: torch.Tensor | None = None,  # (N,) bool: items kept out of the softmax (never trained)
) -> tuple[torch.Tensor, dict]:
    """‖x̂0 − x0‖² (the paper's loss), plus optionally λ·CE(softmax(⟨x̂0, z_i⟩/τ), target).

    The ranking term is a documented extension (docs/method.md, "Beyond the paper"): it teaches the
    oracle to sit closer to the target than to every other item, which is what ranking needs.
    With several weighted targets per row it is the cross-entropy against that distribution.
    """
    mse = ((x0_pred - x0) ** 2).sum(dim=1).mean()
    parts = {"mse": mse.item()}
    loss = mse
    if ce_weight > 0 and items is not None:
        logits = x0_pred @ items.T / tau  # (B, N)
        if exclude is not None:
            logits = logits.masked_fill(exclude, float("-inf"))
        if target_weights is None:
            ce = F.cross_entropy(logits, targets)
        else:
            ce = -(logits.log_softmax(1).gather(1, targets) * target_weights).sum(1).mean()
        parts["ce"] = ce.item()
        loss = loss + ce_weight * ce
    return loss, parts
