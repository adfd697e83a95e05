"""Event handlers: Gradio values in, library calls, tables / figures / notices out.

Every handler turns bad input into a readable notice (never a stack trace): `InputProblem`
becomes the message it carries, anything unexpected a one-line server error.
"""

from __future__ import annotations

import asyncio
import logging
import time

import gradio as gr
import numpy as np
import pandas as pd


from idream.serving.ranks import ranks_of

from . import figures
from .projection import SPACES
from .batcher import MAX_BATCH, MAX_WAITING, Batcher, batcher_for
from .service import EMPTY_HINT, InputProblem, Service

log = logging.getLogger(__name__)

RESULT_COLUMNS = ["rank", "title", "year", "genres", "score", "text match"]
HISTORY_COLUMNS = ["#", "title", "year", "genres"]
NEW_ITEM_COLUMNS = ["title", "genres", "description"]
MAX_PATH_POINTS = 20  # x̂0 points drawn per path


def _status(notices: list[str], summary: str = "") -> str:
    lines = [f"⚠️ {n}" for n in notices] + ([summary] if summary else [])
    return "\n\n".join(lines)


def _server_error(e: Exception) -> str:
    log.exception("request failed")
    return f"Something went wrong on the server ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})."


def result_table(rows: list[dict]) -> pd.DataFrame:
    """The ranked rows as the results table (new items marked)."""
    data = [[r["rank"], r["title"] + (" [new]" if r.get("new") else ""), r["year"] or "",
             ", ".join(r["genres"]), r["score"], r.get("intention_similarity", "")] for r in rows]
    return pd.DataFrame(data, columns=RESULT_COLUMNS)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, …, 21st, 1,682nd."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


def _md(text: str) -> str:
    """Text shown as is inside Markdown (a title with * or _ stays a title)."""
    return "".join("\\" + c if c in "\\`*_[]<>#|~" else c for c in text)


def new_item_line(new_items, placed, total: int) -> str:
    """Where each of the session's new items went: '*Ridge 317* ranks 23rd of 1,683 (text match 0.41)'."""
    parts = []
    for it, (rank, match) in zip(new_items, placed):
        where = f"ranks {ordinal(rank)} of {total:,}" if rank else "is in your history"
        how = f" (text match {match:.2f})" if match is not None else ""
        parts.append(f"*{_md(it['meta']['title'])}* {where}{how}")
    return "Your new items: " + "; ".join(parts) + "."


def _event_data(evt) -> dict:
    """What the page sent with an event; {} when an API call sent none (gr.SelectData itself would
    refuse such a call before the handler runs, with an error that says nothing)."""
    data = getattr(evt, "_data", None)
    return data if isinstance(data, dict) else {}


def _labels(history) -> list[str]:
    """The history box's labels (anything else sent by hand left out)."""
    return [h for h in history if isinstance(h, str)] if isinstance(history, list) else []


class Callbacks:
    """The handlers of one app, bound to its Service."""

    def __init__(self, service: Service):
        self.s = service

    # -- API ---------------------------------------------------------------------------------
    @property
    def batcher(self) -> Batcher:
        """The API's batching worker, one per loaded model (demo.batcher)."""
        return batcher_for(self.s, MAX_BATCH, MAX_WAITING)

    async def recommend_api(self, history: list[str], intention: str = "", rho: float | None = None,
                            w: float | None = None, steps: int = 1, k: int = 10, seed: int = 0) -> dict:
        """Rank the catalog for a history (titles, oldest first) and an optional intention.

        Returns {"items": [{"rank", "item_id", "title", "year", "genres", "score",
        "intention_similarity"?}], "notices": [...]}; ρ and w default to the checkpoint's.
        """
        return await self._batched("recommend", history, intention, rho, w, steps, k, seed)

    async def sweep_api(self, history: list[str], intention: str = "", w: float | None = None,
                        steps: int = 1, k: int = 10, seed: int = 0) -> dict:
        """The top-K for ρ = 0, 1, …, 10 in one batched call, from the same noise.

        Returns {"rho": [...], "items": [rows per ρ], "intention_similarity": [...],
        "history_similarity": [...], "notices": [...]}.
        """
        return await self._batched("sweep", history, intention, w, steps, k, seed)

    async def _batched(self, kind: str, *args) -> dict:
        """Wait (without a thread) for the batcher's answer; problems become gr.Error messages."""
        try:
            return await asyncio.wrap_future(self.batcher.submit(kind, *args))
        except InputProblem as e:
            raise gr.Error(str(e), print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - the client gets one readable line
            raise gr.Error(_server_error(e), print_exception=False) from None

    # -- the Recommend button ----------------------------------------------------------------
    def explore(self, history, intention, rho, w, steps, k, seed, new_items):
        """Results table, the two UMAP panels (with the denoising path) and notices."""
        new_items = new_items or []
        try:
            q = self.s.check(history, intention, rho, w, steps, k, seed, n_extra=len(new_items))
            t0 = time.perf_counter()
            out = self.s.recommend(q, new_items, return_path=True)
            ms = (time.perf_counter() - t0) * 1000
            placed = self.new_item_places(out, new_items)
            fig = self.space_figure(q, out, new_items, [r for r, _ in placed])
        except InputProblem as e:
            return result_table([]), self.empty_marks(str(e)), _status([str(e)])
        except Exception as e:  # noqa: BLE001
            msg = _server_error(e)
            return result_table([]), self.empty_marks(msg), _status([msg])
        for n in q.notices:
            gr.Warning(n)
        how = "one-step" if q.steps == 1 else f"{q.steps}-step DDIM"
        total = self.s.n_items + len(new_items) - len(q.history)
        summary = (f"Top-{len(out.items)} of {total} items "
                   f"({how}, ρ={q.rho:g}, w={q.w:g}, seed {q.seed}) in {ms:.0f} ms.")
        if placed:
            summary += "\n\n" + new_item_line(new_items, placed, total)
        return result_table(out.items), fig, _status(q.notices, summary)

    def empty_marks(self, message: str) -> "figures.go.Figure":
        """No marks over the map, its title saying why (a request the app could not answer)."""
        return figures.overlay_figure(self.s.projection.coords, self.s.labels, subtitle=message)

    def new_item_places(self, out, new_items) -> list[tuple[int | None, float | None]]:
        """(rank in the full ranking, text match with the intention) of each new item, wherever
        it went: the page says where an item outside the top-K ended up."""
        if not new_items:
            return []
        rec, N = self.s.rec, self.s.n_items
        rows = [N + j for j in range(len(new_items))]
        ranks, _ = ranks_of(rec, out, rows, new_items)
        match = [None] * len(rows)
        if out.intention_raw is not None:  # the intention's raw text vector, as the request encoded it
            match = rec.text_match(out.intention_raw, rows, new_items)
        return list(zip(ranks, match))

    def space_figure(self, q, out, new_items, new_ranks=None) -> "figures.go.Figure":
        """Place intention, oracle, path and new items in both spaces: the marks a click draws over
        the catalog layer the page already holds (figures.overlay_figure)."""
        proj, s = self.s.projection, self.s
        path = list(out.path)[:-1]  # the last x̂0 is the oracle itself
        path_t = list(out.path_steps)[:-1]
        if len(path) > MAX_PATH_POINTS - 1:
            keep = np.unique(np.linspace(0, len(path) - 1, MAX_PATH_POINTS - 1).round().astype(int))
            path, path_t = [path[i] for i in keep], [path_t[i] for i in keep]
        # the intention as the request encoded it: once per click
        z_points = ([out.intention_vector] if out.intention_vector is not None else []) + [out.oracle] + path
        Z = np.stack(z_points)  # (P, D) in the model's space
        placed = {}
        for space in SPACES:
            X = Z if space == "whitened" else s.rec.transform.inverse(Z)
            if new_items:
                key = "z" if space == "whitened" else "e"
                X = np.concatenate([X, np.stack([np.asarray(it[key]) for it in new_items])])
            placed[space] = proj.place(space, X)
        n_q = 1 if q.intention else 0
        P = len(z_points)
        top = [r for r in out.items if not r.get("new")]
        if new_ranks is None:
            new_rank = {r["title"]: r["rank"] for r in out.items if r.get("new")}
            new_ranks = [new_rank.get(it["meta"]["title"]) for it in new_items]
        marks = figures.Marks(
            history=list(q.history), top=[s.rec.dataset.item_index(r["item_id"]) for r in top],
            top_ranks=[r["rank"] for r in top],
            intention={sp: placed[sp][:1] for sp in SPACES} if n_q else None,
            oracle={sp: placed[sp][n_q:n_q + 1] for sp in SPACES},
            path={sp: np.concatenate([placed[sp][n_q + 1:P], placed[sp][n_q:n_q + 1]]) for sp in SPACES},
            path_steps=path_t + [0],
            new_items={sp: placed[sp][P:] for sp in SPACES} if new_items else None,
            new_titles=[it["meta"]["title"] for it in new_items],
            new_ranks=list(new_ranks))
        return figures.overlay_figure(proj.coords, s.labels, marks,
                                      subtitle=f"{proj.method}; in the raw panel, the oracle and "
                                               "path are mapped back through the inverse transform")

    def sweep_view(self, history, intention, rho, w, steps, k, seed, new_items):
        """The ρ sweep figure (needs an intention: without one ρ changes nothing)."""
        new_items = new_items or []
        if not str(intention or "").strip() or self.s.text_reason:
            why = self.s.text_reason or "ρ scales the intention: type one to see what it does."
            return figures.message_figure(why)
        try:
            q = self.s.check(history, intention, rho, w, steps, k, seed, n_extra=len(new_items))
            out = self.s.sweep(q, new_items)
            how = "one-step" if out["steps"] == 1 else f"{out['steps']}-step DDIM"
            note = " · ".join([f"{how}, w={q.w:g}, seed {q.seed}"] + q.notices)
            return figures.sweep_figure(out, q.k, subtitle=note)
        except InputProblem as e:
            return figures.message_figure(str(e))
        except Exception as e:  # noqa: BLE001
            return figures.message_figure(_server_error(e))

    # -- history builder ---------------------------------------------------------------------
    def search_titles(self, text):
        """The titles offered under the search box: the catalog's matches for what is typed (the
        most interacted-with when nothing is); the page holds only these, never the catalog."""
        return gr.update(choices=self.s.search_titles(text), value=None)

    def pick_title(self, history, evt: gr.EventData):
        """The title picked among those offered, added at the end of the history (once); the
        search stays, for another pick among the same titles."""
        return self._add_to_history(history, _event_data(evt).get("value"))

    def pick_first_match(self, history, text):
        """Enter in the search box: the first title it finds that the history does not hold yet
        (nothing typed: nothing added)."""
        typed = isinstance(text, str) and text.strip()
        found = [t for t in self.s.search_titles(text) if t not in _labels(history)] if typed else []
        return self._add_to_history(history, found[0] if found else None)

    def _add_to_history(self, history, label):
        """The history with a catalog label added at its end (once), and the titles found unpicked."""
        history = _labels(history)
        if isinstance(label, str) and label in self.s.label_index and label not in history:
            history.append(label)
        return history, gr.update(value=None)

    def history_table(self, history) -> pd.DataFrame:
        return pd.DataFrame(self.s.history_rows(history), columns=HISTORY_COLUMNS)

    def load_user(self, user_id):
        """A real user's recent history from the dataset."""
        try:
            labels, note = self.s.user_history(user_id)
            return labels, note
        except InputProblem as e:
            return gr.skip(), _status([str(e)])

    def random_user(self):
        user = self.s.random_user()
        labels, note = self.s.user_history(user)
        return labels, user, note

    def clear(self):
        return [], "", _status([], "History cleared.")

    # -- new items ---------------------------------------------------------------------------
    def add_item(self, title, description, genres, year, new_items):
        """Embed a new item for this browser session only; it is recommendable at once."""
        new_items = list(new_items or [])
        try:
            item = self.s.new_item(title, description, genres, year, existing=new_items)
        except InputProblem as e:
            return new_items, self.new_items_table(new_items), _status([str(e)]), gr.skip(), gr.skip()
        except Exception as e:  # noqa: BLE001
            return new_items, self.new_items_table(new_items), _status([_server_error(e)]), gr.skip(), gr.skip()
        new_items.append(item)
        msg = (f"Added **{item['meta']['title']}**: embedded with the checkpoint's text model and "
               "transform, no retraining. It can now appear in your recommendations (marked [new]) "
               "and on the map; other visitors do not see it.")
        if not item["meta"]["description"].strip():
            msg += (" It has no description, so only its title" + (" and genres" if item["meta"]["genres"] else "")
                    + " tell the text model what it is: intentions find it less well than with a sentence "
                    "or two about it.")
        return new_items, self.new_items_table(new_items), msg, "", ""

    def clear_items(self):
        return [], self.new_items_table([]), "This session's new items are gone."

    @staticmethod
    def new_items_table(new_items) -> pd.DataFrame:
        rows = [[it["meta"]["title"], ", ".join(it["meta"]["genres"]), it["meta"]["description"][:120]]
                for it in new_items or []]
        return pd.DataFrame(rows, columns=NEW_ITEM_COLUMNS)


__all__ = ["Callbacks", "EMPTY_HINT", "result_table"]
