"""Linear transformations of the fixed text embeddings: none, scale, ZCA whitening.

Fitted on the item matrix only, then applied to items and intentions alike, so that both live in
one space the diffusion model can work in (unit-scale, evenly spread dimensions). (AlphaFuse's
null space, fewer text directions and ID directions of their own, did not win on validation:
results/experiments/adaln-nullspace.patch.)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

KINDS = ("none", "scale", "whiten")


@dataclass
class Transform:
    """A(e) = (e - mean) @ matrix, with matrix = a*I for `scale` and O Λ^-1/2 Oᵀ for `whiten`."""

    kind: str
    mean: np.ndarray  # (D,)
    matrix: np.ndarray  # (D, D)

    @property
    def dim(self) -> int:
        """The text vectors' dimension (what the transform takes)."""
        return self.mean.shape[0]

    @cached_property
    def _inverse(self) -> np.ndarray:
        """M⁻¹, once: a request maps its intention through it, and a solve per request cost more
        than the request's generation.  (D, D)"""
        return np.linalg.inv(self.matrix)

    def to_raw(self, z: np.ndarray) -> np.ndarray:
        """z M⁻¹: transformed rows back to raw-space offsets from the mean.  (n, D) -> (n, D)"""
        return np.asarray(z, dtype=np.float64) @ self._inverse

    def from_raw(self, e: np.ndarray) -> np.ndarray:
        """M⁻¹ e: the vector d of the scoring space with z·d = (e_item − μ)·e for every text-only
        item.  (n, D) -> (n, D)"""
        return np.asarray(e, dtype=np.float64) @ self._inverse.T

    def __call__(self, e: np.ndarray) -> np.ndarray:
        """Transform rows of e.  (n, D) -> (n, D) float32"""
        e = np.asarray(e, dtype=np.float64)
        if e.ndim != 2 or e.shape[1] != self.dim:
            raise ValueError(f"expected vectors of dimension {self.dim}, got shape {e.shape}")
        return ((e - self.mean) @ self.matrix).astype(np.float32)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Map transformed vectors back to the raw text space (e.g. to draw an oracle there)."""
        z = np.asarray(z, dtype=np.float64)
        return (self.to_raw(z) + self.mean).astype(np.float32)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": torch.from_numpy(self.mean.astype(np.float64)),
                "matrix": torch.from_numpy(self.matrix.astype(np.float64))}

    @classmethod
    def from_tensors(cls, kind: str, t: dict) -> "Transform":
        return cls(kind, t["mean"].double().numpy(), t["matrix"].double().numpy())


def fit_transform(E: np.ndarray, kind: str = "whiten", eps: float = 1e-5) -> Transform:
    """Fit A on the item matrix E (N, D).

    none: identity. scale: A(e) = a·e with a chosen so the mean per-dimension variance is 1
    (no centring, so dot products keep their order). whiten: ZCA, eigenvalues floored at
    eps·max so near-empty directions are not blown up without bound.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown transform {kind!r}: use one of {', '.join(KINDS)}")
    E = np.asarray(E, dtype=np.float64)
    D = E.shape[1]
    if kind == "none":
        return Transform(kind, np.zeros(D), np.eye(D))
    if not E.var(axis=0).sum() > 0:  # scale and whiten would divide by zero
        raise ValueError(f"the {len(E)} item vectors are all equal, so they cannot be scaled or "
                         "whitened: give the items distinct descriptions, or use --transform none")
    if kind == "scale":
        a = 1.0 / np.sqrt(E.var(axis=0).mean())
        return Transform(kind, np.zeros(D), a * np.eye(D))
    mu = E.mean(axis=0)
    cov = np.cov(E - mu, rowvar=False, bias=True)
    lam, O = np.linalg.eigh(cov)
    lam = np.maximum(lam, eps * lam.max())
    return Transform(kind, mu, (O / np.sqrt(lam)) @ O.T)
