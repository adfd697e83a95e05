"""A tiny model learns a planted rule; checkpoints round-trip; mismatches fail clearly.

"Learns" means, on the synthetic catalog where item i is always followed by item i + 1:
validation NDCG@10 well above the same model untrained and above popularity, and a training
objective that falls between the first and the last epoch."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from idream.evaluation.references import popularity_scorer
from idream.serving.checkpoint import CheckpointError, save_checkpoint
from idream.evaluation.new_item_choice import A_GRID, B_GRID
from idream.serving.recommender import load_checkpoint
from idream.data.datasets import load_dataset, test_cases
from idream.evaluation.evaluate import evaluate_recommender, rank_all
from idream.training.train import TrainConfig, build, train


def tiny_config(dataset, **kw) -> TrainConfig:
    base = dict(dataset=str(dataset), text_model="hash:32", width=32, depth=1, heads=2,
                epochs=20, seq_batch_size=8, encoder_depth=1, lr=3e-3, patience=20, T=100, history_len=5,
                intention_pool=2, w_grid=(0.0, 1.0), max_minutes=5.0)
    base.update(kw)
    return TrainConfig(**base)


def valid_ndcg(rec, split, seed: int = 0) -> float:
    return evaluate_recommender(rec, split.valid, steps=1, w=0.0, rho=0.0, seed=seed).metrics["NDCG@10"]


def floors(cfg: TrainConfig, cache_dir) -> dict:
    """Validation NDCG@10 of what training has to beat: the same model and item table before
    any step (same seed), and the training set's popularity ranking."""
    rec0, split, _, _ = build(cfg, cache_dir, progress=False)
    pop = popularity_scorer(split, rec0.dataset.n_items)
    return {"untrained": valid_ndcg(rec0, split, cfg.seed),
            "popularity": rank_all(lambda rows: pop(split.valid.histories[rows]), split.valid).metrics["NDCG@10"]}


def assert_learned(rec, split, cfg: TrainConfig, cache_dir, margin: float = 0.3) -> None:
    """Validation NDCG@10 beats the untrained model and popularity by `margin` (absolute), and
    the epoch-mean training objective (mse + ce_weight·ce, as logged) fell by 10% or more."""
    got, floor = valid_ndcg(rec, split, cfg.seed), floors(cfg, cache_dir)
    assert got > max(floor.values()) + margin, (got, floor)
    hist = rec.config["train_log"]["history"]
    assert len(hist) >= 2, hist

    def objective(row):
        return row["mse"] + cfg.ce_weight * row.get("ce", 0.0)

    assert objective(hist[-1]) < 0.9 * objective(hist[0]), [objective(r) for r in hist]
    if cfg.ce_weight > 0:  # the ranking term is the one the planted rule teaches
        assert hist[-1]["ce"] < 0.9 * hist[0]["ce"], [r["ce"] for r in hist]


@pytest.fixture(scope="module")
def trained(synthetic_dir, cache_dir):
    rec, split, E = train(tiny_config(synthetic_dir), cache_dir=cache_dir, progress=False,
                          log_fn=lambda s: None)
    return rec, split, E


def test_learns_planted_rule(trained, synthetic_dir, cache_dir):
    rec, split, _ = trained
    m = evaluate_recommender(rec, test_cases(rec.dataset, split.history_len), steps=1, w=0.0, rho=0.0).metrics
    chance = 10 / (rec.dataset.n_items - 11)
    assert m["HR@10"] > 0.9 > 2.5 * chance, m
    # the very next item is usually ranked first
    assert m["NDCG@10"] > 0.7, m
    assert_learned(rec, split, tiny_config(synthetic_dir), cache_dir, margin=0.5)
    # the best epoch is kept and recorded, and it is the model returned
    log = rec.config["train_log"]
    assert log["best_valid_NDCG@10"] == max(r["valid_NDCG@10"] for r in log["history"])
    assert valid_ndcg(rec, split) == pytest.approx(log["best_valid_NDCG@10"], abs=1e-5)
    assert log["best_valid_NDCG@10"] > log["history"][0]["valid_NDCG@10"] + 0.3


def test_recommend_follows_rule(trained):
    rec, _, _ = trained
    out = rec.recommend([100, 101, 102, "Synthetic Film 3", "synthetic film 4", 105], k=3)
    assert out.items[0]["item_id"] == 106
    assert not set(range(100, 106)) & {r["item_id"] for r in out.items}
    assert out.history == [0, 1, 2, 3, 4, 5]


def test_checkpoint_round_trip(trained, tmp_path):
    rec, split, E = trained
    save_checkpoint(rec, tmp_path / "ck", E)
    rec2 = load_checkpoint(tmp_path / "ck")
    a = rec.recommend([101, 102], intention="a scary horror movie", k=5, steps=3, seed=4)
    b = rec2.recommend([101, 102], intention="a scary horror movie", k=5, steps=3, seed=4)
    assert a.items == b.items
    assert np.allclose(a.oracle, b.oracle, atol=1e-5)
    assert rec2.config["guidance"] == json.loads(json.dumps(rec.config["guidance"]))


def _copy(trained, tmp_path):
    rec, _, E = trained
    path = tmp_path / "ck"
    save_checkpoint(rec, path, E)
    return path


def test_mismatched_embedding_dimension(trained, tmp_path):
    path = _copy(trained, tmp_path)
    from safetensors.torch import save_file
    save_file({"embeddings": torch.zeros(40, 16)}, str(path / "items.safetensors"))
    with pytest.raises(CheckpointError, match="retrain"):
        load_checkpoint(path)


def test_mismatched_config(trained, tmp_path):
    path = _copy(trained, tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"]["width"] = 64
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not fit config.json.*retrain"):
        load_checkpoint(path)
    cfg["model"]["width"] = 32
    cfg["model"]["mystery"] = 1
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown model config keys.*retrain"):
        load_checkpoint(path)
    cfg["model"].pop("mystery")
    cfg["text"]["dim"] = 384
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="text dimension 384"):
        load_checkpoint(path)


def test_missing_and_corrupt_files(trained, tmp_path):
    path = _copy(trained, tmp_path)
    (path / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(path)
    shutil.rmtree(path)
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        load_checkpoint(path)


def test_pure_text_variant_learns(synthetic_dir, cache_dir):
    """The paper's form: frozen text vectors, no residual, the x0 regression alone (no ranking
    term) still learns the rule; its loss is that regression, and it falls."""
    cfg = tiny_config(synthetic_dir, item_residual=False, epochs=10, lr=1e-2, ce_weight=0.0)
    rec, split, _ = train(cfg, cache_dir=cache_dir, progress=False, log_fn=lambda s: None)
    assert rec.table.residual is None
    assert all("ce" not in r for r in rec.config["train_log"]["history"])
    m = evaluate_recommender(rec, test_cases(rec.dataset, split.history_len), steps=1).metrics
    assert all(np.isfinite(v) for v in m.values())
    assert m["HR@10"] > 0.8, m
    assert_learned(rec, split, cfg, cache_dir)


def test_bf16_steps_run_in_bfloat16_and_still_learn(synthetic_dir, cache_dir):
    """precision bf16: the denoiser's products run in bfloat16 while its weights and the saved
    checkpoint stay fp32, serving stays fp32, and the planted rule is still learned."""
    seen = []

    def record(module, inputs, out):
        if isinstance(module, torch.nn.Linear) and module.training:
            seen.append(out.dtype)
    cfg = tiny_config(synthetic_dir, precision="bf16")
    with torch.nn.modules.module.register_module_forward_hook(record):
        rec, split, _ = train(cfg, cache_dir=cache_dir, progress=False, log_fn=lambda s: None)
    assert seen and set(seen) == {torch.bfloat16}, set(seen)
    assert rec.config["train"]["precision"] == "bf16"
    assert all(p.dtype == torch.float32 for p in [*rec.model.parameters(), *rec.table.parameters()])
    assert_learned(rec, split, cfg, cache_dir, margin=0.5)
    served = []
    with torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: served.append(o.dtype)
                                                             if isinstance(m, torch.nn.Linear) else None):
        rec.recommend([100, 101, 102], k=3)
    assert served and set(served) == {torch.float32}, set(served)


def test_sweep_rho_matches_single_requests(trained):
    rec, _, _ = trained
    hist = [101, 102, 103, 104, 105]
    sweep = rec.sweep_rho(hist, "a scary horror movie", rhos=[0, 0.5, 1], w=0.0, steps=3, k=5, seed=2)
    assert len(sweep["items"]) == 3 and sweep["oracles"].shape == (3, rec.transform.dim)
    for r, rows in zip([0, 0.5, 1], sweep["items"]):
        single = rec.recommend(hist, "a scary horror movie", rho=r, w=0.0, steps=3, k=5, seed=2)
        assert [x["item_id"] for x in rows] == [x["item_id"] for x in single.items]
    # ρ = 0 with an intention is the same as no intention at all
    plain = rec.recommend(hist, None, w=0.0, steps=3, k=5, seed=2)
    assert [x["item_id"] for x in sweep["items"][0]] == [x["item_id"] for x in plain.items]
    # cosines, one per ρ; more intention guidance moves the oracle towards the intention and
    # away from the history
    q_sim, h_sim = sweep["intention_similarity"], sweep["history_similarity"]
    assert len(q_sim) == len(h_sim) == 3 and all(-1 <= v <= 1 for v in q_sim + h_sim)
    assert q_sim[0] < q_sim[1] < q_sim[2] and h_sim[0] > h_sim[2], (q_sim, h_sim)
    assert q_sim[2] == pytest.approx(1.0, abs=1e-4)  # ρ = 1: the intention's direction alone


def test_new_item_is_recommendable_without_retraining(trained):
    rec, _, _ = trained
    n_before = rec.dataset.n_items
    new = rec.embed_new_item("Brand New Horror Night", "a scary horror movie full of ghosts",
                             genres=("Horror",))
    q = "Brand New Horror Night a scary horror movie full of ghosts"
    out = rec.recommend([], q, rho=1.0, k=rec.dataset.n_items + 1, extra_items=[new])
    ids = [r["item_id"] for r in out.items]
    assert "new:1" in ids and len(ids) == n_before + 1
    row = out.items[ids.index("new:1")]
    assert row["new"] and row["title"] == "Brand New Horror Night"
    # the shared catalog is untouched
    assert rec.dataset.n_items == n_before
    assert "new:1" not in [r["item_id"] for r in rec.recommend([], q, k=50).items]


def test_recommend_input_errors(trained):
    rec, _, _ = trained
    with pytest.raises(ValueError, match="history, an intention"):
        rec.recommend([], "   ")
    with pytest.raises(ValueError, match="closest titles"):
        rec.recommend(["Synthetic Flim 3"])
    for kw in ({"steps": 0}, {"steps": 10_000}, {"k": 0}, {"k": -3}, {"rho": float("nan")},
               {"w": float("inf")}, {"rho": 1e9}, {"w": -1e9}, {"rho": -3.0}, {"rho": 1.01}):
        with pytest.raises(ValueError):
            rec.recommend([101], "funny", **kw)
    # odd but harmless inputs give finite results
    for kw in ({"seed": -5}, {"seed": 2**70}, {"rho": 1.0}, {"intention": "ha\x00\x07 😀 \udcff" * 5000}):
        out = rec.recommend([101, 101, 102], **{"intention": "funny", **kw})
        assert all(np.isfinite(r["score"]) for r in out.items) and out.history == [1, 2]
        assert len(out.items) == 10 and not {101, 102} & {r["item_id"] for r in out.items}
    out = rec.recommend([101], k=10_000)
    assert len(out.items) == rec.dataset.n_items - 1


def test_dreamrec_id_variant_learns(synthetic_dir, cache_dir):
    """DreamRec's form: random, jointly trained ID vectors instead of text (a benchmark peer)."""
    from benchmarks.peers.dreamrec import dreamrec_config
    cfg = dreamrec_config(tiny_config(synthetic_dir), id_dim=16, **{k: getattr(tiny_config(synthetic_dir), k)
                                                                    for k in ("lr", "dropout", "history_len")})
    rec, split, _ = train(cfg, cache_dir=cache_dir, progress=False, log_fn=lambda s: None)
    assert rec.config["text"]["backend"] == "none:16" and rec.table.z.abs().sum() == 0
    m = evaluate_recommender(rec, test_cases(rec.dataset, split.history_len), steps=1, w=0.0, rho=0.0).metrics
    assert m["HR@10"] > 2 * 10 / 29, m
    assert_learned(rec, split, cfg, cache_dir)


# -- the causal history encoder (ModelConfig.encoder = "causal") -------------------------------

def test_sequence_windows_cover_every_pair_once():
    from idream.data.datasets import sequence_windows
    seqs = [np.arange(7), np.array([100, 101, 102]), np.array([5])]
    ins, outs = sequence_windows(seqs, 3)
    pairs = sorted((int(a), int(b)) for i, o in zip(ins, outs) for a, b in zip(i, o) if b >= 0)
    assert pairs == [(k, k + 1) for k in range(6)] + [(100, 101), (101, 102)]
    assert ((ins < 0) == (outs < 0)).all()  # an input wherever there is a next item, and only there


def test_future_targets_take_the_next_items_of_the_window():
    from idream.training.train import future_targets
    P = -1  # PAD
    out = torch.tensor([[P, 11, 12, 13], [21, 22, 23, 24]])
    r, c = torch.tensor([0, 0, 1]), torch.tensor([1, 3, 0])
    items, w = future_targets(out, r, c, k=3, decay=0.5)
    assert items[0].tolist() == [11, 12, 13] and items[2].tolist() == [21, 22, 23]
    assert torch.allclose(w[0], torch.tensor([4, 2, 1]) / 7.0)
    assert w[1].tolist() == [1.0, 0.0, 0.0] and items[1, 0] == 13  # the window ends after 13
    _, wa = future_targets(out, r, c, k=3, decay=0.5, alone=torch.tensor([True, False, False]))
    assert wa[0].tolist() == [1.0, 0.0, 0.0] and torch.equal(wa[2], w[2])  # an intention's row: its item only
    one, w1 = future_targets(out, r, c, k=1, decay=0.5)
    assert one[:, 0].tolist() == [11, 13, 21] and (w1 == 1).all()


def test_weighted_targets_are_cross_entropy_against_that_distribution():
    from idream.core.diffusion import training_loss
    torch.manual_seed(0)
    pred, items = torch.randn(3, 4), torch.randn(6, 4)
    y = torch.tensor([[1, 2], [5, 0], [3, 3]])
    w = torch.tensor([[0.75, 0.25], [1.0, 0.0], [0.5, 0.5]])
    dense = torch.zeros(3, 6).scatter_add_(1, y, w)  # the same distribution as a (B, N) matrix
    want = torch.nn.functional.cross_entropy(pred @ items.T / 2.0, dense)
    loss, parts = training_loss(pred, torch.zeros(3, 4), y, items, ce_weight=1.0, tau=2.0, target_weights=w)
    assert abs(parts["ce"] - want.item()) < 1e-5
    single, p1 = training_loss(pred, torch.zeros(3, 4), y[:, 0], items, 1.0, 2.0)
    _, pk = training_loss(pred, torch.zeros(3, 4), y, items, 1.0, 2.0, torch.tensor([[1.0, 0.0]] * 3))
    assert abs(p1["ce"] - pk["ce"]) < 1e-5  # one-hot weights: the next-item loss


def test_next_item_only_targets_train_and_bad_settings_fail_clearly(synthetic_dir, cache_dir):
    cfg = tiny_config(synthetic_dir, encoder_depth=1, seq_batch_size=8, epochs=10,
                      max_minutes=5.0, future_k=1)  # the default takes 5: both paths are trained
    rec, split, E = train(cfg, cache_dir=cache_dir, progress=False, log_fn=lambda s: None)
    m = evaluate_recommender(rec, test_cases(rec.dataset, split.history_len), steps=1, w=0.0, rho=0.0).metrics
    assert m["HR@10"] > 0.9, m
    assert_learned(rec, split, cfg, cache_dir)
    for bad in (dict(future_k=0), dict(future_k=2, future_decay=0.0)):
        with pytest.raises(ValueError, match="future_k|future_decay"):
            train(tiny_config(synthetic_dir, **bad), cache_dir=cache_dir,
                  progress=False, log_fn=lambda s: None)


def test_causal_all_positions_pass_matches_one_history_pass():
    """Training denoises every position at once; the state at a position must be the one a
    single request with that prefix would get (nothing leaks from later items)."""
    from idream.core.model import Denoiser, ModelConfig
    torch.manual_seed(0)
    m = Denoiser(ModelConfig(dim=8, width=16, heads=2, history_len=5, encoder="causal")).eval()
    torch.nn.init.normal_(m.final.linear.weight)  # zero-init output would hide any difference
    seq = torch.randn(2, 5, 8)
    valid = torch.tensor([[False, True, True, True, True], [True] * 5])
    rows, cols = torch.tensor([0, 0, 1, 1]), torch.tensor([2, 4, 1, 4])
    M = len(rows)
    x, t, q = torch.randn(M, 8), torch.randint(0, 100, (M,)), torch.randn(M, 8)
    yes, no = torch.ones(M, dtype=torch.bool), torch.zeros(M, dtype=torch.bool)
    with torch.no_grad():
        allpos = m.forward_sequence(x, t, seq, valid, rows, cols, yes, q, no)
        # later items changed: the earlier positions' predictions may not move
        seq2 = seq.clone()
        seq2[:, 3:] = torch.randn(2, 2, 8)
        moved = m.forward_sequence(x, t, seq2, valid, rows, cols, yes, q, no)
        last = m(x[[1, 3]], t[[1, 3]], seq, valid, yes[:2], q[[1, 3]], no[:2])
    assert torch.allclose(allpos[[0, 2]], moved[[0, 2]], atol=1e-5)
    assert not torch.allclose(allpos[[1, 3]], moved[[1, 3]], atol=1e-3)
    assert torch.allclose(allpos[[1, 3]], last, atol=1e-5)


def test_causal_encoder_learns_planted_rule_and_round_trips(synthetic_dir, cache_dir, tmp_path):
    cfg = tiny_config(synthetic_dir, encoder_depth=1, seq_batch_size=8, epochs=10,
                      max_minutes=5.0)
    rec, split, E = train(cfg, cache_dir=cache_dir, progress=False, log_fn=lambda s: None)
    m = evaluate_recommender(rec, test_cases(rec.dataset, split.history_len), steps=1, w=0.0, rho=0.0).metrics
    assert m["HR@10"] > 0.9 and m["NDCG@10"] > 0.7, m
    assert_learned(rec, split, cfg, cache_dir, margin=0.5)
    save_checkpoint(rec, tmp_path / "ck", E)
    rec2 = load_checkpoint(tmp_path / "ck")
    assert rec2.model.cfg.encoder == "causal"
    a = rec.recommend([101, 102], intention="a scary horror movie", k=5, steps=3, seed=4)
    b = rec2.recommend([101, 102], intention="a scary horror movie", k=5, steps=3, seed=4)
    assert a.items == b.items


def test_training_timesteps_move_the_asked_share_to_pure_noise():
    from idream.training.train import training_timesteps
    torch.manual_seed(0)
    t = training_timesteps(20_000, 100, 0.5)
    share = (t == 99).float().mean().item()
    assert 0.49 < share < 0.52  # 0.5 moved + 0.5 · 1/100 already there
    assert t.min() >= 0 and t.max() <= 99 and (t < 50).float().mean() > 0.2  # the rest stays uniform
    assert ((training_timesteps(20_000, 100, 0.0) == 99).float().mean() < 0.02)


def test_training_device_errors_are_clear():
    from idream.training.train import training_device
    with pytest.raises(ValueError, match="unknown device"):
        training_device("quantum")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no GPU"):
            training_device("cuda")
    assert training_device("cpu").type == "cpu"


SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "ml-100k" / "config.json"


def test_train_config_reads_the_shipped_config_back():
    """config.json's "train" gives back the settings it was written from; the command line
    stored beside them is not a setting."""
    d = json.loads(SHIPPED.read_text())["train"]
    cfg = TrainConfig.from_dict(d)
    assert "command" in d and cfg.history_len == d["history_len"] and cfg.w_grid == tuple(d["w_grid"])
    with pytest.raises(ValueError, match="unknown train config keys"):
        TrainConfig.from_dict({**d, "no_such_knob": 1})


def test_retired_knobs_load_at_the_value_the_code_has_and_are_refused_at_another():
    """An old config.json holds the knobs that left TrainConfig (results/experiments/
    retired-knobs.patch): at today's behaviour they are dropped, at another value refused."""
    from idream.training.train import RETIRED
    d = json.loads(SHIPPED.read_text())["train"]
    held = {k: v for k, v in RETIRED.items() if k in d}  # knobs newer than the checkpoint are absent
    assert held.items() <= d.items() and len(held) >= 6  # the shipped checkpoint: today's behaviour
    assert TrainConfig.from_dict(d) == TrainConfig.from_dict({k: v for k, v in d.items() if k not in RETIRED})
    assert TrainConfig.from_dict({**d, "window_stride": d["history_len"]}) == TrainConfig.from_dict(d)  # no overlap
    for key, other in [("ema", 0.995), ("residual_rank", 64), ("window_stride", 5), ("detach_target", False),
                       ("anneal_to_budget", False)]:
        with pytest.raises(ValueError, match=rf"retired train config keys {{'{key}'.*retired-knobs\.patch"):
            TrainConfig.from_dict({**d, key: other})
    for key, other, patch in [("guidance", "learned", "learned-guidance"),
                              ("encoder", "incontext", "incontext-encoder"),
                              ("denoiser", "adaln", "adaln-nullspace"), ("id_dims", 64, "adaln-nullspace")]:
        with pytest.raises(ValueError, match=rf"{key}.*{patch}\.patch"):
            TrainConfig.from_dict({**d, key: other})


def test_learning_rate_decays_within_a_binding_budget(synthetic_dir):
    """A budget that stops training early also ends the cosine decay there (a tiny budget fits
    the minimum of 2 epochs, not the 6 asked for)."""
    cfg = TrainConfig(dataset=str(synthetic_dir), text_model="hash:32", width=16, depth=1, heads=2,
                      epochs=6, T=50, history_len=5, intention_pool=2, w_grid=(0.0,),
                      max_minutes=1e-4)
    rec, _, _ = train(cfg, progress=False, log_fn=lambda s: None)
    log = rec.config["train_log"]
    assert log["epochs_run"] == 1  # the budget stopped it
    assert log["lr_decay_epochs"] == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_training_on_gpu_gives_a_cpu_checkpoint(synthetic_dir, tmp_path):
    from idream.training.train import TrainConfig, train
    cfg = TrainConfig(dataset=str(synthetic_dir), text_model="hash:32", width=32, depth=1, heads=2,
                      epochs=2, T=100, history_len=5, intention_pool=2, w_grid=(0.0,),
                      device="cuda")
    rec, split, _ = train(cfg, progress=False, log_fn=lambda s: None)
    assert all(p.device.type == "cpu" for p in rec.model.parameters())
    assert rec.config["train_log"]["best_valid_NDCG@10"] > 0
    out = rec.recommend([100, 101], k=5)  # and it answers on the CPU
    assert len(out.items) == 5 and not {100, 101} & {r["item_id"] for r in out.items}


def test_training_and_every_choice_are_blind_to_the_test_targets(tmp_path, cache_dir):
    """Replace every user's last (test) item by another item: the trained weights, the kept
    epoch, the validation curve and the chosen guidance must come out bit for bit the same."""
    import pandas as pd

    from conftest import make_synthetic

    a = make_synthetic(tmp_path / "a", n_users=60)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    inter = pd.read_csv(b / "interactions.csv")
    last = inter.groupby("user_id")["timestamp"].idxmax()
    for row in last:  # an item the user never had, so no repeat is dropped and nothing shifts
        had = set(inter.loc[inter.user_id == inter.at[row, "user_id"], "item_id"])
        inter.at[row, "item_id"] = next(i for i in range(100, 140) if i not in had)
    inter.to_csv(b / "interactions.csv", index=False)
    ta, tb = test_cases(load_dataset(str(a)), 5), test_cases(load_dataset(str(b)), 5)
    assert (ta.targets != tb.targets).all()  # the test targets really differ

    def run(folder):
        cfg = tiny_config(folder, epochs=3, seq_batch_size=16)
        rec, _, _ = train(cfg, cache_dir=cache_dir, progress=False, log_fn=lambda s: None)
        log = {k: v for k, v in rec.config["train_log"].items() if k != "minutes"}
        for r in log["history"]:
            r.pop("minutes"), r.pop("steps_s")  # clock readings
        return rec, log

    ra, la = run(a)
    rb, lb = run(b)
    assert la == lb and ra.config["guidance"] == rb.config["guidance"]
    for (k, x), (_, y) in zip(ra.model.state_dict().items(), rb.model.state_dict().items()):
        assert torch.equal(x, y), k
    assert torch.equal(ra.item_vectors(), rb.item_vectors())


def test_cold_items_keep_no_residual_and_are_recorded(synthetic_dir, cache_dir):
    """Held-out items are not even negatives of the ranking loss: their residual stays exactly
    zero (as an item added after training), while the other items learn one."""
    cfg = tiny_config(synthetic_dir, epochs=2, cold_frac=0.25, cold_seed=1)
    rec, split, _ = train(cfg, cache_dir=cache_dir, progress=False, log_fn=lambda s: None)
    cold = rec.config["data"]["cold_items"]
    assert len(cold) == 10
    r = rec.table.residual.detach()
    assert torch.count_nonzero(r[cold]) == 0
    warm = sorted(set(range(40)) - set(cold))
    assert (r[warm].norm(dim=1) > 0).all()
    assert not set(cold) & {int(i) for s in split.train_sequences for i in s}
    # how residual-free items score is chosen on validation and applies to the cold columns only
    rule = rec.new_item_rule
    assert rule.a in A_GRID and rule.b in B_GRID and rule.chosen_on.startswith("validation")
    h = split.valid.histories[:16]
    x0 = rec.oracle(h, None, steps=1, w=0.0, rho=0.0, seed=0)
    plain, ruled = rec.scores(x0), rec.scores(x0, h)
    assert torch.equal(plain[:, warm], ruled[:, warm]) and (ruled[:, cold] >= plain[:, cold]).all()


def test_retired_model_forms_are_refused_with_their_patch():
    from idream.core.model import Denoiser, ModelConfig
    with pytest.raises(ValueError, match="incontext-encoder.patch"):  # the paper's in-context form
        Denoiser(ModelConfig(dim=8, width=16, heads=2, encoder="incontext"))
    for form in ({"denoiser": "adaln"}, {"id_dims": 8}):  # did not win on validation
        with pytest.raises(ValueError, match="adaln-nullspace.patch"):
            ModelConfig.from_dict({**ModelConfig(dim=8, width=16, heads=2).to_dict(), **form})
    off = {**ModelConfig(dim=8, width=16, heads=2).to_dict(), "denoiser": "tokens", "id_dims": 0}
    assert ModelConfig.from_dict(off) == ModelConfig(dim=8, width=16, heads=2)  # as written last version
