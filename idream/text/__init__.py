"""Item texts and their embeddings (the paper's TEM), one job a module.

The data flows one way: item metadata -> `descriptions.describe` -> `EmbeddingBackend.encode`
(`backends.get_backend`) -> matrix E, cached on disk with its provenance (`cache.embed_texts`) so
that E is computed once per (dataset, TEM, descriptions). The names most callers need are handed
on here.
"""

from idream.text.interface import EmbeddingBackend
from idream.text.backends import get_backend
from idream.text.cache import default_cache_dir, embed_texts
from idream.text.descriptions import TEMPLATE_VERSION, describe

__all__ = ["EmbeddingBackend", "TEMPLATE_VERSION", "default_cache_dir", "describe", "embed_texts", "get_backend"]
