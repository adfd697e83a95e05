"""Items without a learned residual (held out of training, or added in a session) scored so that
they can enter the top-K. Their whitened dot with the oracle never competes with the warm items'
full scores (results/experiments/cold-residual.md); what singles out the right new item is how close
its text is to something the person watched. So a new item j also gets

    s_j = mean + spread · (a·z_j + b)

where mean and spread are those of the warm items' scores for this request (x̂0·v̄ and √(x̂0ᵀΣx̂0))
and z_j is j's closeness (its largest raw text cosine to a history item) z-scored against the
catalog's closeness for the same history. It keeps the larger of s_j and its own score, so an
intention that means the item still lifts it (with no history: its own score alone). a and b are
chosen on validation of checkpoints trained with held-out items (`idream/evaluation/new_item_choice.py`).

With an intention q the item's own text closeness to it counts too, as the oracle's turn does:

    s_j = mean + spread · (a·z_j + c·(ρ/ρ₀)·z_q,j + b)

z_q,j its raw text cosine to q z-scored against the catalog's cosines to q, ρ the request's and ρ₀
the checkpoint's default (so ρ = 0 ignores the intention, as the oracle does). c is chosen on the
dev half of the hand-written new-item cases (`python -m benchmarks newitems --set-c`); c = 0 (and
every request without an intention) gives exactly the rule above.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from idream.data.datasets import PAD
from idream.core.checks import first, number_problem, string_problem
from idream.core.steer import moments, score_spread

SAMPLE = 2048  # catalog items whose closeness sets the z-score's reference (all of a smaller catalog)
MAX_WEIGHT = 100.0  # |a|, |b|, |c| beyond this only overflow the scores (a bound for a hand edit)


@dataclass
class NewItemRule:
    """How residual-free items are scored; a = 0 switches it off (they keep their own score).
    c weighs the intention's text closeness at the default ρ (0: ignored, as in older checkpoints)."""
    a: float = 0.0
    b: float = 0.0
    chosen_on: str = ""
    c: float = 0.0
    c_chosen_on: str = ""

    def __post_init__(self):
        """Refuse a weight that is not a number within ±MAX_WEIGHT, or a note that is not text."""
        problem = first(*(number_problem(f"new_items.{k}", getattr(self, k), -MAX_WEIGHT, MAX_WEIGHT)
                          for k in ("a", "b", "c")),
                        *(string_problem(f"new_items.{k}", getattr(self, k)) for k in ("chosen_on", "c_chosen_on")))
        if problem:
            raise ValueError(problem)

    @classmethod
    def from_dict(cls, d: dict) -> "NewItemRule":
        """From config.json's "new_items" (a key it lacks: the rule's default, as older checkpoints)."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"new_items has unknown keys {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_config(cls, cfg: dict | None) -> "NewItemRule":
        return cls.from_dict(cfg or {})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def on(self) -> bool:
        return self.a != 0.0


def unit(E: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (raw text vectors → cosines by dot product).  (N, Dt) -> (N, Dt)"""
    E = torch.as_tensor(np.asarray(E, dtype=np.float32))
    return E / E.norm(dim=1, keepdim=True).clamp(min=1e-12)


class NewItemScorer:
    """Closeness and calibrated scores for one catalog: its raw text vectors and warm item vectors."""

    def __init__(self, raw: np.ndarray, warm_vectors: torch.Tensor, seed: int = 0):
        self.raw = raw  # (N, Dt) kept, not copied: rows are scaled to unit length as they are read
        n = len(raw)
        sample = np.arange(n) if n <= SAMPLE else np.sort(np.random.default_rng(seed).choice(n, SAMPLE, replace=False))
        self.sample = self.rows(sample)  # (S, Dt)
        self.mean, self.sigma = moments(warm_vectors)  # (D,), (D, D) of the warm items' vectors

    def rows(self, idx) -> torch.Tensor:
        """Catalog items' raw text vectors at unit length.  (C,) -> (C, Dt)"""
        return unit(self.raw[np.asarray(idx, dtype=np.int64)])

    def closeness(self, histories: np.ndarray, cand: torch.Tensor) -> torch.Tensor:
        """Largest cosine between each candidate and a history item.  (B, L), (C, Dt) -> (B, C)"""
        h = np.asarray(histories, dtype=np.int64)
        valid = torch.from_numpy(h != PAD)
        H = self.rows(np.maximum(h, 0).reshape(-1)).reshape(*h.shape, -1)  # (B, L, Dt)
        cos = torch.einsum("bld,cd->blc", H, cand).masked_fill(~valid[..., None], -2.0)
        return cos.max(1).values

    def z(self, histories: np.ndarray, cand: torch.Tensor) -> torch.Tensor:
        """Closeness z-scored against the catalog sample's for the same history.  -> (B, C)"""
        ref = self.closeness(histories, self.sample)  # (B, S)
        m, sd = ref.mean(1, keepdim=True), ref.std(1, keepdim=True).clamp(min=1e-6)
        return (self.closeness(histories, cand) - m) / sd

    def intention_z(self, q: np.ndarray, cand: torch.Tensor) -> torch.Tensor:
        """Each candidate's cosine to the intention z-scored against the catalog sample's (the
        reference's z-scoring).  q (Dt,) raw, cand (C, Dt) unit -> (C,)"""
        u = unit(np.asarray(q)[None])[0]  # (Dt,)
        ref = self.sample @ u  # (S,)
        return ((cand @ u - ref.mean()) / ref.std(unbiased=False).clamp(min=1e-6)).double()

    def parts(self, x0: torch.Tensor, histories: np.ndarray, cand: torch.Tensor) -> tuple:
        """What the rule reads, whatever a and b: the candidates' z (B, C) and the warm scores'
        mean and spread (B,); rows without a history get z = −inf (close to nothing)."""
        z = self.z(histories, cand).double()
        z[~torch.from_numpy(np.asarray(histories) != PAD).any(1)] = -torch.inf
        return z, x0.double() @ self.mean, score_spread(x0, self.sigma)

    @staticmethod
    def combine(own: torch.Tensor, z: torch.Tensor, mean: torch.Tensor, spread: torch.Tensor,
                rule: NewItemRule, zq: torch.Tensor | None = None, scale=None) -> torch.Tensor:
        """max(own, mean + spread·(a·z + c·scale·zq + b)); without zq (no intention) or with c = 0
        exactly max(own, mean + spread·(a·z + b)).
        own, z (B, C); mean, spread (B,); zq (C,) the intention's z; scale (B,) ρ/ρ₀ -> (B, C)"""
        x = rule.a * z
        if zq is not None and rule.c:
            x = x + rule.c * torch.as_tensor(scale, dtype=torch.float64).reshape(-1, 1) * zq[None]
        cal = mean[:, None] + spread[:, None] * (x + rule.b)
        cal = torch.where(torch.isneginf(z), -torch.inf, cal)  # no history, even with no spread
        return torch.maximum(own, cal.to(own.dtype))

    def scores(self, x0: torch.Tensor, histories: np.ndarray, cand: torch.Tensor, own: torch.Tensor,
               rule: NewItemRule, q: np.ndarray | None = None, scale=1.0) -> torch.Tensor:
        """The candidates' scores under the rule (own where it is off or there is no history).
        x0 (B, D), cand (C, Dt) unit raw vectors, own (B, C) their dot with x0 -> (B, C);
        q (Dt,) the intention's raw text vector or None, scale a float or (B,): ρ/ρ₀ per row"""
        if not rule.on:
            return own
        zq = self.intention_z(q, cand) if q is not None and rule.c else None
        scale = torch.as_tensor(scale, dtype=torch.float64).expand(len(own))
        return self.combine(own, *self.parts(x0, histories, cand), rule, zq, scale)
