"""The peers' tuning script: its grids, one run of each peer, and its table."""

from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tune():
    from conftest import load_script
    return load_script(ROOT / "scripts" / "tune_peer.py")


def test_grids_have_as_many_settings_as_idreams_recorded_tuning(tune):
    recorded = sum(1 for f in ("tuning-runs.jsonl", "tuning.jsonl")
                   for line in (ROOT / "results" / f).read_text().splitlines() if line.strip())
    for model in ("sasrec", "dreamrec"):
        cfgs = tune.configs(model, 0, 4.0, "cpu")
        assert len(cfgs) >= recorded, (model, len(cfgs), recorded)
        assert len({repr(c) for c in cfgs}) == len(cfgs)  # no setting twice
        assert all(c.clock == "cpu" and c.max_minutes == 4.0 for c in cfgs)
    assert all(c.text_model == f"none:{c.id_dim}" and c.p_intention == 0
               for c in tune.configs("dreamrec", 0, 4.0, "cpu"))


def test_grid_covers_every_combination(tune):
    from benchmarks.peers.sasrec import SASRecConfig
    cfgs = tune.grid_configs(SASRecConfig(), {"lr": [1e-3, 3e-3], "hidden": [64, 128], "max_len": [20, 50, 100]})
    assert len(cfgs) == 12 and len({(c.lr, c.hidden, c.max_len) for c in cfgs}) == 12


@pytest.mark.parametrize("model", ["sasrec", "dreamrec"])
def test_one_run_of_each_peer_and_its_table(tune, model, synthetic_dir):
    cfg = tune.configs(model, 0, 0.05, "cpu")[0]
    small = dict(max_len=12, hidden=16, epochs=2) if model == "sasrec" else dict(
        width=32, depth=1, heads=2, epochs=2, T=100, history_len=5, id_dim=16)
    res = tune.train_one(model, replace(cfg, **small), str(synthetic_dir))
    assert 0 < res["best_valid_NDCG@10"] == pytest.approx(max(res["curve"]), abs=1e-5)
    row = {"max_minutes": 0.05, "commit": "abc", "machine": "m", "minutes": 0.1, "config":
           {**{k: getattr(cfg, k) for k in tune.GRIDS[model]}, "seed": 0, "clock": "cpu"}, **res}
    md = tune.table(model, [row])
    assert f"| {res['best_valid_NDCG@10']:.4f} |" in md and "Runs: 1 of 48" in md


def test_promotion_takes_the_best_short_runs_and_the_choice_the_longest_budget(tune):
    def row(lr, minutes, ndcg):
        return {"max_minutes": minutes, "best_valid_NDCG@10": ndcg,
                "config": {"lr": lr, "dropout": 0.1, "id_dim": 64, "history_len": 10, "ce_weight": 10.0}}
    short = [row(1e-3, 1, 0.05), row(3e-3, 1, 0.07), row(5e-4, 1, 0.06)]
    assert [c["lr"] for c in tune.promoted(short, 2, 1)] == [3e-3, 5e-4]
    assert tune.promoted(short, 2, 4) == []
    # a short run that scored higher does not win over the runs at the longest budget
    long = [row(3e-3, 4, 0.08), row(5e-4, 4, 0.09)]
    assert tune.best(short + long)["config"]["lr"] == 5e-4
    assert tune.best(short + [row(1e-3, 4, 0.01)])["config"]["lr"] == 1e-3
    assert tune.best([]) is None


def test_peers_run_with_the_setting_their_tuning_chose(tune):
    from benchmarks.peers.sasrec import SASRecConfig
    from benchmarks.peers.dreamrec import TUNED as DREAMREC_TUNED
    chosen = tune.best(tune.rows("sasrec"))["config"]
    assert {k: getattr(SASRecConfig(), k) for k in tune.GRIDS["sasrec"]} == {k: chosen[k] for k in tune.GRIDS["sasrec"]}
    chosen = tune.best(tune.rows("dreamrec"))["config"]
    assert DREAMREC_TUNED == {k: chosen[k] for k in tune.GRIDS["dreamrec"]}
