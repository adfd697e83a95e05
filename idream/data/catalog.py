"""The item space: descriptions → text embeddings (cached) → the raw item matrix E.

Also embeds intention sentences with the same text model, so items and intentions share a space.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from idream import text
from idream.data.datasets import BUILTIN_DATASETS, Dataset
from idream.errors import InputError

DESCRIPTION_SOURCES = ("template", "llm")  # llm: `python -m idream describe` writes them


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_")[:80]


def item_texts(ds: Dataset, descriptions: str = "template",
               cache_dir: Path | None = None) -> list[str]:
    """One description per catalog row (llm: from the descriptions cache under cache_dir)."""
    if descriptions not in DESCRIPTION_SOURCES:
        raise InputError(f"unknown description source {descriptions!r}: use one of "
                         f"{', '.join(DESCRIPTION_SOURCES)}")
    if descriptions == "llm":
        from idream.text.llm import cached_descriptions, descriptions_path

        hint = ds.name if ds.name in BUILTIN_DATASETS else (ds.source or ds.name)  # how to describe it
        return cached_descriptions(ds.all_item_meta(), descriptions_path(ds.name, cache_dir), hint,
                                   ds.item_kind)
    return [text.describe(m, ds.item_kind) for m in ds.all_item_meta()]


def item_embeddings(ds: Dataset, backend: "text.EmbeddingBackend", descriptions: str = "template",
                    cache_dir: Path | None = None, progress: bool = True) -> np.ndarray:
    """E (N, D): every item's description embedded once and cached with its provenance."""
    cache_dir = Path(cache_dir) if cache_dir else text.default_cache_dir()
    path = cache_dir / "embeddings" / f"{_slug(ds.name)}-{_slug(backend.name)}-{descriptions}.safetensors"
    return text.embed_texts(item_texts(ds, descriptions, cache_dir), backend, path, progress=progress)


def embed_sentences(sentences: list[str], backend: "text.EmbeddingBackend", cache_dir: Path | None,
                    tag: str, progress: bool = True) -> np.ndarray:
    """Embed a list of sentences (e.g. generated intentions) with an on-disk cache named by tag."""
    cache_dir = Path(cache_dir) if cache_dir else text.default_cache_dir()
    path = cache_dir / "sentences" / f"{_slug(tag)}-{_slug(backend.name)}.safetensors"
    return text.embed_texts(sentences, backend, path, progress=progress)
