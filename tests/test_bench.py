"""The benchmark harness runs every model on one split and writes its tables."""

import json

from benchmarks.quality import quality_markdown, run_quality, stopped_by, summarize
from benchmarks.results import write_results


def test_quality_bench_on_synthetic(synthetic_dir, tmp_path):
    tiny = dict(text_model="hash:32", width=32, depth=1, heads=2, epochs=4, lr=3e-3,
                T=100, history_len=5, intention_pool=2, w_grid=(0.0, 1.0), max_minutes=0.5,
                clock="cpu")
    seen = []  # rows reported after each model: a stopped run keeps what it finished
    res = run_quality(str(synthetic_dir), [0, 1], train_overrides=tiny,
                      sasrec_overrides=dict(epochs=6, eval_every=2, max_len=12), log_fn=lambda s: None,
                      on_rows=lambda r: seen.append(len(r["rows"])),
                      dreamrec_overrides=dict(epochs=2))
    assert seen == sorted(set(seen)) and seen[-1] == len(res["rows"]) and len(seen) == 12
    # SASRec gets iDream's budget unless told otherwise, and its overrides
    sas = [r["config"] for r in res["rows"] if r["model"] == "sasrec"]
    assert [(c["max_minutes"], c["clock"], c["max_len"], c["seed"]) for c in sas] == [
        (0.5, "cpu", 12, 0), (0.5, "cpu", 12, 1)]
    # DreamRec's own overrides go over the shared ones, for it alone
    assert {r["epochs"] for r in res["rows"] if r["model"] == "dreamrec"} == {2}
    assert {r["epochs"] for r in res["rows"] if r["model"] == "idream"} == {4}
    models = [s["model"] for s in summarize(res)]
    assert models == ["popularity", "textknn", "sasrec", "dreamrec", "idream", "textsearch", "idream+intention"]
    for s in summarize(res):
        assert s["runs"] == 2
    for name in ("popularity", "textknn"):  # no seed in them: the same numbers on every seed
        assert [s["NDCG@10"][1] for s in summarize(res) if s["model"] == name] == [0.0]
    # the planted rule is learnable: SASRec beats popularity on it
    by = {s["model"]: s for s in summarize(res)}
    assert by["sasrec"]["HR@10"][0] > by["popularity"]["HR@10"][0]
    md = quality_markdown(res)
    assert "SASRec" in md and "± " in md and res["commit"] in md and "0.5-minute budget" in md
    # 2 and 4 epochs cannot outlast a patience of 5: those rows are capped, and the table says so
    assert {r["stopped"] for r in res["rows"] if r["model"] in ("dreamrec", "idream")} == {"cap"}
    assert by["dreamrec"]["capped"] == 2 and by["popularity"]["capped"] == 0
    assert "(capped: 2 of 2)" in md
    write_results(res, tmp_path, "q", md)
    assert json.loads((tmp_path / "q.json").read_text())["seeds"] == [0, 1]


def test_quality_bench_refuses_a_missing_gpu_before_training(synthetic_dir):
    import pytest
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(ValueError, match="no GPU"):
        run_quality(str(synthetic_dir), [0], models=("popularity",), device="cuda", log_fn=lambda s: None)


def _row(model, seed, ndcg, valid=None):
    m = {k: ndcg for k in ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20")}
    r = {"model": model, "seed": seed, "metrics": m, "train_s": 1.0, "params": 3}
    if valid is not None:
        r["valid_NDCG@10"] = valid
    return r


def test_bench_table_rewrites_the_markdown_from_the_json_with_validation(tmp_path):
    import pytest

    from benchmarks.cli import main as bench_main
    res = {"dataset": "ml-100k", "split": "test", "seeds": [0, 1], "machine": "m", "commit": "abc",
           "complete": True,
           "rows": [_row("popularity", 0, 0.04), _row("popularity", 1, 0.04),
                    _row("sasrec", 0, 0.10, 0.12), _row("sasrec", 1, 0.12, 0.14)]}
    path = tmp_path / "bench-quality-ml-100k.json"
    path.write_text(json.dumps(res))
    assert bench_main(["table", str(path)]) == 0
    md = (tmp_path / "bench-quality-ml-100k.md").read_text()
    header = next(x for x in md.splitlines() if x.startswith("| model"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    rows = {x.split("|")[1].strip(): [c.strip() for c in x.strip("|").split("|")]
            for x in md.splitlines() if x.startswith("| ") and not x.startswith("| model")}
    v = cols.index("valid NDCG@10")
    assert rows["SASRec (ours)"][v] == "0.1300 ± 0.0141"  # mean and std of 0.12, 0.14
    assert rows["Popularity"][v] == "–" and len(rows["Popularity"]) == len(cols)
    assert "Partial" not in md
    path.write_text("{not json")
    with pytest.raises(SystemExit, match="cannot read"):
        bench_main(["table", str(path)])


def test_bench_merge_joins_runs_made_side_by_side_and_refuses_a_mismatch(tmp_path):
    import pytest

    from benchmarks.cli import main as bench_main
    base = {"dataset": "ml-100k", "split": "test", "machine": "m", "complete": True}
    a = {**base, "seeds": [0, 1], "commit": "abc", "command": "A",
         "rows": [_row("sasrec", 0, 0.10, 0.12), _row("sasrec", 1, 0.12, 0.14)]}
    b = {**base, "seeds": [2], "commit": "def", "command": "B", "rows": [_row("sasrec", 2, 0.20, 0.16)]}
    c = {**base, "seeds": [0], "commit": "abc", "command": "C", "rows": [_row("dreamrec", 0, 0.09, 0.1)]}
    paths = []
    for name, res in zip("abc", (a, b, c)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(res))
    out = tmp_path / "out"
    assert bench_main(["merge", *map(str, paths), "--out", str(out)]) == 0
    merged = json.loads((out / "bench-quality-ml-100k.json").read_text())
    assert merged["seeds"] == [0, 1, 2] and len(merged["rows"]) == 4 and merged["commit"] == "abc, def"
    md = (out / "bench-quality-ml-100k.md").read_text()
    sas = next(x for x in md.splitlines() if x.startswith("| SASRec"))
    assert "0.1400 ± 0.0200" in sas  # valid NDCG@10 of 0.12, 0.14, 0.16 across the two runs
    assert "A  and, side by side,  B" in md
    with pytest.raises(SystemExit, match="more than one run"):
        bench_main(["merge", str(paths[0]), str(paths[0]), "--out", str(out)])
    paths[1].write_text(json.dumps({**b, "dataset": "ml-1m"}))
    with pytest.raises(SystemExit, match="different dataset"):
        bench_main(["merge", str(paths[0]), str(paths[1]), "--out", str(out)])


def test_cold_start_protocol_reports_cold_and_warm_cases(synthetic_dir, tmp_path):
    tiny = dict(text_model="hash:32", width=32, depth=1, heads=2, epochs=2, lr=3e-3,
                T=100, history_len=5, intention_pool=2, w_grid=(0.0,), max_minutes=0.5)
    res = run_quality(str(synthetic_dir), [0], models=("popularity", "sasrec", "idream"), train_overrides=tiny,
                      sasrec_overrides=dict(epochs=2, max_len=12), log_fn=lambda s: None, cold_frac=0.25)
    assert res["cold_frac"] == 0.25
    for r in res["rows"]:
        assert r["cases_cold"] + r["cases_warm"] == 120 and r["cases_cold"] > 0
    pop = next(r for r in res["rows"] if r["model"] == "popularity")
    # a held-out item has no training interactions, so popularity puts it behind every warm item
    assert pop["metrics_cold"]["HR@10"] == 0.0 and pop["metrics_warm"]["HR@10"] > 0
    md = quality_markdown(res)
    assert "Cold-start protocol" in md and md.count(" / ") >= 3


def test_a_row_stopped_early_only_after_patience_epochs_without_gain():
    assert stopped_by(epochs_run=12, best_epoch=7, patience=5) == "early"
    assert stopped_by(epochs_run=12, best_epoch=8, patience=5) == "cap"  # still improving at the end
    assert stopped_by(epochs_run=3, best_epoch=3, patience=1) == "cap"


def test_epoch_bench_times_both_models_on_the_same_targets(synthetic_dir, tmp_path):
    from benchmarks.epoch import epoch_markdown, run_epoch_cost
    tiny = dict(text_model="hash:32", width=32, depth=1, heads=2, T=100, history_len=5, intention_pool=2,
                seq_batch_size=8)
    res = run_epoch_cost(str(synthetic_dir), tiny, dict(max_len=12, batch_size=16), steps=2, blocks=2,
                         log_fn=lambda s: None)
    i, s = res["rows"]["idream"], res["rows"]["sasrec"]
    # an epoch is every training target once for both, whatever their window lengths
    assert i["targets_per_epoch"] == s["targets_per_epoch"] > 0
    assert i["steps_per_epoch"] == -(-i["windows"] // 8) and s["steps_per_epoch"] == -(-s["windows"] // 16)
    assert i["windows"] > s["windows"]  # windows of 5 against 12 over the same sequences
    assert res["ratio"] > 0 and "costs" in epoch_markdown(res)
