"""The text benchmark: its pieces against hand-computed cases, and one small run end to end."""

import json

import numpy as np
import pytest
import torch

from benchmarks import text as bt


def test_zscore_per_row_keeps_masked_entries():
    s = torch.tensor([[1.0, 2.0, 3.0, float("-inf")], [5.0, 5.0, 5.0, 5.0]])
    z = bt.zscore(s)
    sd = np.std([1.0, 2.0, 3.0])  # population spread of the finite entries
    assert torch.allclose(z[0, :3], torch.tensor([-1 / sd, 0.0, 1 / sd], dtype=torch.float32), atol=1e-6)
    assert z[0, 3] == float("-inf")
    assert torch.equal(z[1], torch.zeros(4))  # no spread: every entry at the mean


def test_overlap_and_precision_by_hand():
    assert bt.overlap([np.array([1, 2, 3]), np.array([2, 3, 4])]) == pytest.approx(2 / 4)
    assert bt.overlap([np.array([1, 2]), np.array([1, 2]), np.array([3, 4])]) == pytest.approx(1 / 3)
    ok = np.array([[True, False, True, False, False]])  # one intention over 5 items
    tops = np.array([[[0, 1], [2, 0]]])  # two users' top-2
    s = bt.summarise(tops, ok)
    assert s["precision"] == pytest.approx(3 / 4) and s["overlap"] == pytest.approx(1 / 3)


def test_matches_needs_the_genre_and_the_named_decade():
    from idream.data.datasets import load_dataset
    ds = load_dataset("ml-100k")
    ok = bt.matches(ds, {"genres": ["Western"], "decade": 1950})
    years = ds.items["year"].to_numpy(dtype="float64", na_value=np.nan)
    west = np.array(["Western" in g for g in ds.items["genres"]])
    assert ok.sum() == (west & (years >= 1950) & (years < 1960)).sum() > 0
    assert bt.matches(ds, {"genres": ["Western"], "decade": None}).sum() == west.sum()


def test_small_run_end_to_end(checkpoint, tmp_path):
    """Every method and slider position is reported for both halves; text search's precision is
    what an independent cosine ranking gives; --set-slider writes the top chosen on dev."""
    import shutil
    ck = tmp_path / "ck"
    shutil.copytree(checkpoint, ck)
    bt.main(["--checkpoint", str(ck), "--users", "3", "--out", str(tmp_path), "--threads", "1",
             "--set-slider"])
    r = json.loads((tmp_path / "bench-text-ml-100k.json").read_text())
    md = (tmp_path / "bench-text-ml-100k.md").read_text()
    # the checkpoint is text-steered: ρ is measured over 0..1, its default included
    assert r["rhos"][0] == 0.0 and r["rhos"][-1] == 1.0 and len(r["rhos"]) >= 11
    assert r["default_rho"] in r["rhos"] and r["guidance"]["mode"] == "turn"
    assert set(r["halves"]) == {"dev", "test"} and "late fusion" in md and "| 1" in md
    # the slider's top: the best dev precision at or above the default, now in the checkpoint
    dev = {d["rho"]: d["precision"] for d in r["halves"]["dev"]["dial"] if d["rho"] >= r["default_rho"]}
    assert dev[r["slider_top"]] == max(dev.values())
    from idream.serving.recommender import Recommender
    set_ = Recommender.load(ck)
    assert set_.rho_range == (0.0, r["slider_top"]) == tuple(r["slider"])
    pos = set_.rho_positions()
    assert pos[0] == 0.0 and pos[-1] == r["slider_top"] and np.allclose(np.diff(pos), 0.1)
    for h in r["halves"].values():
        assert [d["rho"] for d in h["dial"]] == r["rhos"]
        # ρ = 1 is the intention's text direction alone: cos(oracle, direction) = 1
        assert h["dial"][-1]["cos_oracle_intention"] > 0.999
        # ρ = 0 ignores the intention: the dial's first position is the unguided ranking
        assert h["dial"][0]["per_intention"] == h["unguided"]["per_intention"]
    assert str(r["lambda"]) in r["halves"]["dev"]["late_fusion"]
    assert set(r["lift"]) == {"valid", "test"}

    # text search, recomputed for the first dev intention without the harness
    from benchmarks import free_intentions
    from idream.data.catalog import item_embeddings
    from idream.data.datasets import PAD, test_cases
    from idream.serving.recommender import Recommender
    rec = Recommender.load(checkpoint)
    first = free_intentions.load("dev")[0]
    e = rec.backend.encode([first["text"]])[0]
    E = item_embeddings(rec.dataset, rec.backend, "template", None, progress=False)
    cos = E @ e / np.linalg.norm(E, axis=1) / np.linalg.norm(e)
    cases = test_cases(rec.dataset, rec.history_len)
    users = np.random.default_rng(0).choice(len(cases), 3, replace=False)
    ok = bt.matches(rec.dataset, first)
    precs = []
    for h in cases.histories[users]:
        c = cos.copy()
        c[h[h != PAD]] = -np.inf
        precs.append(ok[np.argsort(-c, kind="stable")[:10]].mean())
    assert r["halves"]["dev"]["text_search"]["per_intention"][0] == pytest.approx(np.mean(precs), abs=1e-3)
