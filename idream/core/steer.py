"""Text steering: turn the oracle toward what the intention means to the text model itself.

With the transform A(e) = (e − μ)M, a catalog item without a residual scores z·d = (e − μ)·q̂ for
d = M⁻¹q̂, i.e. its text cosine with the intention q̂ up to a constant. So d is the intention's
meaning in the scoring space, kept exactly as the frozen text model has it (the learned guidance
term only knows the phrasings it was trained on). ρ ∈ [0, 1] turns the oracle toward d by ρ·90°,
keeping its spread over the catalog: ρ = 0 is the history alone, ρ = 1 a plain text search.
"""

from __future__ import annotations

import math

import torch

from idream.core.transform import Transform

STEER_RANGE = (0.0, 1.0)  # ρ: 0 the history alone, 1 the intention alone
STEER_STEP = 0.1  # between the positions of the slider's sweep


def moments(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The items' mean (D,) and covariance (D, D) in the scoring space, in double precision."""
    V = vectors.detach().double()
    mean = V.mean(0)
    Vc = V - mean
    return mean, Vc.T @ Vc / max(len(V), 1)


def score_spread(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """√(xᵀΣx): the standard deviation of x's scores over the items Σ describes.  (B, D) -> (B,)"""
    xd = x.double()
    return ((xd @ sigma) * xd).sum(1).clamp(min=0).sqrt()


def positions(lo: float, hi: float) -> list[float]:
    """Slider positions STEER_STEP apart from lo to hi, both ends included."""
    n = max(2, round((hi - lo) / STEER_STEP) + 1)
    return [round(lo + (hi - lo) * i / (n - 1), 4) for i in range(n)]


class TextSteer:
    """Directions and the catalog's covariance for one transform and one set of item vectors."""

    def __init__(self, transform: Transform, item_vectors: torch.Tensor):
        self.transform = transform
        self.mean = torch.from_numpy(transform.mean).double()  # (D,)
        self.sigma = moments(item_vectors)[1]  # (D, D) the items' covariance in the scoring space

    def directions(self, q: torch.Tensor) -> torch.Tensor:
        """Transformed intentions → their text directions, unit spread over the catalog
        (dᵀΣd = 1, so d·z is a z-score-like item score).  (B, D) -> (B, D)"""
        tr = self.transform
        e = torch.from_numpy(tr.to_raw(q.double().numpy())) + self.mean  # back to the raw space
        e = e / e.norm(dim=1, keepdim=True).clamp(min=1e-12)
        d = torch.from_numpy(tr.from_raw(e.numpy()))  # z·d = (e_item − μ)·ê
        return (d / score_spread(d, self.sigma).clamp(min=1e-12)[:, None]).float()

    def spread(self, x: torch.Tensor) -> torch.Tensor:
        """√(xᵀΣx): the standard deviation of x's scores over the catalog.  (B, D) -> (B, 1)"""
        return score_spread(x, self.sigma)[:, None].float()

    def turn(self, x0: torch.Tensor, d: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        """x = cos(πρ/2)·x0 + sin(πρ/2)·√(x0ᵀΣx0)·d: the oracle turned toward d, its spread kept.
        Rows with ρ = 0 are returned unchanged.  x0, d (B, D); rho (B,) -> (B, D)"""
        theta = rho.to(x0.dtype)[:, None] * (math.pi / 2)
        return torch.cos(theta) * x0 + torch.sin(theta) * self.spread(x0) * d
