"""A checkpoint's guidance defaults (config.json's "guidance"), read in one place with one set of
fallbacks: what a request gets when it names no w or ρ, and the slider's top."""

from __future__ import annotations

from dataclasses import dataclass

from idream.core.steer import STEER_RANGE


@dataclass(frozen=True)
class Guidance:
    """w and ρ chosen on validation, κ (the learned term's weight per unit of ρ) and the slider's
    top chosen on the dev half; a key a config lacks takes the value a fresh model would use."""

    w: float = 0.0  # the history alone, unstrengthened
    rho: float = 0.0  # the intention ignored until a ρ was chosen
    kappa: float = 0.5  # TrainConfig's default
    rho_max: float = STEER_RANGE[1]  # the slider runs to the intention alone

    @classmethod
    def of(cls, config: dict) -> "Guidance":
        """From a checkpoint config (read at every use: training and `guidance` rewrite it)."""
        g = config.get("guidance") or {}
        return cls(**{k: float(g[k]) for k in ("w", "rho", "kappa", "rho_max") if k in g})
