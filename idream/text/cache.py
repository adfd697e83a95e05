"""The on-disk embedding cache: a matrix E saved with its provenance (backend, dimension, the
texts' fingerprint), so that E is computed once per (dataset, TEM, descriptions) and a stale or
damaged file is rebuilt, never read.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from idream.text.interface import EmbeddingBackend
from idream.files import atomic_write

log = logging.getLogger(__name__)

CACHE_FORMAT = "idream-embeddings-v1"


def default_cache_dir() -> Path:
    """Where cached embeddings live: $IDREAM_CACHE_DIR, else ~/.cache/idream."""
    env = os.environ.get("IDREAM_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "idream"


def text_fingerprint(texts: Sequence[str]) -> str:
    """sha256 (hex) of the ordered texts joined with the unit separator "\\x1f"."""
    return hashlib.sha256("\x1f".join(texts).encode("utf-8")).hexdigest()


def _cache_metadata(backend: EmbeddingBackend, dim: int, texts: Sequence[str]) -> dict[str, str]:
    return {
        "format": CACHE_FORMAT,
        "backend": backend.name,
        "dim": str(dim),
        "count": str(len(texts)),
        "texts_sha256": text_fingerprint(texts),
    }


def _load_cache(path: Path, expected: dict[str, str]) -> tuple[np.ndarray | None, str]:
    """The cached matrix if `path` has exactly the `expected` provenance, else (None, why)."""
    from safetensors import safe_open

    if not path.exists():
        return None, "no cache file yet"
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            stale = [k for k, v in expected.items() if meta.get(k) != v]
            if stale:
                return None, "stale (" + ", ".join(
                    f"{k}: {meta.get(k)!r} != {expected[k]!r}" for k in stale
                ) + ")"
            if "embeddings" not in f.keys():
                return None, "corrupt (no 'embeddings' tensor)"
            emb = f.get_tensor("embeddings")
    except Exception as err:  # a truncated or foreign file raises many kinds of errors
        return None, f"unreadable ({type(err).__name__}: {err})"
    shape = (int(expected["count"]), int(expected["dim"]))
    if emb.shape != shape or emb.dtype != np.float32:
        return None, f"corrupt (tensor {emb.dtype}{emb.shape}, expected float32{shape})"
    return emb, "ok"


def _save_cache(path: Path, emb: np.ndarray, metadata: dict[str, str]) -> None:
    """Write the cache atomically: a temporary file in the same folder, then `os.replace`."""
    from safetensors.numpy import save_file

    atomic_write(path, lambda tmp: save_file({"embeddings": np.ascontiguousarray(emb)}, tmp, metadata=metadata))


def embed_texts(
    texts: Sequence[str],
    backend: EmbeddingBackend,
    cache_path: Path | None,
    *,
    progress: bool = True,
) -> np.ndarray:
    """Embed `texts` -> float32 (n, dim), reusing `cache_path` when its provenance matches.

    A missing, stale or unreadable cache is rebuilt (with a logged warning for the latter two).
    """
    texts = list(texts)
    cache_path = Path(cache_path) if cache_path is not None else None
    if cache_path is not None:
        cached, why = _load_cache(cache_path, _cache_metadata(backend, backend.dim, texts))
        if cached is not None:
            log.info("Loaded %d cached embeddings from %s", len(texts), cache_path)
            return cached
        if cache_path.exists():
            log.warning("Embedding cache %s is %s; recomputing.", cache_path, why)
        else:
            log.info("No embedding cache at %s; computing %d embeddings.", cache_path, len(texts))

    emb = np.ascontiguousarray(backend.encode(texts, progress=progress), dtype=np.float32)
    if emb.shape != (len(texts), backend.dim):
        raise ValueError(
            f"{backend.name} returned shape {emb.shape}, expected {(len(texts), backend.dim)}"
        )
    if cache_path is not None:
        _save_cache(cache_path, emb, _cache_metadata(backend, emb.shape[1], texts))
    return emb
