"""OpenAI-compatible endpoints: the client, the retry rules and the embedding backend ("openai:MODEL").

Configuration comes from the environment only: OPENAI_API_KEY and OPENAI_BASE_URL (a local
OpenAI-compatible server such as vLLM or Ollama, e.g. http://localhost:11434/v1). The key is
handed to the client and nowhere else: every message this module raises or logs goes through
`scrub`, so the key never reaches output, logs, exceptions or files.

Retries are ours (the client's own are switched off, `max_retries=0`) so that embeddings and chat
descriptions share one rule: retry 429 (waiting what Retry-After asks), 408/409/5xx, timeouts,
dropped connections and malformed answers with exponential backoff; fail at once on other
errors (a wrong key, an unknown model). Knobs, for tests and slow local servers:
IDREAM_OPENAI_TIMEOUT (seconds per request, 60), IDREAM_OPENAI_MAX_ATTEMPTS (8),
IDREAM_OPENAI_BACKOFF (first delay in seconds, 1), IDREAM_OPENAI_MAX_BACKOFF (60),
IDREAM_OPENAI_BATCH (texts per embedding request, 256).
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from tqdm.auto import tqdm

from idream.text.interface import EmbeddingBackend
from idream.errors import InputError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Output dimensions of OpenAI's embedding models; other models are asked once (a probe request).
KNOWN_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
              "text-embedding-ada-002": 1536}
DEFAULT_BATCH = 256  # texts per embedding request (the API takes up to 2048 and 300k tokens)
_MAX_RETRY_AFTER = 600.0  # never sleep longer than this on one Retry-After


class OpenAIServiceError(InputError, RuntimeError):
    """A request that cannot succeed (no key, wrong key, retries spent); the message is scrubbed.

    `status` is the last HTTP status when there was one (e.g. 401, 400).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(scrub(message))
        self.status = status


class MalformedResponse(Exception):
    """An answer that arrived but cannot be used (wrong shape, empty text): retried."""


class Interrupted(Exception):
    """Raised inside a retry loop when the caller asked it to stop (e.g. after Ctrl-C)."""


# --------------------------------------------------------------------------------------------
# Environment, key hygiene, client
# --------------------------------------------------------------------------------------------

def api_key() -> str | None:
    key = os.environ.get("OPENAI_API_KEY", "").strip()
    return key or None


def base_url() -> str | None:
    url = os.environ.get("OPENAI_BASE_URL", "").strip()
    return url or None


def unavailable_reason() -> str | None:
    """None when requests can be made here; else a plain sentence saying what to set."""
    if api_key() is None and base_url() is None:
        return ("OpenAI requests need OPENAI_API_KEY in the environment (or OPENAI_BASE_URL "
                "pointing at a local OpenAI-compatible server); set it and restart.")
    return None


_SECRET_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_*-]{6})[A-Za-z0-9_*-]+")
_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)


def scrub(message: object) -> str:
    """`message` as text with the API key (and anything that looks like a key) masked."""
    s = str(message)
    key = api_key()
    if key:
        s = s.replace(key, "***")
    s = _BEARER.sub(r"\1***", s)
    return _SECRET_LIKE.sub(r"\1***", s)


def make_client(timeout: float) -> Any:
    """An `openai.OpenAI` client from the environment, with its own retries switched off."""
    reason = unavailable_reason()
    if reason:
        raise OpenAIServiceError(reason)
    try:
        from openai import OpenAI
    except ImportError:
        raise OpenAIServiceError("OpenAI requests need the openai package: pip install openai") from None
    # Local servers usually ignore the key, but the client insists on one.
    return OpenAI(api_key=api_key() or "unused", base_url=base_url(), timeout=timeout, max_retries=0)


# --------------------------------------------------------------------------------------------
# Retries
# --------------------------------------------------------------------------------------------

def _env_number(name: str, default: float, kind=float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise InputError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise InputError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass
class RetryPolicy:
    """How hard to try: per-request timeout, attempts per request, exponential backoff."""

    timeout: float = 60.0
    max_attempts: int = 8
    backoff: float = 1.0  # delay before the 2nd attempt; doubles each time, with jitter
    max_backoff: float = 60.0

    @classmethod
    def from_env(cls) -> "RetryPolicy":
        return cls(timeout=_env_number("IDREAM_OPENAI_TIMEOUT", cls.timeout),
                   max_attempts=int(_env_number("IDREAM_OPENAI_MAX_ATTEMPTS", cls.max_attempts, int)),
                   backoff=_env_number("IDREAM_OPENAI_BACKOFF", cls.backoff),
                   max_backoff=_env_number("IDREAM_OPENAI_MAX_BACKOFF", cls.max_backoff))

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), _MAX_RETRY_AFTER)
        return min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def retry_after_seconds(headers: Any) -> float | None:
    """What the server asked us to wait (retry-after-ms, or Retry-After in seconds or as a date)."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
            if math.isfinite(seconds):
                return max(seconds, 0.0)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(when.timestamp() - time.time(), 0.0)
        except (TypeError, ValueError, IndexError):
            pass
    return None


def _classify(err: BaseException) -> tuple[bool, float | None, str]:
    """(retryable?, Retry-After seconds, short description) for an exception from a request."""
    import openai

    if isinstance(err, MalformedResponse):
        return True, None, f"malformed answer ({err})"
    if isinstance(err, openai.APITimeoutError):
        return True, None, "timed out"
    if isinstance(err, openai.APIConnectionError):
        return True, None, "connection failed"
    if isinstance(err, openai.APIStatusError):
        status = err.status_code
        retry_after = retry_after_seconds(getattr(err.response, "headers", None))
        retryable = status in (408, 409, 425, 429) or status >= 500
        return retryable, retry_after, f"HTTP {status}: {_api_message(err)}"
    if isinstance(err, openai.APIResponseValidationError):
        return True, None, "malformed answer (does not fit the API schema)"
    if isinstance(err, ValueError):  # e.g. json.JSONDecodeError: the body is not JSON
        return True, None, f"malformed answer ({type(err).__name__}: {str(err)[:100]})"
    return False, None, f"{type(err).__name__}: {err}"


def _api_message(err: Any) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(getattr(err, "message", err))[:300]


def call_with_retries(call: Callable[[], T], policy: RetryPolicy, what: str,
                      stop: threading.Event | None = None,
                      on_retry: Callable[[str], None] | None = None) -> T:
    """Run `call()` until it succeeds, retrying transient failures as the policy says.

    Raises OpenAIServiceError (scrubbed) on a permanent error or when the attempts are spent, and
    Interrupted as soon as `stop` is set.
    """
    for attempt in range(1, policy.max_attempts + 1):
        if stop is not None and stop.is_set():
            raise Interrupted(what)
        try:
            return call()
        except (OpenAIServiceError, Interrupted):
            raise
        except Exception as err:  # noqa: BLE001 - classified below, re-raised scrubbed
            retryable, retry_after, why = _classify(err)
            why = scrub(why)
            status = getattr(err, "status_code", None)
            if not retryable:
                raise OpenAIServiceError(f"{what} failed: {why}", status) from None
            if attempt == policy.max_attempts:
                raise OpenAIServiceError(
                    f"{what} failed {attempt} times (last: {why}); giving up", status) from None
            wait = policy.delay(attempt, retry_after)
            log.info("%s: %s; retry %d/%d in %.2f s", what, why, attempt, policy.max_attempts - 1,
                     wait)
            if on_retry is not None:
                on_retry(why)
            if stop is not None:
                if stop.wait(wait):
                    raise Interrupted(what) from None
            else:
                time.sleep(wait)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# Embedding backend
# --------------------------------------------------------------------------------------------

def parse_spec(arg: str) -> tuple[str, int | None]:
    """"MODEL" or "MODEL@DIM" (the part after "openai:") -> (model, dimensions or None)."""
    model, at, dim = arg.strip().rpartition("@") if "@" in arg else (arg.strip(), "", "")
    model = model.strip()
    if not model:
        raise InputError("'openai:' needs a model, e.g. 'openai:text-embedding-3-small'")
    if at:
        if not dim.strip().isdigit() or int(dim) < 1:
            raise InputError(f"'openai:{arg}': the dimension after '@' must be a positive "
                             "integer, e.g. 'openai:text-embedding-3-small@256'")
        return model, int(dim)
    return model, None


def spec_with_dimensions(spec: str, dimensions: int | None) -> str:
    """Fold a --tem-dim into an "openai:MODEL" spec ("openai:MODEL@DIM"); None keeps the spec."""
    if dimensions is None:
        return spec
    if not spec.strip().lower().startswith("openai:"):
        raise InputError(f"--tem-dim only applies to OpenAI embeddings (openai:MODEL), not to {spec}")
    if int(dimensions) < 1:
        raise InputError(f"--tem-dim must be a positive integer, got {dimensions}")
    model, dim = parse_spec(spec.strip()[len("openai:"):])
    if dim is not None and dim != int(dimensions):
        raise InputError(f"{spec!r} already asks for {dim} dimensions; drop --tem-dim {dimensions}")
    return f"openai:{model}@{int(dimensions)}"


class OpenAIEmbeddingBackend(EmbeddingBackend):
    """Embeddings from an OpenAI-compatible /v1/embeddings endpoint, in batches, with retries.

    The name is the spec ("openai:text-embedding-3-small", or "...@256" for shortened vectors),
    so caches and checkpoints of different models or dimensions never mix. Construction makes no
    request; the client is built on first use.
    """

    def __init__(self, model: str, dimensions: int | None = None, batch_size: int | None = None,
                 policy: RetryPolicy | None = None) -> None:
        self.model = model
        self.dimensions = dimensions
        self.name = f"openai:{model}" + (f"@{dimensions}" if dimensions else "")
        self.batch_size = int(batch_size or _env_number("IDREAM_OPENAI_BATCH", DEFAULT_BATCH, int))
        self._policy = policy
        self._dim = dimensions or KNOWN_DIMS.get(model)
        self._client = None
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, arg: str) -> "OpenAIEmbeddingBackend":
        return cls(*parse_spec(arg))

    @property
    def policy(self) -> RetryPolicy:
        if self._policy is None:
            self._policy = RetryPolicy.from_env()
        return self._policy

    @property
    def dim(self) -> int:  # type: ignore[override]
        if self._dim is None:  # a model we do not know: ask the server once
            self._dim = int(self._request(["dimension probe"], "embedding probe").shape[1])
        return self._dim

    def unavailable_reason(self) -> str | None:
        reason = unavailable_reason()
        return f"Intentions and new items need {self.name} embeddings. {reason}" if reason else None

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = make_client(self.policy.timeout)
            return self._client

    def _request(self, texts: list[str], what: str) -> np.ndarray:
        client = self._get_client()
        extra = {"dimensions": self.dimensions} if self.dimensions else {}

        def call() -> np.ndarray:
            response = client.embeddings.create(model=self.model, input=texts, **extra)
            return self._parse(response, len(texts))

        return call_with_retries(call, self.policy, what)

    def _parse(self, response: Any, n: int) -> np.ndarray:
        data = getattr(response, "data", None)
        if not isinstance(data, list) or len(data) != n:
            raise MalformedResponse(f"{0 if not isinstance(data, list) else len(data)} embeddings "
                                    f"for {n} texts")
        rows = sorted(data, key=lambda d: getattr(d, "index", 0))
        if [getattr(d, "index", i) for i, d in enumerate(rows)] != list(range(n)):
            raise MalformedResponse("embedding indices are not 0..n-1")
        try:
            out = np.asarray([list(d.embedding) for d in rows], dtype=np.float32)  # (n, dim)
        except (TypeError, ValueError, AttributeError):
            raise MalformedResponse("missing vectors or vectors of different lengths") from None
        if out.ndim != 2 or out.shape[1] == 0 or not np.isfinite(out).all():
            raise MalformedResponse("empty or non-finite vectors")
        if self._dim is not None and out.shape[1] != self._dim:
            hint = (" (the server may not support the `dimensions` parameter; drop --tem-dim)"
                    if self.dimensions else "")
            raise OpenAIServiceError(f"{self.name} returned {out.shape[1]}-d vectors, expected "
                                     f"{self._dim}{hint}")
        return out

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None,
               progress: bool = False) -> np.ndarray:
        """Embed `texts` -> (n, dim) float32, `batch_size` (default: self.batch_size) per request."""
        texts = [t if t.strip() else " " for t in texts]  # the API rejects empty inputs
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        reason = self.unavailable_reason()
        if reason:
            raise OpenAIServiceError(reason)
        size = int(batch_size or self.batch_size)
        starts = range(0, len(texts), size)
        parts = []
        for i, start in enumerate(tqdm(starts, desc=self.name, unit="request", disable=not progress)):
            batch = texts[start:start + size]
            what = f"embedding request {i + 1}/{len(starts)} ({len(batch)} texts, {self.name})"
            parts.append(self._request(batch, what))
        out = np.concatenate(parts)
        self._dim = out.shape[1]
        return out
