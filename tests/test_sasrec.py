"""SASRec, the peer in the benchmarks: trained on every pair, its dropout chosen on validation."""

import numpy as np

from idream.data import chronological_split, load_dataset
from idream.sasrec import SASRecConfig, evaluate_sasrec, train_sasrec, tune_sasrec


def _split(synthetic_dir):
    ds = load_dataset(str(synthetic_dir))
    return ds, chronological_split(ds, 10)


def test_dropout_is_chosen_on_validation(synthetic_dir):
    ds, split = _split(synthetic_dir)
    cfg = SASRecConfig(epochs=4, eval_every=2, max_len=12, hidden=32)
    model, info = tune_sasrec(split, ds.n_items, cfg, dropouts=(0.0, 0.9), log_fn=lambda s: None)
    grid = info["dropout_grid"]
    assert set(grid) == {"0.0", "0.9"} and grid["0.0"] != grid["0.9"]
    assert model.cfg.dropout == float(max(grid, key=grid.get))
    # the kept model is the one whose validation score was recorded
    val = evaluate_sasrec(model, split, "valid").metrics["NDCG@10"]
    assert np.isclose(val, max(grid.values()), atol=1e-5)


def test_time_budget_stops_training_after_one_epoch(synthetic_dir):
    ds, split = _split(synthetic_dir)
    cfg = SASRecConfig(epochs=50, eval_every=5, max_len=12, hidden=16, max_minutes=1e-6)
    model, info = train_sasrec(split, ds.n_items, cfg, log_fn=lambda s: None)
    assert info["epochs_run"] == 1 and info["best_valid_NDCG@10"] >= 0
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_training_sees_pairs_older_than_the_window(synthetic_dir):
    """Every (item, next) pair is a target, not only those of each user's last max_len items."""
    ds, split = _split(synthetic_dir)
    assert sum(len(s) > 4 for s in split.train_sequences) > 0  # some sequences outgrow the window
    cfg = SASRecConfig(epochs=2, eval_every=2, max_len=3, hidden=16)
    _, info = train_sasrec(split, ds.n_items, cfg, log_fn=lambda s: None)
    assert info["targets_per_epoch"] == sum(max(len(s) - 1, 0) for s in split.train_sequences)
