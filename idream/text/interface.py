"""The interface every text-embedding model implements (MiniLM, hashing, OpenAI), in a module of
its own so that each backend can build on it without importing the others."""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np


class EmbeddingBackend(abc.ABC):
    """A text-embedding model: maps texts to float32 vectors of a fixed dimension.

    `name` records provenance (it keys the cache), `dim` is known without encoding anything.
    """

    name: str
    dim: int

    @abc.abstractmethod
    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Embed `texts` -> float32 array of shape (len(texts), dim); (0, dim) for no texts."""

    def unavailable_reason(self) -> str | None:
        """None when encode() can work here; else a plain sentence saying why (e.g. no API key)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"
