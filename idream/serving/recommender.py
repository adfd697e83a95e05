"""History + intention → oracle → ranked items. The one entry point the CLI and the app call."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from idream import text
from idream.serving.checkpoint import read_checkpoint
from idream.serving.checkpoint_config import TextConfig
from idream.data.datasets import PAD, Dataset, window
from idream.core.diffusion import Diffusion
from idream.serving.hub import local_path
from idream.serving.guidance import Guidance
from idream.serving.index import ItemIndex
from idream.serving.item_space import ItemSpace
from idream.serving.text_side import TextSide, text_match
from idream.serving.lookup import CatalogLookup, UnknownItemError  # noqa: F401 (the public API names it here)
from idream.core.model import Denoiser, ItemTable
from idream.core.newitems import NewItemRule, NewItemScorer, unit
from idream.serving.request import (DEFAULT_K, DEFAULT_SEED, DEFAULT_STEPS, MAX_GUIDANCE, MAX_K,
                      OFFERED_GUIDANCE, Limits, Request, check_new_item, check_request, check_rhos,
                      outside_steer_range, refuse_new_items_in_history)
from idream.core.sampler import DDIMSampler, sample
from idream.core.steer import STEER_RANGE, TextSteer, positions
from idream.core.transform import Transform


@dataclass
class Recommendation:
    items: list  # [{"rank", "item_id", "title", "score", ...}]
    oracle: np.ndarray  # (D,) the generated oracle, in the transformed space
    history: list  # item indices used as history, oldest first
    intention: str | None
    path: list = field(default_factory=list)  # x̂0 at every DDIM step (when asked)
    intention_vector: np.ndarray | None = None  # (D,) A(TEM(intention)), when one was given
    path_steps: list = field(default_factory=list)  # the timestep t of each path point
    rho: float | None = None  # the intention strength the answer was generated at
    intention_raw: np.ndarray | None = None  # (Dt,) the text model's own vector of the intention

    def to_dict(self) -> dict:
        return {"items": self.items}


class Recommender:
    """A trained model with its item space; loaded once, queried many times."""

    def __init__(self, model: Denoiser, diffusion: Diffusion, table: ItemTable, transform: Transform,
                 dataset: Dataset, config: dict, backend: "text.EmbeddingBackend | None" = None,
                 embeddings: np.ndarray | None = None, exact: bool = False):
        self.model = model.eval()
        self.embeddings = embeddings  # (N, D) raw text vectors E, before the transform
        self.diffusion = diffusion
        self.table = table  # the item table: text vectors and learned residuals
        self.transform = transform
        self.dataset = dataset
        self.config = config
        self.text = TextSide(config.get("text", {}).get("backend"), transform, backend)
        self.space = ItemSpace(table, transform, embeddings)  # the vectors and what derives from them
        self.lookup = CatalogLookup(dataset)
        self.exact = exact  # True: score every item even where the catalog has a graph index

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, dataset: Dataset | None = None, *,
             text_model: str | None = None, descriptions: str | None = None,
             exact: bool = False) -> "Recommender":
        """A checkpoint folder, or a Hugging Face Hub id hf://owner/name[@revision] fetched into the
        Hub's cache, checked part by part (CheckpointError says what to do).
        text_model / descriptions: refuse a checkpoint made with others (None: any).
        exact: always score every item (no graph index, whatever the catalog's size)."""
        return cls(**read_checkpoint(local_path(path), dataset=dataset, text_model=text_model,
                                     descriptions=descriptions), exact=exact)

    @property
    def backend(self) -> "text.EmbeddingBackend":
        return self.text.backend

    def text_status(self) -> str | None:
        """None when intentions and new items can be embedded here; else why not (for the UI)."""
        return self.text.status()

    @property
    def history_len(self) -> int:
        return self.model.cfg.history_len

    @property
    def guidance(self) -> Guidance:
        """The guidance defaults (idream.serving.guidance), as the config now holds them."""
        return Guidance.of(self.config)

    @property
    def default_w(self) -> float:
        return self.guidance.w

    @property
    def default_rho(self) -> float:
        return self.guidance.rho

    @property
    def kappa(self) -> float:
        """Weight of the learned guidance term per unit of ρ (ρ itself turns toward the text)."""
        return self.guidance.kappa

    @property
    def rho_range(self) -> tuple[float, float]:
        """The range of ρ offered to people (the demo's slider): from 0 to `guidance.rho_max` where it
        was chosen (by `python -m benchmarks text --set-slider`), else to 1."""
        return STEER_RANGE[0], self.guidance.rho_max

    @property
    def w_range(self) -> tuple[float, float]:
        """The range of w offered to people (the demo's slider)."""
        return OFFERED_GUIDANCE

    @property
    def T(self) -> int:
        return self.diffusion.T

    def item_vectors(self) -> torch.Tensor:
        """z_i (+ residual) for every catalog item, as the model ranks them.  # (N, D)"""
        return self.space.vectors()

    @property
    def cold_items(self) -> np.ndarray:
        """Catalog items that never trained (the cold-start protocol): no learned residual."""
        return np.asarray(self.config.get("data", {}).get("cold_items", []), dtype=np.int64)

    @property
    def descriptions(self) -> str:
        """The item texts the model was trained on: template (from metadata) or llm."""
        return TextConfig.from_dict(self.config["text"]).descriptions

    @property
    def new_item_rule(self) -> NewItemRule:
        """How residual-free items are scored (idream.core.newitems); off in older checkpoints."""
        return NewItemRule.from_config(self.config.get("new_items"))

    def new_item_scorer(self) -> NewItemScorer | None:
        """The scorer of residual-free items, or None when the rule is off or the checkpoint
        holds no raw text vectors."""
        if not self.new_item_rule.on or self.embeddings is None:
            return None
        return self.space.new_item_scorer(self.cold_items)

    def text_steer(self) -> TextSteer:
        """Text directions and the catalog covariance for the current item vectors."""
        return self.space.steer()

    def intention_directions(self, intentions: torch.Tensor) -> torch.Tensor:
        """Transformed intentions → the scoring-space directions that mean them (idream.core.steer).
        (B, D) -> (B, D)"""
        return self.text_steer().directions(intentions)

    def item_index(self) -> ItemIndex:
        """The search index over item_vectors(): built on first use, rebuilt when they change."""
        return self.space.index(self.exact)

    # -- inputs ------------------------------------------------------------------------------
    def resolve_item(self, ref, suggest: bool = True) -> int:
        """Catalog row of an item given by dataset id or title (idream.serving.lookup)."""
        return self.lookup.resolve(ref, suggest)

    def user_history(self, user_id) -> list[int]:
        """A user's items before their test item (the last interaction), oldest first."""
        return self.lookup.user_history(user_id)

    def encode_intentions(self, sentences: list[str]) -> torch.Tensor:
        """Intention sentences → transformed text vectors.  # (n, D)"""
        return self.text.encode(sentences)

    def text_match(self, e_q: np.ndarray, items: list[int], extra: list | None = None) -> list[float | None]:
        """Cosine between each item's description and an intention in the text model's own space
        (idream.serving.text_side.text_match).  e_q (Dt,) raw"""
        return text_match(e_q, items, self.embeddings, self.dataset.n_items, extra)

    # -- generation --------------------------------------------------------------------------
    def conditions(self, histories: np.ndarray, intentions: torch.Tensor | None,
                   has_intention=None) -> dict:
        """Batch tensors for the sampler from history index windows (B, L) and intentions."""
        V = self.item_vectors()
        h = torch.as_tensor(histories, dtype=torch.long)
        valid = h != PAD
        B = h.shape[0]
        if intentions is None:
            intentions = torch.zeros(B, V.shape[1])
            has_intention = torch.zeros(B, dtype=torch.bool)
        elif has_intention is None:
            has_intention = torch.ones(B, dtype=torch.bool)
        return {"history": V[h.clamp(min=0)], "history_valid": valid,
                "intention": intentions.float(), "has_intention": torch.as_tensor(has_intention)}

    def oracle(self, histories: np.ndarray, intentions: torch.Tensor | None = None,
               has_intention=None, steps: int = 1, w=None, rho=None, seed: int | None = 0,
               return_path: bool = False, shared_noise: bool = False, noise: torch.Tensor | None = None):
        """Generate oracle embeddings for a batch.  histories (B, L) -> (B, D)
        noise: the starting x_T (B, D) when the rows have seeds of their own (idream.serving.batch).
        rho: a float or (B,) in STEER_RANGE; it turns the oracle toward each intention's text
        direction and weighs the learned guidance term by κρ (idream.core.steer)."""
        w = self.default_w if w is None else w
        rho = self.default_rho if rho is None else rho
        cond = self.conditions(histories, intentions, has_intention)
        steer = None
        if intentions is not None:
            B = cond["intention"].shape[0]
            angle = torch.as_tensor(rho, dtype=torch.float32).expand(B) * cond["has_intention"].float()
            lo, hi = STEER_RANGE
            if not bool(((angle >= lo) & (angle <= hi)).all()):
                raise outside_steer_range()
            d = self.intention_directions(cond["intention"])  # (B, D)
            ts = self.text_steer()
            steer = lambda x0: ts.turn(x0, d, angle)  # noqa: E731
            rho = self.kappa * angle
        return sample(self.model, self.diffusion, cond, steps, w, rho, seed, return_path,
                      shared_noise=shared_noise, steer=steer, noise=noise)

    def scores(self, oracle: torch.Tensor, histories: np.ndarray | None = None,
               e_q: np.ndarray | None = None, rho=None) -> torch.Tensor:
        """s_i = ⟨x̂0, z_i⟩ for every item; with the histories (B, L), the catalog's residual-free
        items are scored by the new-item rule (idream.core.newitems), with the intention's raw vector
        e_q at ρ when given, as `recommend` ranks them.  (B, D) -> (B, N)"""
        s = oracle @ self.item_vectors().T
        ns = self.new_item_scorer() if histories is not None else None
        if ns is not None and len(self.cold_items):
            c = torch.from_numpy(self.cold_items)
            s[:, c] = self.new_item_scores(oracle, histories, s[:, c], ns.rows(self.cold_items), e_q, rho)
        return s

    def new_item_scores(self, x0: torch.Tensor, histories: np.ndarray, own: torch.Tensor,
                        raw: torch.Tensor, e_q: np.ndarray | None = None, rho=None) -> torch.Tensor:
        """Residual-free items' scores by the new-item rule (their own, x0·z, where it is off):
        the one place the rule, the intention and ρ's share of c meet.
        x0 (B, D), histories (B, L), own (B, C), raw (C, Dt) unit text vectors -> (B, C)"""
        ns = self.new_item_scorer()
        if ns is None:
            return own
        return ns.scores(x0, histories, raw, own, self.new_item_rule, e_q, self._rho_scale(rho))

    def _history_indices(self, history) -> list[int]:
        if history is None:
            return []
        if isinstance(history, (str, bytes, int, np.integer, dict)):  # one item, not its characters
            history = [history]
        refuse_new_items_in_history(list(history))
        idx, seen = [], set()
        for ref in history:
            i = self.resolve_item(ref)
            if i not in seen:
                seen.add(i)
                idx.append(i)
        return idx

    def limits(self, offered: bool = False, available: int | None = None) -> Limits:
        """The ranges a request may take: steps 1…T, k ≥ 1, ρ within STEER_RANGE, w within
        ±MAX_GUIDANCE.
        offered: the narrower ones offered to people (rho_range, w_range, at most MAX_K items and
        no more than `available`), which the demo clips to."""
        limits = Limits(steps=(1, self.T), k=(1, None), rho=STEER_RANGE, w=(-MAX_GUIDANCE, MAX_GUIDANCE),
                        default_rho=self.default_rho, default_w=self.default_w)
        if not offered:
            return limits
        k_max = MAX_K if available is None else min(MAX_K, available)
        return limits.within(rho=self.rho_range, w=self.w_range, k_max=k_max)

    def check_request(self, has_history: bool, intention=None, rho=None, w=None, steps=DEFAULT_STEPS,
                      k=DEFAULT_K, seed=DEFAULT_SEED, clip: bool = False,
                      available: int | None = None) -> Request:
        """A request's inputs checked against this model's limits (idream.serving.request.check_request):
        refused with a ValueError, or with clip=True clipped to the offered limits with notices
        (`available`: how many items are left to rank, the most top-K may ask for)."""
        return check_request(self.limits(offered=clip, available=available), has_history, intention,
                             rho, w, steps, k, seed, clip=clip)

    def embed_new_item(self, title: str, description: str = "", year: int | None = None,
                       genres=()) -> dict:
        """A new item, no retraining: describe → embed with the checkpoint's text model → A.
        NewItemError (idream.serving.request.check_new_item) for no title or an overlong text; without a
        description the item is kept with a "notice" saying what that costs."""
        title, description, notice = check_new_item(title, description)
        meta = {"item_id": None, "title": title, "year": year, "genres": tuple(genres),
                "description": description}
        e = self.backend.encode([text.describe(meta, self.dataset.item_kind)])
        item = {"meta": meta, "e": e[0], "z": torch.from_numpy(self.transform(e))[0]}
        return item | ({"notice": notice} if notice else {})

    def _rows(self, scores: torch.Tensor, top: list[int], e_q: np.ndarray | None,
              extra: list | None) -> list[dict]:
        """Result rows for top indices and their scores (k,); indices ≥ N are the extra (new) items.
        e_q: the intention's raw text vector, for the text-match column."""
        N = self.dataset.n_items
        match = self.text_match(e_q, top, extra) if e_q is not None else [None] * len(top)
        rows = []
        for r, i in enumerate(top, 1):
            if i < N:
                meta, new = self.lookup.meta(i), False
            else:
                meta, new = dict(extra[i - N]["meta"], item_id=f"new:{i - N + 1}"), True
            row = {"rank": r, "item_id": meta["item_id"], "title": meta["title"],
                   "score": round(float(scores[r - 1]), 4), "year": meta["year"],
                   "genres": list(meta["genres"]), "new": new}
            if match[r - 1] is not None:
                row["intention_similarity"] = match[r - 1]
            rows.append(row)
        return rows

    def _rank(self, x0: torch.Tensor, idx: list[int], hist: np.ndarray, k: int,
              extra: list | None, e_q: np.ndarray | None = None, rho=None) -> tuple:
        """The top-k over the catalog (+ extra items) with the history and its twins left out
        (Dataset.twins: the same film under another id). Residual-free
        items (the catalog's cold ones and the extra ones) are scored by the new-item rule, with
        the intention's raw vector e_q (D,) at each row's ρ (a float or (B,)) when there is one.
        x0 (B, D), hist (B, L) -> scores (B, k), indices (B, k); indices ≥ N are the extra items."""
        too_strong = ValueError("the generated oracle is not finite (guidance too strong for this "
                                "model): lower rho or w")
        if not bool(torch.isfinite(x0).all()):  # never rank by NaN or infinite scores
            raise too_strong
        N, B = self.dataset.n_items, x0.shape[0]
        ns = self.new_item_scorer()
        cold = self.cold_items if ns is not None else np.zeros(0, dtype=np.int64)
        # residual-free items ride beside the index: the catalog's cold ones first, then the extras
        Z = [self.item_vectors()[torch.from_numpy(cold)]] + ([torch.stack([it["z"] for it in extra])]
                                                            if extra else [])
        Z = torch.cat(Z)  # (C + n, D)
        extra_scores = None
        if ns is not None and len(Z):
            raw = [ns.rows(cold)] + ([unit(np.stack([it["e"] for it in extra]))] if extra else [])
            extra_scores = self.new_item_scores(x0, hist, x0 @ Z.T, torch.cat(raw), e_q, rho)
        pos = {int(c): N + j for j, c in enumerate(cold)}  # a cold history item, beside the index
        out = self.dataset.with_twins(idx).tolist()  # a film in the history, under any of its ids
        seen = np.asarray(out + [pos[i] for i in out if i in pos] + cold.tolist(), dtype=np.int64)
        scores, top = self.item_index().search(x0, k, [seen] * B, Z if len(Z) else None,
                                               extra_scores=extra_scores)
        if not bool(torch.isfinite(scores).all()):  # a finite oracle whose products overflow
            raise too_strong
        if len(cold):  # back to catalog indices; the extras keep N..N+n-1
            back = torch.cat([torch.arange(N), torch.from_numpy(cold), N + torch.arange(len(Z) - len(cold))])
            top = back[top]
        return scores, top

    def _rho_scale(self, rho) -> float | torch.Tensor:
        """How much of the new-item rule's c a request's ρ (a float or (B,)) takes: ρ/ρ₀, so the
        default takes all of it and ρ = 0 none (0 when the default ρ is 0: c was never chosen)."""
        rho0 = self.default_rho
        if not rho0:
            return 0.0
        return 1.0 if rho is None else torch.as_tensor(rho, dtype=torch.float64) / rho0

    def recommend(self, history=(), intention: str | None = None, rho: float | None = None,
                  w: float | None = None, steps: int = DEFAULT_STEPS, k: int = DEFAULT_K,
                  seed: int | None = DEFAULT_SEED, return_path: bool = False,
                  extra_items: list | None = None) -> Recommendation:
        """Rank the catalog for a history (ids or titles, oldest first) and an optional intention.

        extra_items: new items from `embed_new_item`, ranked alongside the catalog (a session's
        own additions; the shared catalog is never changed).
        """
        idx = self._history_indices(history)
        req = self.check_request(bool(idx), intention, rho, w, steps, k, seed)
        intention, rho, w, steps, k, seed = req.intention, req.rho, req.w, req.steps, req.k, req.seed
        hist = window(np.asarray(idx, dtype=np.int64), len(idx), self.history_len)[None]
        e_q, q = self.text.intention(intention)
        out = self.oracle(hist, q, steps=steps, w=w, rho=rho, seed=seed, return_path=return_path)
        x0, path = out if return_path else (out, [])
        scores, top = self._rank(x0, idx, hist, k, extra_items, e_q, rho)
        rows = self._rows(scores[0], top[0].tolist(), e_q, extra_items)
        steps_t = [int(t) for t in DDIMSampler(self.diffusion).set_timesteps(steps)] if return_path else []
        return Recommendation(rows, x0[0].numpy(), idx, intention, [p[0].numpy() for p in path],
                              None if q is None else q[0].numpy(), steps_t, rho, e_q)

    def rho_positions(self) -> list[float]:
        """Evenly spaced ρ over the offered range (the sweep's default), STEER_STEP apart."""
        return positions(*self.rho_range)

    def sweep_rho(self, history=(), intention: str | None = None, rhos=None,
                  w: float | None = None, steps: int = DEFAULT_STEPS, k: int = DEFAULT_K,
                  seed: int | None = DEFAULT_SEED, extra_items: list | None = None) -> dict:
        """What ρ does: one batched generation for every ρ from the same starting noise.

        Returns {"rho": [...], "items": [rows per ρ], "oracles": (R, D),
        "intention_similarity": [cos(oracle, q)], "history_similarity": [cos(oracle, mean h)]}.
        """
        idx = self._history_indices(history)
        req = self.check_request(bool(idx), intention, None, w, steps, k, seed)
        intention, w, steps, k, seed = req.intention, req.w, req.steps, req.k, req.seed
        rhos = check_rhos(self.limits(), self.rho_positions() if rhos is None else rhos)
        R = len(rhos)
        hist = np.repeat(window(np.asarray(idx, dtype=np.int64), len(idx), self.history_len)[None], R, 0)
        e_q, q = self.text.intention(intention)
        x0 = self.oracle(hist, None if q is None else q.expand(R, -1), steps=steps, w=w,
                         rho=torch.tensor(rhos), seed=seed, shared_noise=True)  # (R, D)
        return self.sweep_answer(x0, idx, hist, rhos, k, e_q, q, extra_items)

    def sweep_answer(self, x0: torch.Tensor, idx: list[int], hist: np.ndarray, rhos: list[float], k: int,
                     e_q: np.ndarray | None, q: torch.Tensor | None, extra_items: list | None = None,
                     toward: torch.Tensor | None = None) -> dict:
        """A sweep's answer from its oracles (R, D), one per ρ (shared by sweep_rho and the
        batched path, idream.serving.batch). hist (R, L); e_q (D,) raw and q (1, D) the intention's;
        toward (D,): its direction when already known (a batch finds all of them at once)."""
        R = len(rhos)
        scores, top = self._rank(x0, idx, hist, k, extra_items, e_q, torch.tensor(rhos))
        V = self.item_vectors()
        h_mean = V[idx].mean(0) if idx else None
        if toward is None and q is not None:
            toward = self.intention_directions(q)[0]  # the intention's text direction: what ρ turns to
        cos = lambda a, b: [round(float(v), 4) for v in torch.cosine_similarity(a, b[None], dim=1)]  # noqa: E731
        return {
            "rho": rhos,
            "items": [self._rows(scores[r], top[r].tolist(), e_q, extra_items)
                      for r in range(R)],
            "oracles": x0.numpy(),
            "intention_similarity": cos(x0, toward) if toward is not None else [None] * R,
            "history_similarity": cos(x0, h_mean) if h_mean is not None else [None] * R,
        }


def load_checkpoint(path: str | Path, dataset: Dataset | None = None, *, text_model: str | None = None,
                    descriptions: str | None = None) -> Recommender:
    """Recommender.load as a function."""
    return Recommender.load(path, dataset, text_model=text_model, descriptions=descriptions)
