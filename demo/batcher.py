"""The API's crowd path: /recommend and /sweep requests wait here, not in worker threads, and one
worker answers all that are waiting in one batched call (idream.serving.batch). Beyond a bounded burst a
request is refused at once with a clear "busy, try again in N s" instead of a bare queue error."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass

from idream.serving.batch import Ask, IntentionCache, answer_many

from .service import InputProblem, Query, Service

log = logging.getLogger(__name__)

# chosen from results/app-load.md (python scripts/bench_app.py load); the environment overrides
MAX_BATCH = int(os.environ.get("IDREAM_MAX_BATCH", "64"))  # requests answered per model call
MAX_WAITING = int(os.environ.get("IDREAM_MAX_WAITING", "256"))  # more waiting: "busy, try again"


class Busy(InputProblem):
    """More requests wait than the bound allows; the message says when to try again."""


@dataclass
class Job:
    kind: str  # "recommend" | "sweep"
    args: tuple  # the endpoint's arguments: history, intention, rho (recommend only), w, steps, k, seed
    future: Future
    query: Query | None = None
    ask: Ask | None = None


_BATCHERS: dict[int, "Batcher"] = {}
_LOCK = threading.Lock()


def batcher_for(service: Service, max_batch: int, max_waiting: int) -> "Batcher":
    """The process's Batcher of a Service (one worker per loaded model), created on first use."""
    with _LOCK:
        b = _BATCHERS.get(id(service))
        if b is None or b.s is not service:
            b = _BATCHERS[id(service)] = Batcher(service, max_batch, max_waiting)
        b.max_batch, b.max_waiting = max_batch, max_waiting
        return b


class Batcher:
    """One worker thread answering up to `max_batch` waiting API requests per model call; at most
    `max_waiting` requests wait (more are refused as Busy, with the expected wait in seconds)."""

    def __init__(self, service: Service, max_batch: int = 64, max_waiting: int = 256):
        self.s, self.max_batch, self.max_waiting = service, max_batch, max_waiting
        self.cache = IntentionCache(service.rec)
        self._jobs: deque[Job] = deque()
        self._cv = threading.Condition()
        self._seconds_per_job = 0.01  # a running mean, for the "try again in N s"
        self._stopped = False
        self.batches = self.taken = 0  # batches begun, requests taken into them
        self._worker = threading.Thread(target=self._run, name="api-batcher", daemon=True)
        self._worker.start()

    def submit(self, kind: str, *args) -> Future:
        """Queue one request; Busy at once when `max_waiting` already wait."""
        job = Job(kind, args, Future())
        with self._cv:
            waiting = len(self._jobs)
            if waiting >= self.max_waiting:
                wait = max(1, math.ceil(waiting * self._seconds_per_job))
                raise Busy(f"The demo is busy: {waiting} requests are waiting before yours. "
                           f"Please try again in {wait} s.")
            self._jobs.append(job)
            self._cv.notify()
        return job.future

    def waiting(self) -> int:
        with self._cv:
            return len(self._jobs)

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify()
        self._worker.join(10)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._stopped:
                    self._cv.wait()
                if self._stopped:
                    return
                jobs = [self._jobs.popleft() for _ in range(min(self.max_batch, len(self._jobs)))]
                self.batches += 1
                self.taken += len(jobs)
            t0 = time.perf_counter()
            try:
                self._answer(jobs)
            except Exception as e:  # noqa: BLE001 - a bug here must not stop the worker
                log.exception("batch failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(e)
            per_job = (time.perf_counter() - t0) / len(jobs)
            self._seconds_per_job = 0.8 * self._seconds_per_job + 0.2 * per_job

    def _answer(self, jobs: list[Job]) -> None:
        """Check each job on its own, answer the checked ones together, hand each its outcome."""
        ready = []
        for job in jobs:
            try:
                job.query = self._check(job)
                ready.append(job)
            except Exception as e:  # noqa: BLE001 - this request's own problem, not its batch-mates'
                job.future.set_exception(e)
        for job in ready:
            job.ask = self._ask(job)
        for job, out in zip(ready, answer_many(self.s.rec, [job.ask for job in ready], self.cache)):
            if isinstance(out, Exception):
                job.future.set_exception(out)
            else:
                job.future.set_result(self._reply(job, out))

    def _check(self, job: Job) -> Query:
        if job.kind == "sweep":
            history, intention, w, steps, k, seed = job.args
            return self.s.check(history, intention, None, w, steps, k, seed)
        return self.s.check(*job.args)

    def _ask(self, job: Job) -> Ask:
        q = job.query
        ids = [self.s.metas[i]["item_id"] for i in q.history]
        if job.kind == "sweep":
            steps = self.s.sweep_steps(q)
            return Ask(ids, q.intention, None, q.w, steps, q.k, q.seed, sweep=True)
        return Ask(ids, q.intention, q.rho, q.w, q.steps, q.k, q.seed)

    def _reply(self, job: Job, out) -> dict:
        """What the endpoint returns, as its non-batched form did."""
        if job.kind == "sweep":
            out.pop("oracles", None)
            return {**out, "steps": job.ask.steps, "notices": job.query.notices}
        return {"items": out.items, "notices": job.query.notices}
