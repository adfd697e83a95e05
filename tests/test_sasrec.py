"""SASRec, the peer in the benchmarks: padding is masked, every prefix trains, it learns, and it
gets the budget-fitted learning-rate decay iDream gets."""

import numpy as np
import pytest
import torch

from idream.evaluation.references import popularity_scorer
from idream.data.datasets import chronological_split, load_dataset
from idream.evaluation.evaluate import rank_all
from benchmarks.peers.sasrec import Prefixes, SASRec, SASRecConfig, evaluate_sasrec, train_sasrec


def _split(synthetic_dir):
    ds = load_dataset(str(synthetic_dir))
    return ds, chronological_split(ds, 10)


def test_padding_is_masked_as_keys():
    """What sits in the padded places (their position vectors) cannot change a real position's
    output, and the padded rows stay finite."""
    torch.manual_seed(0)
    cfg = SASRecConfig(max_len=6, hidden=16, heads=2, depth=2, dropout=0.0)
    model = SASRec(20, cfg).eval()
    seq = torch.tensor([[20, 20, 20, 3, 7, 11], [1, 2, 3, 4, 5, 6]])  # 20 = pad
    with torch.no_grad():
        before = model(seq)
        model.pos.weight[:3] += torch.randn(3, 16)  # only the first row's padded places use these keys
        after = model(seq)
    assert torch.isfinite(before).all()
    assert torch.allclose(before[0, 3:], after[0, 3:], atol=1e-6)
    assert not torch.allclose(before[1], after[1], atol=1e-3)  # the change itself is visible where real

    # the check has teeth: with the causal mask alone, the padded keys leak into real positions
    def causal_only(s):
        S = s.shape[1]
        m = torch.triu(torch.ones(S, S, dtype=torch.bool), 1)
        return m[None].expand(s.shape[0] * cfg.heads, S, S)
    model.attention_mask = causal_only
    with torch.no_grad():
        leaked = model(seq)
        model.pos.weight[:3] += torch.randn(3, 16)  # random: a constant shift would vanish in LayerNorm
        again = model(seq)
    assert not torch.allclose(leaked[0, 3:], again[0, 3:], atol=1e-4)


def test_prefixes_are_every_pair_with_its_full_context():
    p = Prefixes([np.array([1, 2, 3]), np.array([4]), np.array([5, 6])], L=2, pad=9)
    inp, tgt = p.batch(torch.arange(len(p)))
    assert tgt.tolist() == [2, 3, 6]
    assert inp.tolist() == [[9, 1], [1, 2], [9, 5]]
    long = Prefixes([np.arange(10)], L=4, pad=99)
    inp, tgt = long.batch(torch.tensor([8]))  # target 9: the four items before it
    assert inp.tolist() == [[5, 6, 7, 8]] and tgt.tolist() == [9]


@pytest.mark.parametrize("train_on", ["prefixes", "windows"])
def test_learns_the_planted_rule(synthetic_dir, train_on):
    """Item i is always followed by i + 1: a trained SASRec ranks the next item far above chance,
    popularity and its own untrained start."""
    ds, split = _split(synthetic_dir)
    cfg = SASRecConfig(epochs=15, eval_every=5, max_len=12, hidden=32, lr=3e-3, dropout=0.1,
                       train_on=train_on, batch_size=32)
    untrained = evaluate_sasrec(SASRec(ds.n_items, cfg), split.valid).metrics["NDCG@10"]
    pop = popularity_scorer(split, ds.n_items)
    popular = rank_all(lambda r: pop(split.valid.histories[r]), split.valid).metrics["NDCG@10"]
    model, info = train_sasrec(split, ds.n_items, cfg, log_fn=lambda s: None)
    val = evaluate_sasrec(model, split.valid).metrics["NDCG@10"]
    assert val > max(untrained, popular) + 0.4, (val, untrained, popular)
    assert val == pytest.approx(info["best_valid_NDCG@10"])  # the kept epoch is the one returned
    assert info["history"][-1]["loss"] < 0.5 * np.log(ds.n_items)  # far below a uniform guess


def test_every_prefix_is_a_target_once_per_epoch(synthetic_dir):
    ds, split = _split(synthetic_dir)
    _, info = train_sasrec(split, ds.n_items, SASRecConfig(epochs=1, max_len=3, hidden=16),
                           log_fn=lambda s: None)
    assert info["targets_per_epoch"] == sum(max(len(s) - 1, 0) for s in split.train_sequences)


def test_time_budget_stops_and_fits_the_learning_rate_decay(synthetic_dir):
    ds, split = _split(synthetic_dir)
    cfg = SASRecConfig(epochs=50, eval_every=5, max_len=12, hidden=16, max_minutes=1e-6)
    model, info = train_sasrec(split, ds.n_items, cfg, log_fn=lambda s: None)
    assert info["epochs_run"] == 1 and len(info["history"]) == 1  # evaluated once, at the stop
    assert info["lr_decay_epochs"] == 2  # the decay was refitted to what the budget allows
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_unknown_training_form_is_refused():
    with pytest.raises(ValueError, match="train_on"):
        SASRecConfig(train_on="everything")


def test_a_cpu_budget_is_not_eaten_by_waiting():
    """The "cpu" clock counts this process's work only: time spent waiting for a shared core (here:
    sleeping) does not use up a budget on it, while it does on the wall clock."""
    import time

    from idream.training.schedule import budget_clock

    cpu, wall = budget_clock("cpu"), budget_clock("wall")
    c0, w0 = cpu(), wall()
    time.sleep(0.3)
    assert wall() - w0 >= 0.3 and cpu() - c0 < 0.1
    with pytest.raises(ValueError, match="wall or cpu"):
        budget_clock("gpu")
