"""Linear transformations of the fixed text embeddings: none, scale, ZCA whitening.

Fitted on the item matrix only, then applied to items and intentions alike, so that both live in
one space the diffusion model can work in (unit-scale, evenly spread dimensions).

Whitening can also keep only the text's `text_dims` principal directions (the "semantic" space)
and append `id_dims` empty ones (the "null" space), where the model learns each item's
collaborative part (AlphaFuse, SIGIR 2025): warm and new items then share every text direction,
and the learned part cannot swamp it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

KINDS = ("none", "scale", "whiten")


@dataclass
class Transform:
    """A(e) = (e - mean) @ matrix, with matrix = a*I for `scale` and O Λ^-1/2 Oᵀ for `whiten`
    (O_s Λ_s^-1/2 followed by id_dims zero columns when only s text directions are kept)."""

    kind: str
    mean: np.ndarray  # (D,)
    matrix: np.ndarray  # (D, D)

    @property
    def dim(self) -> int:
        """The text vectors' dimension (what the transform takes)."""
        return self.mean.shape[0]

    @property
    def out_dim(self) -> int:
        """The scoring space's dimension (what the transform gives): text and ID directions."""
        return self.matrix.shape[1]

    @cached_property
    def _pinv(self) -> np.ndarray:
        """M⁺ (D', D), computed once: text steering goes through it on every request."""
        return np.linalg.pinv(self.matrix)

    def to_raw(self, z: np.ndarray) -> np.ndarray:
        """z @ M⁺: transformed rows back to raw-space offsets from the mean (their text part).
        Exact for a square transform; the least-squares preimage otherwise.  (n, D') -> (n, D)"""
        if self.matrix.shape[0] == self.matrix.shape[1]:
            return np.linalg.solve(self.matrix.T, z.T).T
        return z @ self._pinv

    def from_raw(self, e: np.ndarray) -> np.ndarray:
        """M⁺ e: the vector d of the scoring space with z·d = (e_item − μ)·e for every text-only
        item (within the kept text directions).  (n, D) -> (n, D')"""
        if self.matrix.shape[0] == self.matrix.shape[1]:
            return np.linalg.solve(self.matrix, e.T).T
        return e @ self._pinv.T

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


def fit_transform(E: np.ndarray, kind: str = "whiten", eps: float = 1e-5, text_dims: int = 0,
                  id_dims: int = 0) -> Transform:
    """Fit A on the item matrix E (N, D).

    none: identity. scale: A(e) = a·e with a chosen so the mean per-dimension variance is 1
    (no centring, so dot products keep their order). whiten: ZCA, eigenvalues floored at
    eps·max so near-empty directions are not blown up without bound. text_dims > 0 (whiten only):
    keep the text_dims principal directions alone, whitened. id_dims: that many zero columns
    after the text ones, for the learned ID part of each item.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown transform {kind!r}: use one of {', '.join(KINDS)}")
    E = np.asarray(E, dtype=np.float64)
    D = E.shape[1]
    if text_dims and kind != "whiten":
        raise ValueError(f"text_dims {text_dims} keeps principal directions: it needs the whiten transform")
    if not 0 <= text_dims <= D or id_dims < 0:
        raise ValueError(f"text_dims {text_dims} / id_dims {id_dims}: text_dims must lie in 0..{D}, "
                         "id_dims be 0 or more")
    ids = np.zeros((D, id_dims))
    if kind == "none":
        return Transform(kind, np.zeros(D), np.hstack([np.eye(D), ids]))
    if not E.var(axis=0).sum() > 0:  # scale and whiten would divide by zero
        raise ValueError(f"the {len(E)} item vectors are all equal, so they cannot be scaled or "
                         "whitened: give the items distinct descriptions, or use --transform none")
    if kind == "scale":
        a = 1.0 / np.sqrt(E.var(axis=0).mean())
        return Transform(kind, np.zeros(D), np.hstack([a * np.eye(D), ids]))
    mu = E.mean(axis=0)
    cov = np.cov(E - mu, rowvar=False, bias=True)
    lam, O = np.linalg.eigh(cov)
    lam = np.maximum(lam, eps * lam.max())
    if text_dims:  # the principal directions, largest first; no rotation back (dot products keep)
        top = np.argsort(lam)[::-1][:text_dims]
        return Transform(kind, mu, np.hstack([O[:, top] / np.sqrt(lam[top]), ids]))
    return Transform(kind, mu, np.hstack([(O / np.sqrt(lam)) @ O.T, ids]))
