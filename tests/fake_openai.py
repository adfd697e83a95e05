"""A fake OpenAI-compatible server for tests: real HTTP on 127.0.0.1, deterministic answers.

Serves POST /v1/embeddings and POST /v1/chat/completions. Answers are derived from the input only
(an embedding is a hash of its text; a description is a hash of the prompt), so a test can compute
what the cache must hold. Faults are injected per request by `FakeOpenAI.fault`, a callable
`(kind, n, body) -> fault name | None` where kind is "chat" or "embeddings" and n counts that
kind's requests from 1. Fault names:

- "429": HTTP 429 with `Retry-After: FakeOpenAI.retry_after` seconds
- "500", "503": a server error
- "400": a refusal of this one request (not retried)
- "401": an authentication error whose message echoes the Authorization header (as some servers
  do), to test that the caller scrubs the key from what it reports
- "stall": answer only after `FakeOpenAI.stall_s` seconds (past the client's timeout)
- "malformed": HTTP 200 whose body is not JSON
- "half": HTTP 200 with a well-formed body that answers only half the batch (chat: no content)
- "drop": send the headers and half the body, then close the connection
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

DEFAULT_DIM = 24  # a model without `dimensions` answers with this many dimensions
KNOWN_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
              "text-embedding-ada-002": 1536}


def fake_vector(text: str, dim: int) -> np.ndarray:
    """The embedding the server returns for `text`: seeded by the text's sha256, unit length."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def fake_description(messages: list[dict]) -> str:
    """The chat answer for `messages`: names a hash of the whole conversation and its last line."""
    blob = json.dumps(messages, sort_keys=True, ensure_ascii=False)
    tag = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
    last = str(messages[-1].get("content", "")).strip().splitlines()
    return f"Fake description {tag}. " + (last[-1] if last else "")


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _send(self, status: int, payload: bytes, headers: dict | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _error(self, status: int, message: str, headers: dict | None = None) -> None:
        body = {"error": {"message": message, "type": "fake_error", "code": str(status)}}
        self._send(status, json.dumps(body).encode(), headers)

    def do_POST(self):  # noqa: N802 (http.server's naming)
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/").endswith("/embeddings"):
            kind = "embeddings"
        elif self.path.rstrip("/").endswith("/chat/completions"):
            kind = "chat"
        else:
            return self._error(404, f"no route {self.path}")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error(400, "request body is not JSON")
        with fake.lock:
            fake.counts[kind] += 1
            n = fake.counts[kind]
        fault = fake.fault(kind, n, body) if fake.fault else None
        auth = self.headers.get("Authorization", "")
        if fake.key is not None and auth != f"Bearer {fake.key}":
            fault = "401"
        with fake.lock:
            fake.log.append((kind, n, fault, body))
        try:
            self._answer(kind, body, fault, auth)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. after a stall); nothing to do

    def _answer(self, kind: str, body: dict, fault: str | None, auth: str) -> None:
        fake = self.server.fake
        if fault == "429":
            return self._error(429, "Rate limit reached, slow down",
                               {"Retry-After": str(fake.retry_after)})
        if fault in ("500", "503"):
            return self._error(int(fault), "The server had an error while processing your request")
        if fault == "400":
            return self._error(400, "This request was refused")
        if fault == "401":
            return self._error(401, f"Incorrect API key provided: {auth.removeprefix('Bearer ')}")
        if fault == "stall":
            fake.stopping.wait(fake.stall_s)
        if fault == "malformed":
            return self._send(200, b'{"object": "list", "data": [{"embedd')
        payload = self._embeddings(body, fault) if kind == "embeddings" else self._chat(body, fault)
        data = json.dumps(payload).encode()
        if fault == "drop":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self._send(200, data)

    def _embeddings(self, body: dict, fault: str | None) -> dict:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        model = body.get("model", "")
        dim = int(body.get("dimensions") or KNOWN_DIMS.get(model, DEFAULT_DIM))
        if fault == "half":
            texts = texts[: len(texts) // 2]
        data = []
        for i, t in enumerate(texts):
            v = fake_vector(t, dim)
            emb = base64.b64encode(v.tobytes()).decode() if body.get("encoding_format") == "base64" \
                else [float(x) for x in v]
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return {"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)}}

    def _chat(self, body: dict, fault: str | None) -> dict:
        content = None if fault == "half" else fake_description(body["messages"])
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
                "model": body.get("model", ""),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: "FakeOpenAI"


class FakeOpenAI:
    """Start with `with FakeOpenAI(key=...) as fake:`; point clients at `fake.base_url`."""

    def __init__(self, key: str | None = None, fault=None, retry_after: float = 0,
                 stall_s: float = 2.0):
        self.key = key
        self.fault = fault
        self.retry_after = retry_after
        self.stall_s = stall_s
        self.lock = threading.Lock()
        self.counts = {"chat": 0, "embeddings": 0}
        self.log: list[tuple] = []  # (kind, n, fault, body) per request
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def requests(self, kind: str, ok_only: bool = False) -> list[dict]:
        """Request bodies of one kind, in arrival order (only the unfaulted ones if ok_only)."""
        with self.lock:
            return [b for k, _, f, b in self.log if k == kind and not (ok_only and f)]


def script(**faults_by_kind):
    """A fault callable from {kind: {request number: fault}}, e.g. script(chat={1: "429"})."""
    def fault(kind, n, body):
        return faults_by_kind.get(kind, {}).get(n)
    return fault


FAST_RETRIES = {"IDREAM_OPENAI_BACKOFF": "0.01", "IDREAM_OPENAI_TIMEOUT": "2",
                "IDREAM_OPENAI_MAX_ATTEMPTS": "5"}


def server_fixtures(key: str):
    """pytest fixtures `fake` (a running FakeOpenAI that accepts `key`) and `env` (the openai
    client pointed at it, no batch-size override left from the caller's environment).
    In a test module: `fake, env = server_fixtures(KEY)`."""
    import pytest

    @pytest.fixture
    def fake():
        with FakeOpenAI(key=key, stall_s=5.0) as server:
            yield server

    @pytest.fixture
    def env(monkeypatch, fake):
        monkeypatch.delenv("IDREAM_OPENAI_BATCH", raising=False)
        return point_client_at(monkeypatch, fake, key)

    return fake, env


def point_client_at(monkeypatch, server: "FakeOpenAI", key: str) -> "FakeOpenAI":
    """Environment for the real openai client to talk to `server`, with tiny retry delays."""
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    for k, v in FAST_RETRIES.items():
        monkeypatch.setenv(k, v)
    return server
