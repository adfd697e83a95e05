"""Item descriptions written by a chat LLM (the paper's ChatGPT descriptions), cached on disk.

`describe_catalog` asks an OpenAI-compatible /v1/chat/completions endpoint for one description per
item, with bounded concurrency and the retry rules of `idream.text.openai_backend`, and keeps every
answer in a descriptions cache: a JSON-lines file, one record per item

    {"item_id", "meta_sha256", "model", "prompt_version", "text"}

Each answer is appended (and fsync'ed) the moment it arrives, so a run that is killed keeps all
it was told; a torn last line from a crash mid-write is ignored when read and dropped at the next
run's start, which rewrites the file atomically (temporary file + os.replace) with one record per
item, as it does again when the run ends. A record counts for an item while its metadata hash and
prompt version are current, so a resumed run asks only for what is missing, and edited items
are described again. One run at a time writes a cache (a lock file next to it says so).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from idream.files import atomic_write
from idream.text.openai_backend import (
    Interrupted,
    MalformedResponse,
    OpenAIServiceError,
    RetryPolicy,
    call_with_retries,
    make_client,
)
from idream.errors import InputError
from idream.text.descriptions import FILM, wording

log = logging.getLogger(__name__)

PROMPT_VERSION = "describe-v1"  # the film prompt's; prompt_version(kind) names the others
MAX_TEXT_CHARS = 4000  # a longer answer is cut (a runaway generation, not a description)

_SYSTEM = ("You write catalog descriptions of {many} for a recommender system. "
           "Be factual, specific and concise.")
_USER = ("Write a description of the {one} below in one paragraph of about 100 words: "
         "what it is about, its genre, tone and mood, its themes, and the kind of {audience} "
         "who would enjoy it. Do not reveal the ending. Answer with the paragraph only: "
         "no heading, list or preamble.")


# --------------------------------------------------------------------------------------------
# Prompt and records
# --------------------------------------------------------------------------------------------

def prompts(kind: Sequence[str] = FILM) -> tuple[str, str]:
    """The system prompt and the user prompt's opening for a catalog of `kind` (singular, plural);
    films are asked about as "movies", the words their cached descriptions were written for."""
    words = wording(kind)
    one, many = ("movie", "movies") if words.film else (words.one, words.many)
    return _SYSTEM.format(many=many), _USER.format(one=one, audience=words.audience)


SYSTEM_PROMPT, USER_PROMPT = prompts(FILM)


def prompt_version(kind: Sequence[str] = FILM) -> str:
    """The cache's name for the prompt a kind is asked with: a record from another kind's prompt
    (a book catalog described as movies) is not current."""
    return PROMPT_VERSION if prompts(kind) == prompts(FILM) else f"{PROMPT_VERSION}-{wording(kind).one}"


def item_key(meta: Mapping[str, Any]) -> str:
    """The item id as the cache stores it (a string, whatever the dataset's id type)."""
    return str(meta.get("item_id"))


def metadata_sha256(meta: Mapping[str, Any]) -> str:
    """sha256 of the metadata the prompt is built from (a changed item is described again)."""
    fields = {"item_id": item_key(meta), "title": str(meta.get("title") or ""),
              "year": meta.get("year"), "genres": [str(g) for g in meta.get("genres") or ()],
              "description": str(meta.get("description") or "")}
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def build_messages(meta: Mapping[str, Any], kind: Sequence[str] = FILM) -> list[dict[str, str]]:
    """The chat messages that ask for one item's description, naming the catalog's `kind`."""
    lines = [f"Title: {str(meta.get('title') or '').strip() or 'unknown'}"]
    if meta.get("year"):
        lines.append(f"Year: {meta['year']}")
    genres = [str(g) for g in meta.get("genres") or () if str(g).strip()]
    if genres:
        lines.append(f"Genres: {', '.join(genres)}")
    notes = str(meta.get("description") or "").strip()
    if notes:
        lines.append(f"Notes: {notes}")
    system, user = prompts(kind)
    return [{"role": "system", "content": system},
            {"role": "user", "content": user + "\n\n" + "\n".join(lines)}]


def make_record(meta: Mapping[str, Any], model: str, text: str,
                kind: Sequence[str] = FILM) -> dict[str, str]:
    """The cache record of one answer, keyed by the item's metadata and the kind's prompt."""
    return {"item_id": item_key(meta), "meta_sha256": metadata_sha256(meta), "model": model,
            "prompt_version": prompt_version(kind), "text": text}


def is_current(record: Mapping[str, Any] | None, meta: Mapping[str, Any],
               model: str | None = None, kind: Sequence[str] = FILM) -> bool:
    """Whether `record` still describes `meta` (same metadata and prompt; same model if given)."""
    return (record is not None and record.get("meta_sha256") == metadata_sha256(meta)
            and record.get("prompt_version") == prompt_version(kind)
            and (model is None or record.get("model") == model)
            and isinstance(record.get("text"), str) and bool(record["text"].strip()))


# --------------------------------------------------------------------------------------------
# The cache file
# --------------------------------------------------------------------------------------------

def descriptions_path(dataset_name: str, cache_dir: str | Path | None = None) -> Path:
    """Where a dataset's LLM descriptions live: CACHE_DIR/descriptions/DATASET.jsonl."""
    from idream.text import default_cache_dir

    base = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    slug = "".join(c if c.isalnum() or c in "._-" else "_" for c in dataset_name).strip("_")
    return base / "descriptions" / f"{slug[:80] or 'dataset'}.jsonl"


_RECORD_KEYS = ("item_id", "meta_sha256", "model", "prompt_version", "text")


class CacheBusyError(InputError):
    """Another process is describing into the same cache file."""


class DescriptionCache:
    """The JSON-lines descriptions file: append one record at a time, rewrite atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, dict]:
        """item id -> its latest record; lines that do not parse (a torn write) are skipped."""
        records: dict[str, dict] = {}
        if not self.path.exists():
            return records
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                try:
                    rec = json.loads(line)
                except ValueError:
                    log.warning("%s: line %d is not a complete record (a crash mid-write?); "
                                "ignored", self.path, n)
                    continue
                if isinstance(rec, dict) and all(isinstance(rec.get(k), str) for k in _RECORD_KEYS):
                    records.pop(rec["item_id"], None)  # keep the latest, in arrival order
                    records[rec["item_id"]] = rec
        return records

    def append(self, record: Mapping[str, str]) -> None:
        """Add one record durably (the file ends with a newline after each complete record)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(dict(record), ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def rewrite(self, records: Iterable[Mapping[str, str]]) -> None:
        """Replace the file by exactly `records`, atomically (temporary file, then os.replace)."""
        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                for rec in records:
                    f.write(json.dumps(dict(rec), ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())

        atomic_write(self.path, write)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the file for one describe run (a second run at once would undo the first's appends)."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise CacheBusyError(f"another describe run is writing {self.path}; wait for it "
                                     "to finish or stop it first") from None
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def compact(self, order: Sequence[str] = ()) -> dict[str, dict]:
        """One record per item, catalog order first; heals a torn last line. Returns the records."""
        records = self.load()
        if self.path.exists():
            rank = {k: i for i, k in enumerate(order)}
            ordered = sorted(records.values(), key=lambda r: rank.get(r["item_id"], len(rank)))
            self.rewrite(ordered)
        return records


# --------------------------------------------------------------------------------------------
# Describing a catalog
# --------------------------------------------------------------------------------------------

@dataclass
class Plan:
    """What a describe run will do; printed before any request is made."""

    total: int  # items in the catalog
    cached: int  # items with a current description from this model
    pending: list = field(default_factory=list)  # metadata of the items to describe this run
    missing: int = 0  # items without one, before --max-items

    @property
    def requests(self) -> int:
        return len(self.pending)


def plan_descriptions(items: Sequence[Mapping[str, Any]], model: str, path: str | Path,
                      max_items: int | None = None, kind: Sequence[str] = FILM) -> Plan:
    """The items of a catalog of `kind` that lack a current description from `model`."""
    records = DescriptionCache(path).load()
    missing = [m for m in items if not is_current(records.get(item_key(m)), m, model, kind)]
    todo = missing if max_items is None else missing[:max(int(max_items), 0)]
    return Plan(total=len(items), cached=len(items) - len(missing), pending=todo,
                missing=len(missing))


def request_description(client: Any, model: str, meta: Mapping[str, Any], policy: RetryPolicy,
                        stop: threading.Event | None = None,
                        on_retry: Callable[[str], None] | None = None,
                        kind: Sequence[str] = FILM) -> str:
    """One chat request (with retries) -> the description text."""
    messages = build_messages(meta, kind)

    def call() -> str:
        response = client.chat.completions.create(model=model, messages=messages)
        choices = getattr(response, "choices", None)
        if not choices:
            raise MalformedResponse("no choices")
        content = getattr(getattr(choices[0], "message", None), "content", None)
        if not isinstance(content, str) or not content.strip():
            raise MalformedResponse("no text in the answer")
        return " ".join(content.split())[:MAX_TEXT_CHARS]

    return call_with_retries(call, policy, f"chat request for item {item_key(meta)}", stop, on_retry)


def describe_catalog(items: Sequence[Mapping[str, Any]], model: str, path: str | Path, *,
                     max_items: int | None = None, concurrency: int = 4,
                     policy: RetryPolicy | None = None, progress: bool = True,
                     on_plan: Callable[[Plan], None] | None = None,
                     kind: Sequence[str] = FILM) -> dict:
    """Describe every item lacking a current description from `model`; returns a summary.
    `kind`: the catalog's (singular, plural) item kind, which the prompt names.

    At most `concurrency` requests are in flight. A permanent failure (a wrong key, an unknown
    model, retries spent) stops new requests, saves the answers still arriving and raises
    OpenAIServiceError saying how far it got; running the same call again resumes.
    Items the server refuses outright (HTTP 400/422) are skipped and listed at the end.
    """
    if concurrency < 1:
        raise InputError(f"concurrency must be at least 1, got {concurrency}")
    cache = DescriptionCache(path)
    with cache.exclusive():
        return _describe(cache, items, model, max_items, concurrency, policy, progress, on_plan,
                         kind)


def _describe(cache: DescriptionCache, items, model, max_items, concurrency, policy, progress,
              on_plan, kind) -> dict:
    """Plan the run, ask for what is missing, then leave the cache compact in catalog order."""
    order = [item_key(m) for m in items]
    cache.compact(order)  # drop a torn line first, so appends start on a clean line
    plan = plan_descriptions(items, model, cache.path, max_items, kind)
    if on_plan is not None:
        on_plan(plan)
    summary = _summary(plan, cache.path)
    if not plan.pending:
        return summary
    run = _Run(cache, model, kind, policy or RetryPolicy.from_env(), summary)
    run.ask(plan.pending, concurrency, progress)
    return _finish(run, items, order, plan)


def _summary(plan: Plan, path: Path) -> dict:
    """A run's summary before its first request: what the plan found, nothing written yet."""
    return {"total": plan.total, "cached": plan.cached, "requested": plan.requests,
            "written": 0, "skipped": [], "retries": 0, "complete": plan.cached, "path": str(path)}


class _Run:
    """The requests of one describe run: each answer saved as it arrives, refused items skipped,
    the first permanent failure kept (it stops new requests)."""

    def __init__(self, cache: DescriptionCache, model: str, kind: Sequence[str],
                 policy: RetryPolicy, summary: dict) -> None:
        self.cache, self.model, self.kind, self.policy = cache, model, kind, policy
        self.summary = summary
        self.stop = threading.Event()
        self.failure: OpenAIServiceError | None = None
        self.retries = 0
        self._retries_lock = threading.Lock()
        self.running: dict[Future, Mapping[str, Any]] = {}

    def on_retry(self, why: str) -> None:
        """Count one retried request (called from the worker threads)."""
        with self._retries_lock:
            self.retries += 1

    def ask(self, pending: Sequence[Mapping[str, Any]], concurrency: int, progress: bool) -> None:
        """Keep `concurrency` requests in flight until every pending item is answered or the run
        stops; on Ctrl-C the workers stop and what was saved stays saved."""
        client = make_client(self.policy.timeout)
        todo = iter(pending)
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="describe")
        bar = tqdm(total=len(pending), desc=f"describe ({self.model})", unit="item",
                   disable=not progress)

        def submit_next() -> None:
            meta = next(todo, None)
            if meta is not None:
                self.running[pool.submit(request_description, client, self.model, meta,
                                         self.policy, self.stop, self.on_retry, self.kind)] = meta

        try:
            for _ in range(concurrency):
                submit_next()
            while self.running:
                done, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
                for fut in done:
                    if self._settle(fut, self.running.pop(fut), bar) and not self.stop.is_set():
                        submit_next()
        except BaseException:
            self.stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            bar.close()
        pool.shutdown(wait=True)

    def _settle(self, fut: Future, meta: Mapping[str, Any], bar: Any) -> bool:
        """Save one finished request's answer; False when no request should take its place
        (it was interrupted, or the run failed)."""
        try:
            text = fut.result()
        except Interrupted:
            return False
        except OpenAIServiceError as err:
            return self._skip_or_fail(err, meta)
        self.cache.append(make_record(meta, self.model, text, self.kind))
        self.summary["written"] += 1
        bar.update(1)
        if self.retries:
            bar.set_postfix(retries=self.retries, refresh=False)
        return True

    def _skip_or_fail(self, err: OpenAIServiceError, meta: Mapping[str, Any]) -> bool:
        """A refusal of one item (400/422) skips it, unless nothing has worked yet; anything else
        fails the run: no new requests, while the answers in flight are still saved."""
        skipped = self.summary["skipped"]
        if err.status in (400, 422) and (self.summary["written"] or len(skipped) < 2):
            skipped.append(item_key(meta))
            log.warning("%s", err)
            return True
        self.failure = self.failure or err
        self.stop.set()
        return False


def _finish(run: _Run, items: Sequence[Mapping[str, Any]], order: list[str], plan: Plan) -> dict:
    """Rewrite the cache in catalog order and count the items it now covers; a failed run raises,
    saying how far it got."""
    records = run.cache.compact(order)
    summary = run.summary
    summary["retries"] = run.retries
    have = sum(is_current(records.get(item_key(m)), m, run.model, run.kind) for m in items)
    summary["complete"] = have
    if run.failure is not None:
        raise OpenAIServiceError(
            f"{run.failure}. {summary['written']} new descriptions were saved ({have}/{plan.total} "
            f"items done) in {run.cache.path}; run the same command again to resume") from None
    return summary


# --------------------------------------------------------------------------------------------
# Reading descriptions for the item space
# --------------------------------------------------------------------------------------------

class MissingDescriptionsError(InputError):
    """`--descriptions llm` asked for, but the cache does not cover the catalog."""


def cached_descriptions(items: Sequence[Mapping[str, Any]], path: str | Path,
                        dataset_hint: str = "DATASET", kind: Sequence[str] = FILM) -> list[str]:
    """One LLM description per item from the cache at `path`, all from one model and asked for
    with the `kind`'s prompt; else raise."""
    records = DescriptionCache(path).load()
    texts, models, missing = [], Counter(), 0
    for meta in items:
        rec = records.get(item_key(meta))
        if not is_current(rec, meta, kind=kind):
            missing += 1
            continue
        models[rec["model"]] += 1
        texts.append(rec["text"])
    command = f"python -m idream describe --dataset {dataset_hint} --llm MODEL"
    if missing:
        raise MissingDescriptionsError(
            f"{missing} of {len(items)} items have no current LLM description in {path}; run "
            f"`{command}` first (with the same --cache-dir), or use --descriptions template")
    if len(models) > 1:
        mix = ", ".join(f"{m}: {n}" for m, n in models.most_common())
        raise MissingDescriptionsError(
            f"the LLM descriptions in {path} come from several models ({mix}); run `{command}` "
            "with the model you want until it covers every item")
    return texts


def descriptions_model(ds: Any, cache_dir: str | Path | None = None) -> str | None:
    """The model that wrote the catalog's cached descriptions (None if none are cached)."""
    records = DescriptionCache(descriptions_path(ds.name, cache_dir)).load()
    models = Counter(r["model"] for r in records.values())
    return models.most_common(1)[0][0] if models else None
