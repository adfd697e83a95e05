"""The benchmark harness runs every model on one split and writes its tables."""

import json

from idream.bench import quality_markdown, run_quality, summarize, write_results


def test_quality_bench_on_synthetic(synthetic_dir, tmp_path):
    tiny = dict(text_model="hash:32", width=32, depth=1, heads=2, epochs=4, batch_size=64, lr=3e-3,
                T=100, history_len=5, intention_pool=2, w_grid=(0.0, 1.0), rho_grid=(1.0,))
    seen = []  # rows reported after each model: a stopped run keeps what it finished
    res = run_quality(str(synthetic_dir), [0, 1], train_overrides=tiny,
                      sasrec_overrides=dict(epochs=6, eval_every=2, max_len=12), log_fn=lambda s: None,
                      sasrec_dropouts=(0.1, 0.4), on_rows=lambda r: seen.append(len(r["rows"])))
    assert seen == sorted(set(seen)) and seen[-1] == len(res["rows"]) and len(seen) == 10
    assert {r["dropout"] for r in res["rows"] if r["model"] == "sasrec"} <= {0.1, 0.4}
    models = [s["model"] for s in summarize(res)]
    assert models == ["popularity", "textknn", "sasrec", "dreamrec", "idream", "idream+intention"]
    for s in summarize(res):
        assert s["runs"] == 2 and 0 <= s["NDCG@10"][0] <= 1
    # the planted rule is learnable: SASRec beats popularity on it
    by = {s["model"]: s for s in summarize(res)}
    assert by["sasrec"]["HR@10"][0] > by["popularity"]["HR@10"][0]
    md = quality_markdown(res)
    assert "SASRec" in md and "± " in md and res["commit"] in md and "[0.1, 0.4]" in md
    write_results(res, tmp_path, "q", md)
    assert json.loads((tmp_path / "q.json").read_text())["seeds"] == [0, 1]


def test_quality_bench_refuses_a_missing_gpu_before_training(synthetic_dir):
    import pytest
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(ValueError, match="no GPU"):
        run_quality(str(synthetic_dir), [0], models=("popularity",), device="cuda", log_fn=lambda s: None)
