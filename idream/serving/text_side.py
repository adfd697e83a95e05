"""The checkpoint's text model on the serving side: intentions and new items to the text model's
own vectors and to the model's transformed space, and the text match a person can read."""

from __future__ import annotations

import numpy as np
import torch

from idream import text
from idream.core.transform import Transform
from idream.errors import InputError
from idream.serving.request import MAX_INTENTION_CHARS, clean_text


class TextSide:
    """One text model (loaded on first use) and the transform into the model's space."""

    def __init__(self, spec: str, transform: Transform, backend: "text.EmbeddingBackend | None" = None):
        self.spec, self.transform, self._backend = spec, transform, backend

    @property
    def backend(self) -> "text.EmbeddingBackend":
        if self._backend is None:
            self._backend = text.get_backend(self.spec)
        return self._backend

    def status(self) -> str | None:
        """None when intentions and new items can be embedded here; else why not (for the UI)."""
        try:
            return self.backend.unavailable_reason()
        except (RuntimeError, ValueError) as e:
            return str(e)

    def raw(self, sentences: list[str]) -> np.ndarray:
        """Sentences → the text model's own vectors, before the transform.  # (n, Dt)"""
        e = self.backend.encode([clean_text(s)[:MAX_INTENTION_CHARS] for s in sentences])
        if e.shape[1] != self.transform.dim:
            raise InputError(f"the text model gives {e.shape[1]}-d vectors but the checkpoint "
                             f"expects {self.transform.dim}-d: use the checkpoint's text model ({self.spec})")
        return e

    def encode(self, sentences: list[str]) -> torch.Tensor:
        """Sentences → transformed text vectors.  # (n, D)"""
        return torch.from_numpy(self.transform(self.raw(sentences)))

    def intention(self, intention: str | None) -> tuple:
        """A checked intention's raw text vector (Dt,) and its transformed row (1, D); (None, None)
        without one. The raw one is for the text-match column, the transformed one for the model."""
        if not intention:
            return None, None
        e = self.raw([intention])
        return e[0], torch.from_numpy(self.transform(e))


def text_match(e_q: np.ndarray, rows: list, embeddings: np.ndarray | None, n_items: int,
               extra: list | None = None) -> list[float | None]:
    """Cosine between each item's description and an intention in the text model's own space
    (what a person can read: higher is closer; the model's whitened space is not meant for it).
    Rows ≥ n_items are extra (new) items.  e_q (Dt,) raw"""
    q = e_q / max(float(np.linalg.norm(e_q)), 1e-12)
    out = []
    for i in rows:
        e = extra[i - n_items]["e"] if i >= n_items else (None if embeddings is None else embeddings[i])
        out.append(None if e is None else round(float(e @ q / max(float(np.linalg.norm(e)), 1e-12)), 4))
    return out
