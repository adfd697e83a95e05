"""One loaded recommender per process: catalog labels to items, and the library's input check
(clipping to the ranges the app offers) with its problems turned into notices."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from idream.serving.hub import local_path
from idream.serving.recommender import Recommender, UnknownItemError
from idream.serving.request import MAX_INTENTION_CHARS, EmptyRequest, clean_text

from .projection import Projection

log = logging.getLogger(__name__)

SWEEP_MAX_STEPS = 25  # the sweep runs 11 guided generations at once: keep it interactive
MAX_NEW_ITEMS = 20
MAX_TITLE_CHARS = 200  # a new item's title
MAX_UNKNOWN_NAMED = 5  # unknown history items listed (with closest titles) in the notices
SEARCH_SHOWN = 10  # titles one search of the catalog offers
MAX_SEARCH_CHARS = 200  # of what is typed in the search box
EMPTY_HINT = ("Pick a few {kinds} for the history, or type what you are in the mood for in the "
              "intention box (or both), then press Recommend.")


class InputProblem(ValueError):
    """Input the app cannot answer; the message is shown to the user as is."""


@dataclass
class Query:
    """A checked request: history rows (oldest first) and clipped controls, with notices."""

    history: list[int]
    intention: str | None
    rho: float
    w: float
    steps: int
    k: int
    seed: int
    notices: list[str] = field(default_factory=list)


def set_threads() -> int:
    """Torch and BLAS threads, once per process: IDREAM_TORCH_THREADS, else 1 (requests run side
    by side, the denoiser is small, and OpenMP barriers stall badly on shared cores; see
    demo/README.md). numpy's BLAS too: a request's solves against the whitening (384 × 384) took
    10 ms at the median and up to 0.3 s on two threads of a busy two-core machine, 1.6 ms on one."""
    n = int(os.environ.get("IDREAM_TORCH_THREADS") or 1)
    torch.set_num_threads(max(1, n))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already started
        pass
    set_blas_threads(max(1, n))
    return torch.get_num_threads()


def blas_threads() -> int | None:
    """numpy's BLAS threads (None where threadpoolctl, which scikit-learn brings, is missing)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return max((lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"), default=None)


def set_blas_threads(n: int | None) -> None:
    if n is None:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=n, user_api="blas")


_SERVICES: dict[str, "Service"] = {}
_LOCK = threading.Lock()


def get_service(checkpoint: str | Path, background_umap: bool = True) -> "Service":
    """The process's Service for a checkpoint folder (or an hf:// id, fetched into the Hub's cache
    first, so its model card and map are read from there): loaded on first use, then shared."""
    checkpoint = local_path(checkpoint)
    key = str(Path(checkpoint).resolve())
    with _LOCK:
        if key not in _SERVICES:
            set_threads()
            _SERVICES[key] = Service(Recommender.load(checkpoint), checkpoint, background_umap)
        return _SERVICES[key]


def _label(meta: dict) -> str:
    return f"{meta['title']} ({meta['year']})" if meta["year"] else meta["title"]


class Service:
    """The recommender, its catalog labels, the UMAP projection and the model card."""

    def __init__(self, rec: Recommender, checkpoint: str | Path, background_umap: bool = True):
        self.rec = rec
        self.checkpoint = Path(checkpoint)
        self.metas = rec.dataset.all_item_meta()
        self.labels = []  # one unique display label per catalog row: "Title (year)"
        seen = set()
        for m in self.metas:
            label = _label(m)
            if label in seen:
                label = f"{label} [#{m['item_id']}]"
            seen.add(label)
            self.labels.append(label)
        self.label_index = {label: i for i, label in enumerate(self.labels)}
        self._search_keys = [label.lower() for label in self.labels]
        pop = rec.dataset.popularity()  # interactions per item: searches offer the most read first
        self._by_popularity = np.argsort(-pop, kind="stable").tolist()
        self.genres = sorted({g for m in self.metas for g in m["genres"]})
        self.text_reason = rec.text_status()  # None when intentions can be embedded here
        self.projection = Projection.for_checkpoint(rec, checkpoint, background=False)
        self.warmup = threading.Thread(target=self._warm_up, args=(background_umap,), name="warm-up",
                                       daemon=True)
        self.warmup.start()

    def _warm_up(self, fit_umap: bool) -> None:
        """After start-up: load the text model, run the network once, then refit UMAP."""
        try:
            if self.text_reason is None:  # loads the text model (once: the backend holds a lock)
                self.rec.encode_intentions(["a warm-up intention"])
            self.rec.recommend([self.metas[0]["item_id"]], k=1)
        except Exception:  # noqa: BLE001 - a failure here shows up (readably) on the first click
            log.exception("warm-up failed")
        if fit_umap and not self.projection.ready:
            self.projection.start_fitting()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the warm-up and the UMAP refit are over; True when UMAP places points."""
        self.warmup.join(timeout)
        return self.projection.wait(timeout)

    # -- inputs ------------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return self.rec.dataset.n_items

    def resolve(self, refs) -> tuple[list[int], list[str]]:
        """Catalog rows of labels, titles or ids (duplicates dropped), and notices for unknowns."""
        if refs is None:
            refs = []
        elif not isinstance(refs, (list, tuple)):  # one label, id or other JSON value
            refs = [refs]
        rows, seen, unknown, n_unknown = [], set(), [], 0
        for ref in refs:
            if ref is None or (isinstance(ref, str) and not ref.strip()):
                continue
            i = self.label_index.get(ref.strip()) if isinstance(ref, str) else None
            if i is None:
                try:  # the fuzzy "closest titles" search only for the first few unknowns
                    i = self.rec.resolve_item(ref, suggest=n_unknown < MAX_UNKNOWN_NAMED)
                except UnknownItemError as e:
                    n_unknown += 1
                    if n_unknown <= MAX_UNKNOWN_NAMED:
                        unknown.append(str(e))
                    continue
            if i not in seen:
                seen.add(i)
                rows.append(i)
        notices = [f"Not in the catalog, left out: {u.removeprefix('unknown item ')}." for u in unknown]
        if n_unknown > MAX_UNKNOWN_NAMED:
            notices.append(f"… and {n_unknown - MAX_UNKNOWN_NAMED:,} more items not in the catalog.")
        return rows, notices

    def check(self, history, intention, rho, w, steps, k, seed, n_extra: int = 0) -> Query:
        """One request: history labels resolved to catalog rows, the rest checked by the library
        and clipped to the ranges the app offers; InputProblem when nothing can be answered."""
        rows, notices = self.resolve(history)
        if self.text_reason and clean_text(intention or ""):
            notices.append(f"Intentions are off on this server ({self.text_reason}); "
                           "the intention was ignored.")
            intention = None
        try:
            req = self.rec.check_request(bool(rows), intention, rho, w, steps, k, seed, clip=True,
                                         available=self.n_items + n_extra - len(rows))
        except EmptyRequest:
            raise InputProblem(" ".join(notices + [EMPTY_HINT.format(kinds=self.kinds)])) from None
        except ValueError as e:
            raise InputProblem(f"{e}.") from None
        notices += req.notices
        if len(rows) > self.rec.history_len:
            notices.append(f"The model reads the last {self.rec.history_len} history items; the "
                           f"{len(rows) - self.rec.history_len} older ones are only kept out of the results.")
        return Query(rows, req.intention, req.rho, req.w, req.steps, req.k, req.seed, notices)

    # -- answers -----------------------------------------------------------------------------
    def recommend(self, q: Query, extra_items=None, return_path: bool = False):
        """rec.recommend on a checked query (history given by dataset ids)."""
        ids = [self.metas[i]["item_id"] for i in q.history]
        return self.rec.recommend(ids, q.intention, rho=q.rho, w=q.w, steps=q.steps, k=q.k,
                                  seed=q.seed, return_path=return_path, extra_items=extra_items or None)

    @property
    def kinds(self) -> str:
        """What the catalog's items are called, plural ("films", "books", "items")."""
        return self.rec.dataset.item_kind[1]

    def sweep(self, q: Query, extra_items=None, rhos=None) -> dict:
        """One batched generation per ρ value, from the same noise (at most SWEEP_MAX_STEPS steps);
        rhos None: the model's own positions (Recommender.rho_positions)."""
        ids = [self.metas[i]["item_id"] for i in q.history]
        steps = self.sweep_steps(q)
        out = self.rec.sweep_rho(ids, q.intention, rhos=rhos, w=q.w, steps=steps, k=q.k,
                                 seed=q.seed, extra_items=extra_items or None)
        return {**out, "steps": steps}

    @staticmethod
    def sweep_steps(q: Query) -> int:
        """The steps a sweep runs: at most SWEEP_MAX_STEPS (a notice says when fewer than asked)."""
        steps = min(q.steps, SWEEP_MAX_STEPS)
        if steps < q.steps:
            q.notices.append(f"The ρ sweep runs at most {SWEEP_MAX_STEPS} DDIM steps (asked: {q.steps}).")
        return steps

    # -- history helpers ---------------------------------------------------------------------
    def user_history(self, user_id) -> tuple[list[str], str]:
        """Labels of a user's last L items before their test item, and a one-line note."""
        user_id = str(user_id or "").strip()
        if not user_id:
            raise InputProblem("Type a user id (e.g. 1), or press Random user.")
        try:
            rows = self.rec.user_history(user_id)
        except UnknownItemError:
            n = len(self.rec.dataset.sequences)
            raise InputProblem(f"No user {user_id!r} in {self.rec.dataset.name} ({n} users).") from None
        L = self.rec.history_len
        note = f"User {user_id}: the last {min(L, len(rows))} of {len(rows)} items before their held-out test item."
        return [self.labels[i] for i in rows[-L:]], note

    def random_user(self, rng: random.Random | None = None) -> str:
        users = [u for u in self.rec.dataset.user_ids() if len(self.rec.dataset.sequences[u]) > 1]
        return str((rng or random).choice(users))

    def search_titles(self, text, limit: int = SEARCH_SHOWN) -> list[str]:
        """Catalog labels that contain what was typed (any case): those that start with it first,
        then those where a word starts with it, then the rest, each group most interacted with
        first; nothing typed: the most interacted-with items."""
        text = (text if isinstance(text, str) else "")[:MAX_SEARCH_CHARS].strip().lower()
        if not text:
            return [self.labels[i] for i in self._by_popularity[:limit]]
        word_start = re.compile(r"(?<!\w)" + re.escape(text))
        groups: tuple[list, list, list] = ([], [], [])
        keys = self._search_keys
        for i in self._by_popularity:
            key = keys[i]
            if text not in key:
                continue
            group = groups[0 if key.startswith(text) else 1 if word_start.search(key) else 2]
            if len(group) < limit:
                group.append(i)
                if len(groups[0]) >= limit:
                    break
        return [self.labels[i] for i in (groups[0] + groups[1] + groups[2])[:limit]]

    def history_rows(self, labels) -> list[list]:
        """[#, title, year, genres] per history item, for the small history table."""
        rows, _ = self.resolve(labels)
        return [[n, self.metas[i]["title"], self.metas[i]["year"] or "", ", ".join(self.metas[i]["genres"])]
                for n, i in enumerate(rows, 1)]

    # -- new items ---------------------------------------------------------------------------
    def new_item(self, title, description="", genres=(), year=None, existing=()) -> dict:
        """Embed a new item with the checkpoint's text model and transform (no retraining)."""
        if self.text_reason:
            raise InputProblem(f"New items need the text model, which is off here: {self.text_reason}")
        title = clean_text(title or "")[:MAX_TITLE_CHARS].strip()
        if not title:
            raise InputProblem("Give the new item a title (and ideally a short description).")
        if len(existing) >= MAX_NEW_ITEMS:
            raise InputProblem(f"This session already holds {MAX_NEW_ITEMS} new items; reload the page to start over.")
        if any(it["meta"]["title"].lower() == title.lower() for it in existing):
            raise InputProblem(f"{title!r} is already among this session's new items.")
        try:
            year = int(year) if year not in (None, "") and 0 < float(year) < 10_000 else None
        except (TypeError, ValueError, OverflowError):
            year = None
        return self.rec.embed_new_item(title, clean_text(description or "")[:MAX_INTENTION_CHARS], year=year,
                                       genres=tuple(genres or ()))

    # -- about -------------------------------------------------------------------------------
    def model_card(self) -> str:
        path = self.checkpoint / "README.md"
        return path.read_text(encoding="utf-8") if path.exists() else "_This checkpoint has no model card._"

    def metrics(self) -> dict:
        path = self.checkpoint / "metrics.json"
        try:
            return json.loads(path.read_text()) if path.exists() else {}
        except json.JSONDecodeError:
            return {}
