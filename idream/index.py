"""Top-k retrieval over the item vectors: exact below a catalog size, an HNSW graph above it.

The model ranks items by the inner product ⟨x̂0, z_i⟩. Up to EXACT_BELOW items one matrix
product and a partial top-k (idream.metrics) are both exact and fast; beyond it a faiss HNSW
graph proposes candidates and only those are scored. Three things stay exact on every path:
the scores returned (recomputed from the vectors, never the graph's own), the history masking
(excluded items are dropped from the candidates, never searched around) and a session's new
items (scored beside the catalog and merged). Ties go to the lower index, as in metrics.top_k.
"""

from __future__ import annotations

import numpy as np
import torch

from .metrics import mask_seen, top_k

# Catalogs smaller than this are searched exactly. The threshold belongs where the graph's gain
# in latency outweighs its build time and lost recall; measured on real oracles the graph's
# recall@10 is far below 0.98 (results/bench-speed.md, "Retrieval"), so every size is searched
# exactly until a search reaches it (kind="hnsw" still builds the graph on request).
EXACT_BELOW = 2**62
# The graph's dials; the benchmark's "recall@10 by efSearch" column is where to retune them.
HNSW_M = 32  # links per item (2·M at the base layer): more cost memory and build time, gain recall
EF_CONSTRUCTION = 80  # candidates kept while linking an item in
EF_SEARCH = 128  # candidates kept while searching; raised to the number of results asked for
KINDS = ("auto", "exact", "hnsw")


def kind_for(n: int) -> str:
    """The search "auto" picks for a catalog of n items."""
    return "exact" if n < EXACT_BELOW else "hnsw"


class ItemIndex:
    """Inner-product search over fixed item vectors (N, D), with exclusions and extra items.

    kind: "auto" (exact below EXACT_BELOW items, HNSW above), "exact" or "hnsw".
    build_threads: threads for building the graph. One (the default) gives the same graph, and
    so the same answers, in every process; more build faster but the graph then depends on the
    threads' timing.
    """

    def __init__(self, vectors: torch.Tensor, kind: str = "auto", *, ef_search: int = EF_SEARCH,
                 m: int = HNSW_M, ef_construction: int = EF_CONSTRUCTION, build_threads: int = 1):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        vectors = torch.as_tensor(vectors)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ValueError(f"item vectors must be a non-empty (N, D) matrix, got {tuple(vectors.shape)}")
        self.vectors = vectors  # (N, D) kept, not copied: the exact scores come from here
        self.n, self.d = vectors.shape
        self._version = _version(vectors)  # an in-place change of the vectors makes this index stale
        self.ef_search = int(ef_search)
        self.hnsw = None
        if (kind_for(self.n) if kind == "auto" else kind) == "hnsw":
            self.hnsw = _build_hnsw(self._numpy(vectors), m, ef_construction, build_threads)

    @property
    def kind(self) -> str:
        return "exact" if self.hnsw is None else "hnsw"

    def fits(self, vectors: torch.Tensor) -> bool:
        """True when this index was built from exactly these vectors, unchanged since."""
        return (vectors is self.vectors and tuple(vectors.shape) == (self.n, self.d)
                and _version(vectors) == self._version)

    def nbytes(self) -> int:
        """Memory the index holds beyond the vectors themselves (the graph and its vector copy)."""
        if self.hnsw is None:
            return 0
        import faiss

        g = self.hnsw.hnsw
        codes = faiss.downcast_index(self.hnsw.storage).codes.size()
        return int(codes + 4 * g.neighbors.size() + 8 * g.offsets.size() + 4 * g.levels.size())

    # -- search ------------------------------------------------------------------------------
    def search(self, queries, k: int, exclude: list | None = None, extra: torch.Tensor | None = None,
               exact: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The k best items per query, best first.  queries (B, D) -> scores (B, k), indices (B, k)

        exclude: per row, item indices never to return (the history). extra: (n, D) vectors
        scored exactly beside the catalog, returned as indices N..N+n-1. exact: skip the graph.
        Fewer than k columns only when some row has fewer than k items left to return.
        """
        q = torch.as_tensor(queries, dtype=torch.float32).detach()
        if q.ndim != 2 or q.shape[1] != self.d:
            raise ValueError(f"this index holds {self.d}-d vectors; the queries are {tuple(q.shape)}")
        if not bool(torch.isfinite(q).all()):
            raise ValueError("the queries are not finite")
        if extra is not None:
            extra = torch.as_tensor(extra, dtype=torch.float32).detach()
            extra = extra if len(extra) else None
        if extra is not None and (extra.ndim != 2 or extra.shape[1] != self.d):
            raise ValueError(f"extra items must be (n, {self.d}), got {tuple(extra.shape)}")
        total = self.n + (0 if extra is None else len(extra))
        exclude = self._exclusions(exclude, len(q), total)
        k = max(0, min(int(k), total - max((len(e) for e in exclude), default=0)))
        if self.hnsw is None or exact:
            return self._exact(q, k, exclude, extra)
        rows = [self._approximate(q[b], k, exclude[b], extra) for b in range(len(q))]
        if not rows:
            return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long)
        return torch.stack([s for s, _ in rows]), torch.stack([i for _, i in rows])

    def _exact(self, q, k, exclude, extra):
        """Every item scored: the product, the mask and the partial top-k the evaluation uses."""
        scores = q @ self.vectors.T  # (B, N)
        if extra is not None:
            scores = torch.cat([scores, q @ extra.T], dim=1)  # (B, N + n)
        scores = mask_seen(scores, exclude)
        top = top_k(scores, k)
        return scores.gather(1, top), top

    def _approximate(self, q, k, exclude, extra):
        """One row: graph candidates less the excluded, rescored exactly, merged with the extras."""
        import faiss

        excluded_catalog = int((exclude < self.n).sum())
        want = min(k, self.n - excluded_catalog)  # catalog items this row may need
        ask = min(self.n, k + excluded_catalog)
        while True:
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, ask))
            _, found = self.hnsw.search(self._numpy(q[None]), ask, params=params)
            cand = found[0][found[0] >= 0]  # -1: the graph reached fewer items than asked
            cand = cand[~np.isin(cand, exclude)]
            if len(cand) >= want:
                break
            if ask >= self.n:  # the whole graph asked for and still short: score every item
                return tuple(t[0] for t in self._exact(q[None], k, [exclude], extra))
            ask = min(self.n, 2 * ask)
        cand = torch.from_numpy(np.sort(cand).astype(np.int64))
        scores = self.vectors[cand] @ q  # (C,) the exact scores, not the graph's
        if extra is not None:
            keep = torch.from_numpy(~np.isin(np.arange(self.n, self.n + len(extra)), exclude))
            cand = torch.cat([cand, torch.arange(self.n, self.n + len(extra))[keep]])
            scores = torch.cat([scores, (extra @ q)[keep]])
        top = top_k(scores[None], k)[0]  # candidates sorted by index: ties go to the lower one
        return scores[top], cand[top]

    @staticmethod
    def _exclusions(exclude, B: int, total: int) -> list:
        """Per row, the unique excluded indices as int64 arrays, checked against the catalog."""
        if exclude is None:
            return [np.zeros(0, dtype=np.int64)] * B
        if len(exclude) != B:
            raise ValueError(f"exclude needs one list per query ({B}), got {len(exclude)}")
        out = []
        for e in exclude:
            e = np.unique(np.asarray(e, dtype=np.int64).reshape(-1))
            if len(e) and (e[0] < 0 or e[-1] >= total):
                raise ValueError(f"excluded indices must be in [0, {total}), got {e[0]}..{e[-1]}")
            out.append(e)
        return out

    @staticmethod
    def _numpy(vectors: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(vectors.detach().cpu().numpy(), dtype=np.float32)


def _version(t: torch.Tensor) -> int:
    """The tensor's in-place write counter (inference tensors have none and cannot be written)."""
    try:
        return t._version
    except RuntimeError:
        return -1


def _build_hnsw(x: np.ndarray, m: int, ef_construction: int, threads: int):
    """An HNSW graph (faiss.IndexHNSWFlat) for inner-product search over x (N, D)."""
    import faiss  # here, not at the top: only catalogs that need a graph pay its import

    index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, int(threads)))
    try:
        index.add(x)
    finally:
        faiss.omp_set_num_threads(before)
    return index
