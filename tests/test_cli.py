"""The command line end to end on a tiny synthetic config (real subprocesses)."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from idream.ranking import metrics_from_ranks


def run(*args, ok=True, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    p = subprocess.run([sys.executable, "-m", "idream", *args], capture_output=True, text=True,
                       env=env, timeout=300)
    if ok:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.fixture(scope="module")
def ckpt(synthetic_dir, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "ck"
    p = run("train", "--dataset", str(synthetic_dir), "--out", str(out), "--text-model", "hash:32",
            "--width", "32", "--depth", "1", "--heads", "2", "--epochs", "12",
            "--lr", "0.003", "--T", "100", "--history-len", "5", "--intention-pool", "2",
            "--cache-dir", str(cache_dir), "--quiet")
    assert "valid_NDCG@10" in p.stderr  # per-epoch validation is reported
    return out


def test_train_writes_checkpoint(ckpt):
    for f in ("model.safetensors", "transform.safetensors", "items.safetensors", "config.json",
              "metrics.json", "README.md"):
        assert (ckpt / f).exists(), f
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["text"]["backend"] == "hash:32" and cfg["model"]["history_len"] == 5
    metrics = json.loads((ckpt / "metrics.json").read_text())
    models = {e["model"] for e in metrics["results"].values()}
    assert models == {"popularity", "textknn", "idream"}
    # every standard row on validation (what the shipping bars read) and on test (to report)
    keys = {k.split("/", 1)[1] for k in metrics["results"]}
    assert {f"{s}/{k}" for s in ("valid", "test") for k in keys} == set(metrics["results"])
    card = (ckpt / "README.md").read_text()
    assert "NDCG@10" in card and "python -m idream train" in card


def test_evaluate_json_and_dump(ckpt, tmp_path):
    dump = tmp_path / "rank.csv"
    p = run("evaluate", "--checkpoint", str(ckpt), "--split", "test", "--steps", "1,4", "--json",
            "--dump-rankings", str(dump), "--seed", "3")
    res = json.loads(p.stdout)
    assert [r["steps"] for r in res["results"]] == [1, 4]
    for r in res["results"]:
        assert set(r["metrics"]) == {"HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20"}
    # recompute the metrics independently from the dumped top-50 lists
    with open(tmp_path / "rank.steps1.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == res["results"][0]["cases"] == 120
    ranks = []
    for row in rows:
        top = row["top_item_ids"].split()
        assert len(top) == min(50, 40 - 11)
        ranks.append(top.index(row["target_item_id"]) if row["target_item_id"] in top else 999)
    mine = metrics_from_ranks(np.array(ranks))
    for k, v in res["results"][0]["metrics"].items():
        assert mine[k] == pytest.approx(v, abs=1e-4)


def test_evaluate_leaves_the_checkpoint_alone_unless_asked(ckpt):
    files = {f.name: f.read_bytes() for f in ckpt.iterdir() if f.is_file()}
    run("evaluate", "--checkpoint", str(ckpt), "--split", "valid", "--steps", "2", "--json")
    assert {f.name: f.read_bytes() for f in ckpt.iterdir() if f.is_file()} == files
    run("evaluate", "--checkpoint", str(ckpt), "--split", "valid", "--steps", "2", "--json", "--save")
    metrics = json.loads((ckpt / "metrics.json").read_text())
    assert any(e["split"] == "valid" and e.get("steps") == 2 for e in metrics["results"].values())
    assert "--save" in (ckpt / "README.md").read_text()  # the card names the command that wrote a row
    from idream.evaluation.card import write_model_card

    kept = {k: e for k, e in metrics["results"].items() if e["model"] != "popularity"}
    (ckpt / "metrics.json").write_text(json.dumps(dict(metrics, results=kept)))
    write_model_card(ckpt)

    def popularity_rows():
        return [line for line in (ckpt / "README.md").read_text().splitlines() if line.startswith("| popularity |")]

    assert not popularity_rows()
    run("evaluate", "--checkpoint", str(ckpt), "--split", "valid", "--baseline", "popularity", "--json", "--save")
    assert popularity_rows()  # a baseline's saved row reaches the card too


def test_evaluate_generated_intentions_jsonl(ckpt, tmp_path):
    dump = tmp_path / "rank.jsonl"
    p = run("evaluate", "--checkpoint", str(ckpt), "--intention", "generated", "--rho", "0.5",
            "--w", "0", "--json", "--dump-rankings", str(dump), "--save")
    r = json.loads(p.stdout)["results"][0]
    assert r["intention"] == "generated" and r["rho"] == 0.5 and r["w"] == 0.0
    first = json.loads(dump.read_text().splitlines()[0])
    assert set(first) == {"user_id", "target_item_id", "top_item_ids"}
    # saved into metrics.json and the model card, as asked
    assert any(e["intention"] == "generated" and e["rho"] == 0.5
               for e in json.loads((ckpt / "metrics.json").read_text())["results"].values()
               if e["model"] == "idream")


def test_evaluate_baselines(synthetic_dir, cache_dir):
    for b in ("popularity", "textknn"):
        p = run("evaluate", "--baseline", b, "--dataset", str(synthetic_dir), "--text-model", "hash:32",
                "--json", "--cache-dir", str(cache_dir))
        r = json.loads(p.stdout)["results"][0]
        # the command reads the dataset, split and text model it was given: the library, called
        # directly on them, gives the same numbers
        from idream import text
        from idream.data.catalog import item_embeddings
        from idream.data.datasets import chronological_split, load_dataset
        from idream.evaluation.report import baseline_entry
        ds = load_dataset(str(synthetic_dir))
        E = item_embeddings(ds, text.get_backend("hash:32"), cache_dir=cache_dir, progress=False)
        direct = baseline_entry(b, ds, chronological_split(ds, 10), "test", E)
        assert r["model"] == b and r["cases"] == 120 and r["metrics"] == direct["metrics"]


def test_recommend_json(ckpt):
    p = run("recommend", "--checkpoint", str(ckpt), "--history", "100", "101", "Synthetic Film 2",
            "--k", "4", "--json")
    items = json.loads(p.stdout)["items"]
    assert [r["rank"] for r in items] == [1, 2, 3, 4]
    assert {"rank", "item_id", "title", "score"} <= set(items[0])
    assert not {100, 101, 102} & {r["item_id"] for r in items}
    scores = [r["score"] for r in items]
    assert scores == sorted(scores, reverse=True)


def test_recommend_user_intention_and_table(ckpt):
    p = run("recommend", "--checkpoint", str(ckpt), "--user", "u3", "--intention",
            "a scary horror movie", "--rho", "0.5", "--steps", "5")
    assert "rank" in p.stdout.splitlines()[0] and len(p.stdout.splitlines()) == 11
    p = run("recommend", "--checkpoint", str(ckpt), "--intention", "something funny", "--json")
    assert len(json.loads(p.stdout)["items"]) == 10


def test_recommend_errors(ckpt):
    p = run("recommend", "--checkpoint", str(ckpt), "--history", "Synthetic Flim 3", ok=False)
    assert p.returncode == 2
    assert "closest titles" in p.stderr and "Synthetic Film 3" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run("recommend", "--checkpoint", str(ckpt), ok=False)
    assert p.returncode == 2 and "history" in p.stderr and "Traceback" not in p.stderr
    p = run("recommend", "--checkpoint", str(ckpt) + "-missing", "--history", "100", ok=False)
    assert p.returncode == 2 and "no checkpoint folder" in p.stderr
    p = run("recommend", "--checkpoint", str(ckpt), "--user", "nobody", ok=False)
    assert p.returncode == 2 and "unknown user" in p.stderr


def test_boolean_train_flags_read_false_as_false(monkeypatch):
    """A bool TrainConfig field gets a flag that reads "false" and "no" as False (argparse's
    type=bool would read them as True); the shipped fields hold no such switch, so add one."""
    import dataclasses

    import idream.training.train
    from idream import cli
    switch = idream.training.train.opt(True, "a switch under test")
    with_switch = dataclasses.make_dataclass("TrainConfig", [("some_switch", bool, switch)],
                                             bases=(idream.training.train.TrainConfig,))
    monkeypatch.setattr(idream.training.train, "TrainConfig", with_switch)
    *groups, (title, words, dests) = cli.train.TRAIN_GROUPS
    monkeypatch.setattr(cli.train, "TRAIN_GROUPS", (*groups, (title, words, (*dests, "some_switch"))))
    p = cli.build_parser()
    assert p.parse_args(["train", "--out", "x", "--some-switch", "false"]).some_switch is False
    assert p.parse_args(["train", "--out", "x", "--some-switch", "no"]).some_switch is False
    assert p.parse_args(["train", "--out", "x"]).some_switch is True
    with pytest.raises(SystemExit):
        p.parse_args(["train", "--out", "x", "--some-switch", "maybe"])


def test_usage_error_quoting_a_control_character_stays_one_line(capsys):
    """argparse quotes unknown arguments back; a newline or \\x01 in one must not break the line."""
    from idream.cli import build_parser
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["recommend", "--checkpoint", "c", "--history", "-x", "\n\x01"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "error: " in err
    assert "\\n\\x01" in err  # shown escaped, not dropped


def test_new_items_chosen_on_cold_start_checkpoints(ckpt, synthetic_dir, cache_dir, tmp_path):
    """`new-items` picks a and b on held-out items' validation and writes them; a checkpoint with
    no held-out items is refused with a message, and --off switches the rule off."""
    import shutil
    ck = tmp_path / "ck"
    shutil.copytree(ckpt, ck)
    bad = run("new-items", "--checkpoint", str(ck), ok=False)
    assert bad.returncode == 2 and "no cold items" in bad.stderr and "Traceback" not in bad.stderr
    cold = tmp_path / "cold"
    run("train", "--dataset", str(synthetic_dir), "--out", str(cold), "--text-model", "hash:32",
        "--width", "32", "--depth", "1", "--heads", "2", "--epochs", "2",
        "--T", "100", "--history-len", "5", "--intention-pool", "2", "--cold-frac", "0.25",
        "--cache-dir", str(cache_dir), "--quiet", "--no-eval")
    assert json.loads((cold / "config.json").read_text())["new_items"]["chosen_on"].startswith("validation")
    p = run("new-items", "--checkpoint", str(ck), "--from", str(cold))
    rule = json.loads((ck / "config.json").read_text())["new_items"]
    assert rule["a"] > 0 and "1 cold-start checkpoint" in rule["chosen_on"] and "new items a =" in p.stdout
    run("new-items", "--checkpoint", str(ck), "--off")
    assert json.loads((ck / "config.json").read_text())["new_items"]["a"] == 0.0


def test_guidance_rechooses_without_retraining(ckpt, tmp_path):
    """`guidance` chooses w and ρ again on validation (here with another κ); the weights stay byte
    for byte, and guided metrics measured under the old guidance are dropped."""
    import shutil
    ck = tmp_path / "ck"
    shutil.copytree(ckpt, ck)
    weights = (ck / "model.safetensors").read_bytes()
    assert any(e.get("intention") == "generated"
               for e in json.loads((ck / "metrics.json").read_text())["results"].values())
    p = run("guidance", "--checkpoint", str(ck), "--kappa", "1", "--no-eval")
    assert not any(e.get("intention") == "generated"
                   for e in json.loads((ck / "metrics.json").read_text())["results"].values())
    g = json.loads((ck / "config.json").read_text())["guidance"]
    assert g["kappa"] == 1.0 and 0 < g["rho"] < 1 and "kappa 1" in p.stdout
    # a slider's top chosen on the dev half (python -m benchmarks text --set-slider) outlives a new choice of ρ
    cfg = json.loads((ck / "config.json").read_text())
    cfg["guidance"]["rho_max"] = 1.0
    (ck / "config.json").write_text(json.dumps(cfg))
    run("guidance", "--checkpoint", str(ck), "--no-eval")
    assert json.loads((ck / "config.json").read_text())["guidance"]["rho_max"] == 1.0
    # the rule: the strongest ρ whose lift is ≥ 2×, else the best NDCG@10
    keep = [float(r) for r, v in g["rho_lift"].items() if v >= 2.0]
    best = max(g["rho_grid"], key=g["rho_grid"].get)
    assert g["rho"] == (max(keep) if keep else float(best))
    assert (ck / "model.safetensors").read_bytes() == weights
    bad = run("guidance", "--checkpoint", str(ck), "--kappa", "nan", ok=False)
    assert bad.returncode == 2 and "kappa" in bad.stderr and "Traceback" not in bad.stderr
