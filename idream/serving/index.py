"""Top-k retrieval over the item vectors: exact below a catalog size, a faiss index above it.

The model ranks items by the inner product ⟨x̂0, z_i⟩. Up to EXACT_BELOW items one matrix
product and a partial top-k (idream.ranking) are both exact and fast. Beyond it a faiss index
proposes candidates_for(N) items per request and only those are scored. The default index is a
product quantizer with 4-bit codes scanned by faiss's fast-scan kernels: a full scan of short
codes, so it needs no structure in the catalog (a graph or a clustering loses the oracle's best
items on these vectors: results/bench-speed.md). Three things stay exact on every path: the
scores returned (recomputed from the vectors, never the index's own), the history masking
(excluded items are dropped from the candidates, never searched around) and a session's new
items (scored beside the catalog and merged). Ties go to the lower index, as in metrics.top_k.
"""

from __future__ import annotations

import numpy as np
import torch

from idream.ranking import mask_seen, top_k

# Catalogs smaller than this are searched exactly: at 20k items the quantized scan saves nothing,
# at 100k it is several times faster (results/bench-speed.md, "Retrieval").
EXACT_BELOW = 50_000
# Candidates the quantized scan proposes for exact rescoring: at least CANDIDATES, and one in
# CANDIDATE_SHARE items on larger catalogs, where more near-equal items compete for the top-10
# (1M noisy copies of the real items keep 0.981 of it with 1,000 candidates, a single request as
# little as 0.6, and 0.997 with 3,000). The benchmark's "recall@10 by candidates" column is where
# to retune them (results/bench-speed.md).
CANDIDATES = 1000
CANDIDATE_SHARE = 400


def candidates_for(n: int) -> int:
    """How many candidates a catalog of n items proposes for exact rescoring."""
    return max(CANDIDATES, n // CANDIDATE_SHARE)
TRAIN_SAMPLE = 65_536  # rows the quantizer's codebooks are fitted on (seeded sample)
MIN_FAISS = 256  # fewer items than this cannot fit a quantizer's codebooks: searched exactly
KINDS = ("auto", "exact", "faiss")


def kind_for(n: int) -> str:
    """The search "auto" picks for a catalog of n items."""
    return "exact" if n < max(EXACT_BELOW, MIN_FAISS) else "faiss"


def default_factory(d: int) -> str:
    """The faiss index for d-dim vectors: one 4-bit sub-quantizer per two dimensions."""
    return f"PQ{(d + d % 2) // 2}x4fs"


class ItemIndex:
    """Inner-product search over fixed item vectors (N, D), with exclusions and extra items.

    kind: "auto" (exact below EXACT_BELOW items, faiss above), "exact" or "faiss".
    factory: the faiss index_factory string (default: default_factory(D)); params: faiss
    search parameters ("nprobe=64", "efSearch=256") for the factories that have them.
    build_threads: threads for building. One (the default) gives the same index, and so the
    same answers, in every process.
    """

    def __init__(self, vectors: torch.Tensor, kind: str = "auto", *, factory: str | None = None,
                 params: str = "", candidates: int | None = None, build_threads: int = 1):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        vectors = torch.as_tensor(vectors)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ValueError(f"item vectors must be a non-empty (N, D) matrix, got {tuple(vectors.shape)}")
        self.vectors = vectors  # (N, D) kept, not copied: the exact scores come from here
        self.n, self.d = vectors.shape
        self._width = self.d + self.d % 2  # the faiss index's width: PQ codes pair the dimensions
        self.candidates = candidates_for(self.n) if candidates is None else int(candidates)
        self.factory = None
        self.faiss = None
        if (kind_for(self.n) if kind == "auto" else kind) == "faiss" and self.n >= MIN_FAISS:
            self.factory = factory or default_factory(self.d)
            self.faiss = _build(self._numpy(vectors), self.factory, params, build_threads)

    @property
    def kind(self) -> str:
        return "exact" if self.faiss is None else "faiss"

    def nbytes(self) -> int:
        """Memory the faiss index holds (its codes or its vector copy, and its structure)."""
        if self.faiss is None:
            return 0
        import faiss

        return int(faiss.serialize_index(self.faiss).size)

    # -- search ------------------------------------------------------------------------------
    def search(self, queries, k: int, exclude: list | None = None, extra: torch.Tensor | None = None,
               exact: bool = False, extra_scores: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The k best items per query, best first.  queries (B, D) -> scores (B, k), indices (B, k)

        exclude: per row, item indices never to return (the history). extra: (n, D) vectors
        scored exactly beside the catalog, returned as indices N..N+n-1; extra_scores (B, n): their
        scores when they are not the plain product (idream.core.newitems). exact: skip the index.
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
        if extra is not None:
            extra = q @ extra.T if extra_scores is None else torch.as_tensor(extra_scores, dtype=torch.float32)
            if extra.shape[0] != len(q):
                raise ValueError(f"extra scores must be ({len(q)}, n), got {tuple(extra.shape)}")
        total = self.n + (0 if extra is None else extra.shape[1])  # extra: now the (B, n) scores
        exclude = self._exclusions(exclude, len(q), total)
        k = max(0, min(int(k), total - max((len(e) for e in exclude), default=0)))
        if self.faiss is None or exact:
            return self._exact(q, k, exclude, extra)
        rows = [self._approximate(q[b], k, exclude[b], None if extra is None else extra[b])
                for b in range(len(q))]
        if not rows:
            return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long)
        return torch.stack([s for s, _ in rows]), torch.stack([i for _, i in rows])

    def _exact(self, q, k, exclude, extra):
        """Every item scored: the product, the mask and the partial top-k the evaluation uses.
        extra: the extra items' scores (B, n)."""
        scores = q @ self.vectors.T  # (B, N)
        if extra is not None:
            scores = torch.cat([scores, extra], dim=1)  # (B, N + n)
        scores = mask_seen(scores, exclude)
        top = top_k(scores, k)
        return scores.gather(1, top), top

    def _approximate(self, q, k, exclude, extra):
        """One row: the index's candidates less the excluded, rescored exactly, merged with the
        extras (their scores (n,))."""
        excluded_catalog = int((exclude < self.n).sum())
        want = min(k, self.n - excluded_catalog)  # catalog items this row may need
        ask = min(self.n, max(k, self.candidates) + excluded_catalog)
        while True:
            _, found = self.faiss.search(self._numpy(q[None]), ask)
            cand = found[0][found[0] >= 0]  # -1: the index reached fewer items than asked
            cand = cand[~np.isin(cand, exclude)]
            if len(cand) >= want:
                break
            if ask >= self.n:  # the whole catalog asked for and still short: score every item
                return tuple(t[0] for t in self._exact(q[None], k, [exclude], None if extra is None else extra[None]))
            ask = min(self.n, 2 * ask)
        cand = torch.from_numpy(np.sort(cand).astype(np.int64))
        scores = self.vectors[cand] @ q  # (C,) the exact scores, not the index's
        if extra is not None:
            keep = torch.from_numpy(~np.isin(np.arange(self.n, self.n + len(extra)), exclude))
            cand = torch.cat([cand, torch.arange(self.n, self.n + len(extra))[keep]])
            scores = torch.cat([scores, extra[keep]])
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

    def _numpy(self, vectors: torch.Tensor) -> np.ndarray:
        """float32 rows, padded with zero columns to the faiss index's width."""
        x = np.ascontiguousarray(vectors.detach().cpu().numpy(), dtype=np.float32)
        if x.shape[1] < self._width:
            x = np.ascontiguousarray(np.pad(x, ((0, 0), (0, self._width - x.shape[1]))))
        return x


def _build(x: np.ndarray, factory: str, params: str, threads: int):
    """A faiss inner-product index over x (N, D): fitted on a seeded sample, then filled."""
    import faiss  # here, not at the top: only catalogs that need an index pay its import

    index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, int(threads)))
    try:
        if not index.is_trained:
            rows = np.random.default_rng(0).choice(len(x), min(len(x), TRAIN_SAMPLE), replace=False)
            index.train(x[np.sort(rows)])
        index.add(x)
    finally:
        faiss.omp_set_num_threads(before)
    if params:
        faiss.ParameterSpace().set_index_parameters(index, params)
    return index
