"""Figure builders and the projection cache, on small synthetic arrays (no model, no UMAP fit)."""

import numpy as np
import pytest

from demo import figures, projection
from demo.figures import Marks

N, D = 60, 8
GENRES = [("Comedy",), ("Drama", "Romance"), ("Horror",), ()]


@pytest.fixture()
def catalog():
    rng = np.random.default_rng(0)
    coords = {s: rng.normal(size=(N, 2)).astype(np.float32) for s in figures.SPACES}
    titles = [f"Film {i} ({1950 + i})" for i in range(N)]
    genres = [GENRES[i % len(GENRES)] for i in range(N)]
    return coords, titles, genres


def _marks(rng=np.random.default_rng(1)) -> Marks:
    pt = lambda n: {s: rng.normal(size=(n, 2)) for s in figures.SPACES}  # noqa: E731
    oracle = pt(1)
    path = {s: np.concatenate([rng.normal(size=(4, 2)), oracle[s]]) for s in figures.SPACES}
    return Marks(history=[0, 1, 2], top=[5, 7, 9], intention=pt(1), oracle=oracle, path=path,
                 path_steps=[999, 749, 499, 250, 0], new_items=pt(2), new_titles=["New A", "New B"],
                 new_ranks=[None, 2])


def _by_role(fig, role):
    return {t.meta["space"]: t for t in fig.data if (t.meta or {}).get("role") == role}


def test_embedding_figure_has_both_panels_and_every_mark(catalog):
    coords, titles, genres = catalog
    marks = _marks()
    fig = figures.embedding_figure(coords, titles, genres, marks, subtitle="placed by k-NN")
    assert [a.text for a in fig.layout.annotations] == [figures.PANEL_TITLES[s] for s in figures.SPACES]
    assert "placed by k-NN" in fig.layout.title.text
    for role in ("catalog", "history", "top-K", "intention", "oracle", "denoising path", "new items"):
        traces = [t for t in fig.data if (t.meta or {}).get("role") == role]
        assert {t.meta["space"] for t in traces} == set(figures.SPACES), role
        panels = {t.meta["space"]: t.xaxis for t in traces}
        assert panels == {"raw": "x", "whitened": "x2"}, role
        assert sum(bool(t.showlegend) for t in traces) == len(traces) // 2  # one legend entry per pair
    for space in figures.SPACES:
        catalog_points = sum(len(t.x) for t in fig.data if t.meta == {"space": space, "role": "catalog"})
        assert catalog_points == N
        oracle, path = _by_role(fig, "oracle")[space], _by_role(fig, "denoising path")[space]
        assert np.allclose([oracle.x[0], oracle.y[0]], marks.oracle[space][0])
        assert len(path.x) == 5 and np.allclose([path.x[-1], path.y[-1]], marks.oracle[space][0])
        hist = _by_role(fig, "history")[space]
        assert np.allclose(hist.x, np.round(coords[space][[0, 1, 2], 0], 3))
        assert list(_by_role(fig, "top-K")[space].texttemplate) == ["1", "2", "3"]


def test_embedding_figure_without_marks_is_just_the_catalog(catalog):
    fig = figures.embedding_figure(*catalog)
    assert {t.meta["role"] for t in fig.data} == {"catalog"}
    assert fig.to_json()  # serialisable for gr.Plot


def _row(item_id, rank, new=False):
    return {"rank": rank, "item_id": item_id, "title": f"Film {item_id}", "year": 1990, "genres": [],
            "score": 1.0 / rank, "new": new}


def test_sweep_figure_ranks_every_item_that_enters_the_top_k():
    sweep = {"rho": [0.0, 1.0, 2.0],
             "items": [[_row(1, 1), _row(2, 2)], [_row(2, 1), _row(3, 2)], [_row("new:1", 1, True), _row(2, 2)]],
             "intention_similarity": [0.1, 0.3, 0.5], "history_similarity": [0.4, 0.3, 0.2]}
    fig = figures.sweep_figure(sweep, k=2).figure()  # plotly validates what is sent
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 1
    h = heat[0]
    assert list(h.x) == ["0", "1", "2"] and len(h.y) == 4  # items 1, 2, 3 and the new one
    z = dict(zip(h.y, h.z))
    assert list(z["Film 2 (1990)"]) == [2, 1, 2] and list(z["Film 1 (1990)"]) == [1, None, None]
    assert "Film new:1 (1990) [new]" in z
    lines = {t.name: t for t in fig.data if t.type == "scatter"}
    assert list(lines["cos(oracle, intention)"].y) == [0.1, 0.3, 0.5]
    assert "cos(oracle, mean history)" in lines


def test_sweep_figure_without_history_draws_only_the_intention_curve():
    sweep = {"rho": [0.0, 1.0], "items": [[_row(1, 1)], [_row(1, 1)]],
             "intention_similarity": [0.2, 0.4], "history_similarity": [None, None]}
    names = [t.name for t in figures.sweep_figure(sweep, k=1).figure().data if t.type == "scatter"]
    assert names == ["cos(oracle, intention)"]


def test_message_figure_says_why():
    fig = figures.message_figure("type an intention")
    assert fig.layout.annotations[0].text == "type an intention"


def test_knn_placement_lands_on_the_nearest_items(catalog):
    coords, _, _ = catalog
    rng = np.random.default_rng(2)
    vectors = {s: rng.normal(size=(N, D)).astype(np.float32) for s in figures.SPACES}
    proj = projection.Projection(vectors, coords)
    assert proj.ready and "NN average" in proj.method
    placed = proj.place("raw", vectors["raw"][[3, 17]])
    assert placed.shape == (2, 2)
    assert np.allclose(placed, coords["raw"][[3, 17]], atol=0.05)
    assert proj.place("whitened", np.zeros((0, D))).shape == (0, 2)


def test_coordinates_round_trip_without_pickle(tmp_path, catalog):
    coords, _, _ = catalog
    path = projection.save_coords(tmp_path / projection.FILE, coords, "abc123")
    back, why = projection.load_coords(path, "abc123")
    assert why == "ok" and all(np.array_equal(back[s], coords[s]) for s in figures.SPACES)
    assert projection.load_coords(path, "other")[0] is None
    assert projection.load_coords(path, "abc123", dict(projection.PARAMS, n_neighbors=5))[0] is None
    (tmp_path / "bad.safetensors").write_bytes(b"not a tensor file")
    assert projection.load_coords(tmp_path / "bad.safetensors", "abc123")[0] is None
    assert projection.load_coords(tmp_path / "absent.safetensors", "abc123") == (None, "absent")
