"""idream.serving.index: the faiss index's recall, exact masking and merging, and the shipped checkpoint's
rankings unchanged by the index (same items, order and scores as scoring every item)."""

from pathlib import Path

import numpy as np
import pytest
import torch

import idream.serving.index as index_module
from idream.serving import answers
from idream.data.datasets import window
from idream.serving.index import ItemIndex
from idream.ranking import mask_seen, top_k

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "ml-100k"
N, D, K = 50_000, 32, 10


def planted(n: int, d: int, n_queries: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Items in n/50 clusters around random centres, queries near some of the centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 50, d))
    items = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, d))
    queries = centres[rng.integers(0, len(centres), n_queries)] + 0.5 * rng.standard_normal((n_queries, d))
    return torch.from_numpy(items.astype(np.float32)), torch.from_numpy(queries.astype(np.float32))


def exact_top(V, q, k, exclude=None, extra=None, extra_scores=None):
    """The ranking the index must reproduce, written out: every score, the mask, the top-k."""
    scores = q @ V.T
    if extra is not None:
        scores = torch.cat([scores, q @ extra.T if extra_scores is None else extra_scores], dim=1)
    if exclude is not None:
        scores = mask_seen(scores, [np.asarray(e, dtype=np.int64) for e in exclude])
    top = top_k(scores, k)
    return scores.gather(1, top), top


def recall(found: torch.Tensor, truth: torch.Tensor) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


@pytest.fixture(scope="module")
def vectors():
    return planted(N, D, 200)


@pytest.fixture(scope="module")
def built(vectors):
    index = ItemIndex(vectors[0], "faiss")
    # the default index keeps 4-bit codes: far less than the float vectors themselves
    assert index.kind == "faiss" and index.faiss.ntotal == N and 0 < index.nbytes() < N * D
    return index


# -- the index on planted structure ------------------------------------------------------------

def test_faiss_recall_at_50k(vectors, built):
    V, Q = vectors
    scores, found = built.search(Q, K)
    truth = exact_top(V, Q, K)[1]
    assert recall(found, truth) >= 0.98
    # the scores returned are the exact inner products of the items returned, best first
    assert torch.allclose(scores, (V[found] * Q[:, None]).sum(-1), atol=1e-4)
    assert bool((scores[:, :-1] >= scores[:, 1:]).all())


def test_excluded_items_never_return_and_k_are_returned(vectors, built):
    V, Q = vectors
    Q = Q[:40]
    rng = np.random.default_rng(1)
    # each row's exact top-50 (what the index finds first) and 100 random items are excluded
    best = exact_top(V, Q, 50)[1]
    exclude = [np.concatenate([b.numpy(), rng.integers(0, N, 100)]) for b in best]
    scores, found = built.search(Q, K, exclude)
    assert found.shape == (40, K)
    for f, e in zip(found.tolist(), exclude):
        assert not set(f) & set(e.tolist()) and len(set(f)) == K
    assert recall(found, exact_top(V, Q, K, exclude)[1]) >= 0.98
    # rows of different history lengths in one batch: each row still gets its k
    ragged = [exclude[0][:3], exclude[1]]
    found = built.search(Q[:2], K, ragged)[1]
    assert found.shape == (2, K) and not set(found[0].tolist()) & set(ragged[0].tolist())


def test_almost_everything_excluded_returns_what_is_left(vectors, built):
    V, Q = vectors
    left = np.array([7, 12_345, 49_999])
    exclude = np.setdiff1d(np.arange(N), left)
    scores, found = built.search(Q[:2], K, [exclude, exclude])
    assert found.shape == (2, 3)
    assert all(sorted(f) == left.tolist() for f in found.tolist())
    assert torch.equal(found, exact_top(V, Q[:2], 3, [exclude, exclude])[1])


class ShortIndex:
    """An index that finds only half of what it is asked for (the rest -1), as a graph or a
    clustering may."""

    def __init__(self, index):
        self.index, self.asked = index, []

    def search(self, x, k):
        self.asked.append(k)
        dist, found = self.index.search(x, k)
        found[:, (k + 1) // 2:] = -1
        return dist, found


def test_a_short_answer_is_asked_again_with_more(vectors):
    V, Q = vectors[0][:3000], vectors[1][:5]
    import faiss

    index = ItemIndex(V, "faiss", candidates=K)
    flat = faiss.IndexFlatIP(D)  # exact candidates, so what is tested is the asking again
    flat.add(V.numpy())
    index.faiss = ShortIndex(flat)
    exclude = [exact_top(V, q[None], 20)[1][0].numpy() for q in Q]  # each row's 20 best
    scores, found = index.search(Q, K, exclude)
    assert found.shape == (5, K)
    assert max(index.faiss.asked) > K + 20  # the first ask (k + excluded) came back short
    for f, e in zip(found.tolist(), exclude):
        assert not set(f) & set(e.tolist())
    assert recall(found, exact_top(V, Q, K, exclude)[1]) >= 0.98


def test_extra_items_are_scored_exactly_and_merged(vectors, built):
    V, Q = vectors
    q = Q[:3]
    # five new items: two made to beat the catalog for query 0, one of them excluded
    extra = torch.cat([3 * q[:1], 2 * q[:1], torch.randn(3, D)])
    exclude = [np.array([N + 1, 5]), np.array([5]), np.array([], dtype=np.int64)]
    scores, found = built.search(q, K, exclude, extra)
    base_scores, base = built.search(q, K, [e[e < N] for e in exclude])  # the catalog's part alone
    for b in range(3):
        pool_i = torch.cat([base[b], N + torch.arange(5)])
        pool_s = torch.cat([base_scores[b], q[b] @ extra.T])
        keep = ~torch.isin(pool_i, torch.as_tensor(exclude[b]))
        pool_i, pool_s = pool_i[keep], pool_s[keep]
        order = torch.argsort(pool_i)  # ties to the lower index
        pool_i, pool_s = pool_i[order], pool_s[order]
        best = top_k(pool_s[None], K)[0]
        assert torch.equal(found[b], pool_i[best])
        assert torch.allclose(scores[b], pool_s[best], rtol=1e-6, atol=1e-5)
    assert found[0, 0] == N and N + 1 not in found[0].tolist()
    assert torch.isclose(scores[0, 0], q[0] @ extra[0], rtol=1e-6)


def test_same_inputs_same_answers():
    V, Q = planted(5000, D, 20, seed=3)
    a, b = ItemIndex(V, "faiss"), ItemIndex(V.clone(), "faiss")
    exclude = [np.arange(i, i + 5) for i in range(20)]
    first = a.search(Q, K, exclude)
    for again in (a.search(Q, K, exclude), b.search(Q, K, exclude)):
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_auto_is_exact_below_the_threshold_and_faiss_above(monkeypatch):
    V, Q = planted(1000, 8, 4)
    assert ItemIndex(V).kind == "exact" and ItemIndex(V).nbytes() == 0
    exclude = [np.array([0, 1, 2])] * 4
    assert all(torch.equal(x, y) for x, y in zip(ItemIndex(V).search(Q, K, exclude),
                                                   exact_top(V, Q, K, exclude)))
    monkeypatch.setattr(index_module, "EXACT_BELOW", 1000)
    assert ItemIndex(V).kind == "faiss" and ItemIndex(V[:999]).kind == "exact"
    # too few items for a quantizer's codebooks: exact whatever was asked, and what auto picks
    small = V[:index_module.MIN_FAISS - 1]
    assert ItemIndex(small, "faiss").kind == "exact" == index_module.kind_for(len(small))
    monkeypatch.setattr(index_module, "EXACT_BELOW", 0)
    assert ItemIndex(small).kind == "exact" and ItemIndex(V).kind == "faiss"
    # exact=True searches every item even where there is an index
    built = ItemIndex(V)
    assert all(torch.equal(x, y) for x, y in zip(built.search(Q, K, exclude, exact=True),
                                                   exact_top(V, Q, K, exclude)))


@pytest.mark.parametrize("kind", ["exact", "faiss"])
def test_ties_go_to_the_lower_index(kind):
    """Every vector four times over (rows shuffled): equal scores come back lowest index first."""
    unique, Q = planted(500, 8, 10, seed=4)
    rng = np.random.default_rng(4)
    V = unique[rng.permutation(np.repeat(np.arange(500), 4))]
    scores, found = ItemIndex(V, kind).search(Q, 12, [np.array([3, 99])] * 10)
    tied = scores[:, 1:] == scores[:, :-1]
    assert bool(tied.any()) and bool((found[:, 1:] > found[:, :-1])[tied].all())
    if kind == "exact":
        assert torch.equal(found, exact_top(V, Q, 12, [np.array([3, 99])] * 10)[1])


def test_an_index_for_other_vectors_is_refused(vectors, built):
    V, Q = vectors
    with pytest.raises(ValueError, match="32-d"):
        built.search(torch.randn(2, 16), K)
    with pytest.raises(ValueError, match="extra items"):
        built.search(Q[:1], K, extra=torch.randn(2, 16))
    with pytest.raises(ValueError, match="excluded indices"):
        built.search(Q[:1], K, [np.array([N])])
    with pytest.raises(ValueError, match="not finite"):
        built.search(torch.full((1, D), float("nan")), K)


# -- the shipped checkpoint --------------------------------------------------------------------

@pytest.fixture(scope="module")
def rec():
    from idream.serving.recommender import Recommender

    if not (SHIPPED / "model.safetensors").exists():
        pytest.skip("no shipped checkpoint")
    return Recommender.load(SHIPPED)


def new_item(rec):
    return rec.embed_new_item("Laugh Track", "A light, funny comedy about friends in the 90s.", 1996,
                              ["Comedy"])


REQUESTS = [
    (["Toy Story (1995)", "Fargo (1996)", "Star Wars (1977)"], None, False),
    (["Toy Story (1995)", "Fargo (1996)", "Star Wars (1977)"], "something light and funny", False),
    (["Scream (1996)", "Alien (1979)"], "a quiet romance", True),
    ([], "space adventure with robots", True),
]


def new_item_scores(rec, x0, history, extra):
    """The new-item rule written out (idream/core/newitems.py): max(own score, mean + spread·(a·z + b)),
    z the item's largest text cosine to a history item, z-scored over the catalog's.  -> (1, n)"""
    own = (x0 @ torch.stack([it["z"] for it in extra]).T).double()
    rule = rec.new_item_rule
    if not rule.on or not len(history):
        return own
    E = rec.embeddings / np.linalg.norm(rec.embeddings, axis=1, keepdims=True)
    new = np.stack([it["e"] / np.linalg.norm(it["e"]) for it in extra])
    hist = E[list(history)[-rec.history_len:]]
    close = lambda X: (X @ hist.T).max(1)  # noqa: E731
    ref = close(E)
    z = (close(new) - ref.mean()) / ref.std(ddof=1)
    s = (x0.double() @ rec.item_vectors().double().T)[0].numpy()
    cal = s.mean() + s.std() * (rule.a * z + rule.b)
    return torch.maximum(own, torch.from_numpy(cal)[None])


def reference(rec, out, extra):
    """Today's exact ranking of a recommendation's oracle: (item ids, scores as the rows show)."""
    x0 = torch.from_numpy(out.oracle)[None]
    Z = torch.stack([it["z"] for it in extra]) if extra else None
    extra_scores = new_item_scores(rec, x0, out.history, extra).float() if extra else None
    scores, top = exact_top(rec.item_vectors(), x0, len(out.items), [np.asarray(out.history)], Z,
                            extra_scores)
    ids = [rec.dataset.item_meta(i)["item_id"] if i < rec.dataset.n_items else f"new:{i - rec.dataset.n_items + 1}"
           for i in top[0].tolist()]
    return ids, [round(float(s), 4) for s in scores[0]]


@pytest.mark.parametrize("history, intention, with_new", REQUESTS)
def test_shipped_checkpoint_ranks_as_scoring_every_item(rec, history, intention, with_new):
    extra = [new_item(rec)] if with_new else None
    out = rec.recommend(history, intention, k=10, extra_items=extra)
    assert rec.item_index().kind == "exact" and len(out.items) == 10
    assert ([r["item_id"] for r in out.items], [r["score"] for r in out.items]) == reference(rec, out, extra)
    # and to the last bit, before the rows round them
    x0 = torch.from_numpy(out.oracle)[None]
    Z = torch.stack([it["z"] for it in extra]) if extra else None
    hist = window(np.asarray(out.history), len(out.history), rec.history_len)[None]
    got = answers.rank(rec, x0, out.history, hist, 10, extra)
    want = exact_top(rec.item_vectors(), x0, 10, [np.asarray(out.history)], Z,
                     new_item_scores(rec, x0, out.history, extra).float() if extra else None)
    torch.testing.assert_close(got[0], want[0])
    assert torch.equal(got[1], want[1])


def test_shipped_checkpoint_through_the_faiss_index(rec, monkeypatch):
    """With the threshold at 0 the shipped catalog goes through the faiss index: the same top-10."""
    monkeypatch.setattr(index_module, "EXACT_BELOW", 0)
    rec.space._kept.pop("index", None)  # the threshold is a module constant, read when an index is built
    try:
        for history, intention, with_new in REQUESTS:
            extra = [new_item(rec)] if with_new else None
            out = rec.recommend(history, intention, k=10, extra_items=extra)
            assert rec.item_index().kind == "faiss"
            ids, scores = reference(rec, out, extra)
            assert [r["item_id"] for r in out.items] == ids
            assert np.allclose([r["score"] for r in out.items], scores, atol=2e-4)
        rec.exact = True  # the switch: every item scored, the index left unused
        out = rec.recommend(*REQUESTS[1][:2], k=10)
        assert [r["score"] for r in out.items] == reference(rec, out, None)[1]
    finally:
        rec.exact = False
        monkeypatch.undo()
        rec.space._kept.pop("index", None)


def test_sweep_rho_ranks_as_scoring_every_item(rec):
    history, intention = ["Toy Story (1995)", "Fargo (1996)"], "something light and funny"
    sweep = rec.sweep_rho(history, intention, rhos=[0.0, 0.5, 1.0], k=10)
    hist = [rec.resolve_item(h) for h in history]
    scores, top = exact_top(rec.item_vectors(), torch.from_numpy(sweep["oracles"]), 10, [hist] * 3)
    for rows, s, t in zip(sweep["items"], scores, top):
        assert [r["item_id"] for r in rows] == [rec.dataset.item_meta(i)["item_id"] for i in t.tolist()]
        assert [r["score"] for r in rows] == [round(float(v), 4) for v in s]


def test_recommender_caches_follow_the_item_table_without_being_told(rec):
    """The vectors, the index and the text steer are computed again when the item table changes in
    place (a training step) and kept while it does not: no cache is reset by hand."""
    first, V = rec.item_index(), rec.item_vectors()
    steer = rec.text_steer()
    assert rec.item_index() is first and rec.item_vectors() is V and rec.text_steer() is steer
    residual = rec.table.residual.detach().clone()
    try:
        with torch.no_grad():
            rec.table.residual.mul_(2)  # as an optimizer step changes it: in place
        V2 = rec.item_vectors()
        assert V2 is not V and not torch.equal(V2, V)
        assert rec.item_index() is not first and rec.item_index().vectors is V2 and rec.text_steer() is not steer
        assert torch.equal(V2, rec.table.vectors().detach())
    finally:
        with torch.no_grad():
            rec.table.residual.copy_(residual)
    assert torch.equal(rec.item_vectors(), V)  # back to the loaded values, and to answers from them



def test_speed_benchmark_has_the_retrieval_rows(tmp_path):
    from benchmarks.speed import run_speed, speed_markdown

    if not (SHIPPED / "model.safetensors").exists():
        pytest.skip("no shipped checkpoint")
    result = run_speed(str(SHIPPED), sizes=(1682, 5000), repeats=3, log_fn=lambda s: None, users=50,
                       synthetic=("gaussian", "near copies"))
    searches = ["exact", "PQ192x4fs (default)", "IVF256,Flat nprobe=16", "HNSW32 efSearch=1000"]
    assert [(r["catalog"], r["rows"], r["search"]) for r in result["retrieval"]] == (
        [(1682, "real", s) for s in searches] + [(5000, "gaussian", s) for s in searches]
        + [(5000, "near copies", s) for s in searches])
    assert len(result["rows"]) == 8  # the exact rows of before are still there
    for r in result["retrieval"]:
        assert r["median_ms"] > 0 and r["intention_median_ms"] > 0 and r["build_s"] >= 0
        if r["search"] == "exact":
            assert r["recall@10"] == 1.0 and r["index_bytes"] == 0
        else:
            assert r["index_bytes"] > 0
        if r["search"].endswith("(default)"):
            # 4-bit codes: far smaller than the float vectors, and (rescored) the exact top-10
            assert r["index_bytes"] < r["catalog"] * 384 * 4 / 4 and r["recall@10"] >= 0.98
            assert set(r["recall@10_by_candidates"]) == {"300", "1000", "3000", "5000"}
    md = speed_markdown(result)
    assert "| catalog | rows | search | build s | index MB | recall@10 |" in md
    assert "median ms, intention" in md and "| 5,000 | near copies | PQ192x4fs (default) |" in md


def test_synthetic_rows_follow_the_catalog():
    from benchmarks.speed import catalog

    rng = np.random.default_rng(0)
    V = torch.from_numpy((rng.standard_normal((300, 6)) * [1, 2, 3, 4, 5, 6] + 10).astype(np.float32))
    for rows in ("gaussian", "near copies", "noisy copies"):
        X = catalog(V, 250_300, rows)
        assert X.shape == (250_300, 6) and torch.equal(X[:300], V)
        assert torch.equal(X, catalog(V, 250_300, rows))  # seeded
        # the mean of the catalog's rows; the gaussian rows' spread as well
        assert torch.allclose(X[300:].mean(0), V.mean(0), atol=0.1)
        if rows == "gaussian":
            assert torch.allclose(X[300:].std(0), V.std(0), rtol=0.02)
    # near copies sit closer to some real item than independent draws do (in as many dimensions
    # as real vectors have, where independent draws are far from everything)
    V = torch.from_numpy(rng.standard_normal((300, 64)).astype(np.float32))
    near, far = catalog(V, 1300, "near copies")[300:], catalog(V, 1300, "gaussian")[300:]
    assert torch.cdist(near, V).min(1).values.median() < 0.6 * torch.cdist(far, V).min(1).values.median()
    # noisy copies: a real item plus noise of 0.35 of the spread, so about 0.35·√D from it
    noisy = catalog(V, 1300, "noisy copies")[300:]
    assert torch.allclose(torch.cdist(noisy, V).min(1).values.median(), torch.tensor(0.35 * 8), rtol=0.1)
    with pytest.raises(ValueError):
        catalog(V, 1300, "copies")


def test_candidates_grow_with_the_catalog():
    """At least CANDIDATES, and one in CANDIDATE_SHARE items beyond (1M noisy copies lose the
    top-10 with a fixed 1,000: results/bench-speed.md)."""
    from idream.serving.index import CANDIDATE_SHARE, CANDIDATES, candidates_for
    assert candidates_for(300) == candidates_for(400_000) == CANDIDATES == 1000
    assert candidates_for(1_000_000) == 1_000_000 // CANDIDATE_SHARE == 2500
    assert candidates_for(5_000_000) == 12_500
    built = ItemIndex(torch.randn(600, 16), "faiss")
    assert built.candidates == CANDIDATES and ItemIndex(torch.randn(600, 16), "faiss", candidates=7).candidates == 7
