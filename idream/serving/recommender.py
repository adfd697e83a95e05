"""History + intention → oracle → ranked items. The one entry point the CLI and the app call."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from idream import text
from idream.serving import answers
from idream.serving.checkpoint import read_checkpoint
from idream.serving.checkpoint_config import TextConfig
from idream.data.datasets import Dataset, window
from idream.core.diffusion import Diffusion
from idream.serving.hub import local_path
from idream.serving.guidance import Guidance
from idream.serving.index import ItemIndex
from idream.serving.item_space import ItemSpace
from idream.serving.text_side import TextSide, text_match
from idream.serving.lookup import CatalogLookup, UnknownItemError  # noqa: F401 (the public API names it here)
from idream.core.model import Denoiser, ItemTable
from idream.core.newitems import NewItemRule, NewItemScorer
from idream.serving.request import (DEFAULT_K, DEFAULT_SEED, DEFAULT_STEPS, MAX_GUIDANCE, MAX_K,
                      OFFERED_GUIDANCE, Limits, Request, check_new_item, check_request, check_rhos,
                      refuse_new_items_in_history)
from idream.core.sampler import DDIMSampler
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

    # -- generation and scores (idream.serving.answers) ----------------------------------------
    def conditions(self, histories: np.ndarray, intentions: torch.Tensor | None,
                   has_intention=None) -> dict:
        """Batch tensors for the sampler from history index windows (B, L) and intentions."""
        return answers.conditions(self, histories, intentions, has_intention)

    def oracle(self, histories: np.ndarray, intentions: torch.Tensor | None = None,
               has_intention=None, steps: int = 1, w=None, rho=None, seed: int | None = 0,
               return_path: bool = False, shared_noise: bool = False, noise: torch.Tensor | None = None):
        """Generate oracle embeddings for a batch.  histories (B, L) -> (B, D)
        noise: the starting x_T (B, D) when the rows have seeds of their own (idream.serving.batch).
        rho: a float or (B,) in STEER_RANGE; it turns the oracle toward each intention's text
        direction and weighs the learned guidance term by κρ (idream.core.steer)."""
        return answers.oracle(self, histories, intentions, has_intention, steps, w, rho, seed, return_path,
                              shared_noise, noise)

    def scores(self, oracle: torch.Tensor, histories: np.ndarray | None = None,
               e_q: np.ndarray | None = None, rho=None) -> torch.Tensor:
        """s_i = ⟨x̂0, z_i⟩ for every item; with the histories (B, L), the catalog's residual-free
        items are scored by the new-item rule (idream.core.newitems), with the intention's raw vector
        e_q at ρ when given, as `recommend` ranks them.  (B, D) -> (B, N)"""
        return answers.scores(self, oracle, histories, e_q, rho)

    def new_item_scores(self, x0: torch.Tensor, histories: np.ndarray, own: torch.Tensor,
                        raw: torch.Tensor, e_q: np.ndarray | None = None, rho=None) -> torch.Tensor:
        """Residual-free items' scores by the new-item rule (their own, x0·z, where it is off).
        x0 (B, D), histories (B, L), own (B, C), raw (C, Dt) unit text vectors -> (B, C)"""
        return answers.new_item_scores(self, x0, histories, own, raw, e_q, rho)

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
        scores, top = answers.rank(self, x0, idx, hist, k, extra_items, e_q, rho)
        rows = answers.rows(self, scores[0], top[0].tolist(), e_q, extra_items)
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
        return answers.sweep_answer(self, x0, idx, hist, rhos, k, e_q, q, extra_items, toward)


def load_checkpoint(path: str | Path, dataset: Dataset | None = None, *, text_model: str | None = None,
                    descriptions: str | None = None) -> Recommender:
    """Recommender.load as a function."""
    return Recommender.load(path, dataset, text_model=text_model, descriptions=descriptions)
