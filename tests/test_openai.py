"""OpenAI embeddings ("openai:MODEL"): batching, retries and the cache, over real HTTP to a fake
OpenAI-compatible server on 127.0.0.1 (tests/fake_openai.py), through the real openai client."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from fake_openai import fake_vector, script, server_fixtures
from idream import text
from idream.text.openai_backend import (
    OpenAIEmbeddingBackend,
    OpenAIServiceError,
    RetryPolicy,
    parse_spec,
    retry_after_seconds,
    scrub,
    spec_with_dimensions,
)

KEY = "sk-test-EMBEDKEY-7f3a9c1e5b2d8f4a6c0e"
TEXTS = [f"A synthetic film number {i} about {'cats' if i % 2 else 'space'}." for i in range(40)]


fake, env = server_fixtures(KEY)


def expected(texts, dim):
    return np.stack([fake_vector(t, dim) for t in texts])


def test_spec_parsing_and_names():
    assert parse_spec("text-embedding-3-small") == ("text-embedding-3-small", None)
    assert parse_spec("text-embedding-3-small@256") == ("text-embedding-3-small", 256)
    assert parse_spec("nomic-embed-text:latest") == ("nomic-embed-text:latest", None)  # Ollama tag
    for bad in ("", "m@", "m@0", "m@x"):
        with pytest.raises(ValueError):
            text.get_backend(f"openai:{bad}")
    small = text.get_backend("openai:text-embedding-3-small")
    assert (small.name, small.dim) == ("openai:text-embedding-3-small", 1536)
    short = text.get_backend(spec_with_dimensions("openai:text-embedding-3-small", 256))
    assert (short.name, short.dim) == ("openai:text-embedding-3-small@256", 256)
    assert spec_with_dimensions("openai:m", None) == "openai:m"
    with pytest.raises(ValueError, match="only applies"):
        spec_with_dimensions("minilm", 64)
    with pytest.raises(ValueError, match="already asks"):
        spec_with_dimensions("openai:m@32", 64)


def test_without_key_says_so_plainly(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    backend = text.get_backend("openai:text-embedding-3-small")  # building it needs no key
    reason = backend.unavailable_reason()
    assert "OPENAI_API_KEY" in reason and "\n" not in reason
    with pytest.raises(OpenAIServiceError, match="OPENAI_API_KEY"):
        backend.encode(["hello"])


def test_batches_and_vectors(env):
    backend = OpenAIEmbeddingBackend("fake-embed", dimensions=16, batch_size=16)
    out = backend.encode(TEXTS)
    assert out.dtype == np.float32 and out.shape == (40, 16)
    np.testing.assert_allclose(out, expected(TEXTS, 16), rtol=1e-6)
    bodies = env.requests("embeddings")
    assert [len(b["input"]) for b in bodies] == [16, 16, 8]
    assert [t for b in bodies for t in b["input"]] == TEXTS
    assert all(b["dimensions"] == 16 and b["model"] == "fake-embed" for b in bodies)


def test_unknown_model_dimension_is_probed_once(env):
    backend = text.get_backend("openai:fake-embed")
    assert env.counts["embeddings"] == 0  # nothing asked at construction
    assert backend.dim == 24 and backend.dim == 24
    assert env.counts["embeddings"] == 1
    assert backend.encode(["x"]).shape == (1, 24)


@pytest.mark.parametrize("fault", ["429", "500", "503", "stall", "malformed", "half", "drop"])
def test_transient_faults_are_retried(env, fault):
    env.fault = script(embeddings={2: fault})
    backend = OpenAIEmbeddingBackend("fake-embed", dimensions=8, batch_size=16)
    out = backend.encode(TEXTS)
    np.testing.assert_allclose(out, expected(TEXTS, 8), rtol=1e-6)
    bodies = env.requests("embeddings")
    assert len(bodies) == 4  # three batches, the second one twice
    assert bodies[1]["input"] == bodies[2]["input"] == TEXTS[16:32]


def test_retry_after_is_honoured(env):
    env.retry_after = 1
    env.fault = script(embeddings={1: "429"})
    t0 = time.monotonic()
    OpenAIEmbeddingBackend("fake-embed", dimensions=8).encode(TEXTS[:3])
    assert 1.0 <= time.monotonic() - t0 < 5.0
    assert env.counts["embeddings"] == 2


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after-ms": "250"}) == pytest.approx(0.25)
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after_seconds({"retry-after": later}) <= 31
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None
    assert RetryPolicy(backoff=0.01).delay(3, 2.5) == 2.5  # the server's word wins


def test_gives_up_after_max_attempts(env):
    env.fault = lambda kind, n, body: "500"
    with pytest.raises(OpenAIServiceError, match="failed 5 times.*giving up") as err:
        OpenAIEmbeddingBackend("fake-embed", dimensions=8).encode(TEXTS[:3])
    assert err.value.status == 500
    assert env.counts["embeddings"] == 5


def test_wrong_key_fails_at_once_and_never_shows_it(env, monkeypatch, caplog, capsys):
    caplog.set_level(logging.DEBUG)  # the openai and http client debug logs too
    wrong = "sk-test-WRONGKEY-0a1b2c3d4e5f6a7b8c9d"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    with pytest.raises(OpenAIServiceError, match="HTTP 401") as err:
        OpenAIEmbeddingBackend("fake-embed", dimensions=8).encode(TEXTS[:3])
    assert env.counts["embeddings"] == 1  # no retry of a permanent error
    seen = str(err.value) + repr(err.value) + caplog.text + "".join(capsys.readouterr())
    assert "Incorrect API key" in seen  # the server echoed the key, the message kept the rest
    assert wrong not in seen and wrong[:16] not in seen and KEY not in seen
    assert scrub(f"token Bearer {wrong} and {wrong}") == "token Bearer *** and ***"


def test_shares_the_embedding_cache(env, tmp_path):
    backend = OpenAIEmbeddingBackend("fake-embed", dimensions=8, batch_size=16)
    path = tmp_path / "emb.safetensors"
    first = text.embed_texts(TEXTS, backend, path, progress=False)
    assert env.counts["embeddings"] == 3
    again = text.embed_texts(TEXTS, OpenAIEmbeddingBackend("fake-embed", dimensions=8), path,
                             progress=False)
    assert env.counts["embeddings"] == 3  # served from the cache
    np.testing.assert_array_equal(first, again)
    # another dimension is another backend name: the cache is never mixed up
    other = text.embed_texts(TEXTS, OpenAIEmbeddingBackend("fake-embed", dimensions=4), path,
                             progress=False)
    assert other.shape == (40, 4) and env.counts["embeddings"] == 4
