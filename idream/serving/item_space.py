"""The catalog as a model scores it: the item vectors and what is derived from them (the text
steer's covariance, the new-item scorer's warm vectors, the search index). Each is computed again
when what it was made from has changed (a training step, a device move, another rule), so no
caller has to say when a cache is stale."""

from __future__ import annotations

import threading

import numpy as np
import torch

from idream.core.model import ItemTable
from idream.core.newitems import NewItemScorer
from idream.core.steer import TextSteer
from idream.core.transform import Transform
from idream.serving.index import ItemIndex, kind_for


def state_of(*tensors: torch.Tensor | None) -> tuple:
    """What identifies the current values of some tensors: their memory, shape and in-place
    version counter (an optimizer step or a move to another device changes it)."""
    return tuple(None if t is None else (t.data_ptr(), tuple(t.shape), str(t.device), t._version)
                 for t in tensors)


class ItemSpace:
    """Item vectors z_i (+ residual) and their derived structures, each kept while its inputs hold."""

    def __init__(self, table: ItemTable, transform: Transform, embeddings: np.ndarray | None):
        self.table, self.transform, self.embeddings = table, transform, embeddings
        self._kept: dict[str, tuple] = {}  # name -> (the vectors it was made from, the inputs' state, the value)
        self._lock = threading.Lock()  # one index build when the first requests arrive together

    def _keep(self, name: str, key, make, source: torch.Tensor | None = None):
        """The value kept under `name` while `key` is unchanged and it was made from this very
        `source` tensor (held, so that no later tensor can take its id), else made again."""
        hit = self._kept.get(name)
        if hit is not None and hit[0] is source and hit[1] == key:
            return hit[2]
        value = make()
        self._kept[name] = (source, key, value)
        return value

    def vectors(self) -> torch.Tensor:
        """z_i (+ residual) for every catalog item, as the model ranks them.  # (N, D)"""
        def make():
            with torch.no_grad():
                return self.table.vectors().detach()
        return self._keep("vectors", state_of(self.table.z, self.table.residual), make)

    def steer(self) -> TextSteer:
        """Text directions and the catalog covariance of the current vectors."""
        V = self.vectors()
        return self._keep("steer", None, lambda: TextSteer(self.transform, V), source=V)

    def new_item_scorer(self, cold_items: np.ndarray) -> NewItemScorer:
        """The scorer of residual-free items against the warm items' current vectors."""
        V = self.vectors()

        def make():
            warm = np.ones(len(self.embeddings), dtype=bool)
            warm[cold_items] = False
            return NewItemScorer(self.embeddings, V[torch.from_numpy(warm)])
        return self._keep("new_items", tuple(cold_items.tolist()), make, source=V)

    def index(self, exact: bool = False) -> ItemIndex:
        """The search index over the current vectors: exact below a catalog size, or when asked."""
        with self._lock:
            V = self.vectors()
            kind = "exact" if exact else kind_for(len(V))
            return self._keep("index", kind, lambda: ItemIndex(V, kind), source=V)
