"""Many requests answered together, as a server with a crowd needs: one batched generation for
all requests that share a step count (and whether they carry an intention), the intentions
embedded once each through a small LRU cache keyed by their text. Each request succeeds or
fails on its own: a bad one never fails its batch-mates. The answers are those of
`Recommender.recommend` and `Recommender.sweep_rho` for the same inputs (same noise per seed).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

from idream.data.datasets import window
from idream.serving import answers
from idream.serving.request import DEFAULT_K, DEFAULT_SEED, DEFAULT_STEPS, check_rhos
from idream.core.sampler import initial_noise

CACHE_SIZE = 4096  # intentions kept (384 floats each: about 6 MB)


class IntentionCache:
    """Raw text vectors of intentions, most recently used kept: a crowd repeats its intentions
    (examples, the same words typed again), and embedding one costs more than generating."""

    def __init__(self, rec, size: int = CACHE_SIZE):
        self.rec, self.size = rec, size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def raw(self, texts: list[str]) -> np.ndarray:
        """The text model's vectors of checked intentions; the missing ones in one call.  # (n, D)"""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        for group in by_length(missing):  # outside the lock: it is the slow part
            encoded = self.rec.text.raw(group)
            with self._lock:
                self._vectors.update(zip(group, encoded))
        with self._lock:
            out = []
            for t in texts:
                v = self._vectors.get(t)
                if v is None:  # pushed out by a large batch of others meanwhile
                    v = self.rec.text.raw([t])[0]
                    self._vectors[t] = v
                self._vectors.move_to_end(t)
                out.append(v)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return np.stack(out)


def by_length(texts: list[str]) -> list[list[str]]:
    """Texts in groups of similar length (at most twice the shortest, + 32 characters): one
    encoding call pads every text to its longest, and one pasted page would make a batch of
    short intentions cost as much as that many pages."""
    groups: list[list[str]] = []
    for t in sorted(texts, key=len):
        if groups and len(t) <= 2 * len(groups[-1][0]) + 32:
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups


@dataclass
class Ask:
    """One request, with Recommender.recommend's arguments (sweep: sweep_rho's, ρ unused)."""

    history: list = field(default_factory=list)  # ids or titles, oldest first
    intention: str | None = None
    rho: float | None = None
    w: float | None = None
    steps: int = DEFAULT_STEPS
    k: int = DEFAULT_K
    seed: int | None = DEFAULT_SEED
    sweep: bool = False
    rhos: list | None = None  # a sweep's ρ values; None: the model's positions


@dataclass
class _Plan:
    """A checked request ready to generate: its rows of the batch."""

    at: int  # position in the asks
    ask: Ask
    idx: list[int]  # history catalog rows
    hist: np.ndarray  # (R, L)
    rhos: list[float]  # one per row: R = 1 for a recommendation
    w: float
    steps: int
    k: int
    noise: torch.Tensor  # (R, D)
    intention: str | None
    e_q: np.ndarray | None = None  # (D,) raw
    q: torch.Tensor | None = None  # (1, D) transformed
    toward: torch.Tensor | None = None  # (D,) a sweep's intention direction


def _plan(rec, at: int, a: Ask) -> _Plan:
    """The checks of recommend / sweep_rho (ValueError as they raise it), and the request's rows."""
    idx = rec._history_indices(a.history)
    req = rec.check_request(bool(idx), a.intention, None if a.sweep else a.rho, a.w, a.steps, a.k, a.seed)
    rhos = (check_rhos(rec.limits(), rec.rho_positions() if a.rhos is None else a.rhos) if a.sweep
            else [req.rho])
    R = len(rhos)
    hist = np.repeat(window(np.asarray(idx, dtype=np.int64), len(idx), rec.history_len)[None], R, 0)
    noise = initial_noise(1, rec.transform.dim, req.seed).expand(R, -1)  # one start per request
    return _Plan(at, a, idx, hist, rhos, req.w, req.steps, req.k, noise, req.intention)


def _generate(rec, plans: list[_Plan]) -> list[torch.Tensor]:
    """One batched generation for plans of one step count, all with or all without an
    intention; each plan's oracles (R, D)."""
    q = torch.cat([p.q.expand(len(p.rhos), -1) for p in plans]) if plans[0].q is not None else None
    x0 = rec.oracle(np.concatenate([p.hist for p in plans]), q, steps=plans[0].steps,
                    w=torch.tensor([p.w for p in plans for _ in p.rhos], dtype=torch.float32),
                    rho=torch.tensor([r for p in plans for r in p.rhos], dtype=torch.float32),
                    noise=torch.cat([p.noise for p in plans]))  # (ΣR, D)
    return list(torch.split(x0, [len(p.rhos) for p in plans]))


def _finish(rec, p: _Plan, x0: torch.Tensor):
    """The answer of one plan from its oracles: a Recommendation, or a sweep's dict."""
    if p.ask.sweep:
        return rec.sweep_answer(x0, p.idx, p.hist, p.rhos, p.k, p.e_q, p.q, toward=p.toward)
    from idream.serving.recommender import Recommendation

    scores, top = answers.rank(rec, x0, p.idx, p.hist, p.k, None, p.e_q, p.rhos[0])
    rows = answers.rows(rec, scores[0], top[0].tolist(), p.e_q, None)
    return Recommendation(rows, x0[0].numpy(), p.idx, p.intention, [],
                          None if p.q is None else p.q[0].numpy(), [], p.rhos[0], p.e_q)


def answer_many(rec, asks: list[Ask], cache: IntentionCache | None = None) -> list:
    """Every ask's answer (a Recommendation, or a dict for a sweep) or the exception it raised
    alone, in order. Generations are batched; a batch that fails is retried one plan at a time,
    so that a failure stays with the request that caused it."""
    out: list = [None] * len(asks)
    plans = []
    for at, a in enumerate(asks):
        try:
            plans.append(_plan(rec, at, a))
        except Exception as e:  # noqa: BLE001 - this request's own error, returned to it
            out[at] = e
    texts = [p.intention for p in plans if p.intention]
    if texts:
        try:
            raw = dict(zip(texts, (cache or IntentionCache(rec)).raw(texts)))
        except Exception as e:  # noqa: BLE001 - the text model failed: only its users fail
            raw = {}
            for p in plans:
                if p.intention:
                    out[p.at] = e
            plans = [p for p in plans if not p.intention]
        for p in plans:
            if p.intention:
                p.e_q = raw[p.intention]
                p.q = torch.from_numpy(rec.transform(p.e_q[None]))
    sweeps = [p for p in plans if p.ask.sweep and p.q is not None]
    if sweeps:  # their text directions in one solve, not one per sweep
        for p, d in zip(sweeps, rec.intention_directions(torch.cat([p.q for p in sweeps]))):
            p.toward = d
    groups: dict[tuple, list[_Plan]] = {}
    for p in plans:
        groups.setdefault((p.steps, p.q is not None), []).append(p)
    for group in groups.values():
        try:
            x0s = _generate(rec, group)
        except Exception:  # noqa: BLE001 - find out whose: each alone
            x0s = [None] * len(group)
        for p, x0 in zip(group, x0s):
            try:
                out[p.at] = _finish(rec, p, _generate(rec, [p])[0] if x0 is None else x0)
            except Exception as e:  # noqa: BLE001 - this request's own error, returned to it
                out[p.at] = e
    return out
