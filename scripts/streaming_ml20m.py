"""Load, train and evaluate on the MovieLens-20M-shaped synthetic set (`bench synthetic`), each
step in a fresh process, with its wall time and peak resident memory (from os.wait4): whether a
team with data of that size fits its work in a few GB. Writes results/streaming-ml20m-shaped.md
and .json.

    python scripts/streaming_ml20m.py --data /work/tmp-synth/ml20m-shaped --work /work/tmp-synth/run

The data folder is written first where it is missing (about 450 MB: keep it out of the repo).
--before REF also loads the data with REF's idream/data/datasets.py (git show), for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results import git_commit, machine, write_results  # noqa: E402

LOAD = """
import json, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
{import_data}
ds = load_dataset({data!r})
t1 = time.perf_counter()
out = {{"load_s": round(t1 - t0, 2), "users": len(ds.sequences), "items": ds.n_items,
        "interactions": int(sum(len(s) for s in ds.sequences.values()))}}
if {windows}:
    from idream.data.datasets import SequenceWindows, chronological_split
    split = chronological_split(ds, 10)
    t2 = time.perf_counter()
    w = SequenceWindows(split.train_sequences, 10)
    out.update(split_s=round(t2 - t1, 2), windows=len(w), windows_s=round(time.perf_counter() - t2, 2),
               training_targets=int(w.targets().sum()))
print(json.dumps(out))
"""


def measured(cmd: list[str], env: dict, log) -> dict:
    """Run cmd to its end; its stdout, wall seconds and peak RSS in MB (os.wait4's ru_maxrss)."""
    log("$ " + " ".join(cmd))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT, text=True)
        _, status, usage = os.wait4(p.pid, 0)  # reaped here, so its own rusage is ours to read
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({p.returncode}): {stderr[-2000:]}")
    return {"stdout": stdout, "stderr": stderr, "wall_s": round(wall, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the synthetic dataset folder")
    p.add_argument("--work", type=Path, required=True, help="folder for the checkpoint and cache")
    p.add_argument("--max-train-samples", type=int, default=160_000,
                   help="targets trained (one epoch over random windows holding about this many)")
    p.add_argument("--valid-users", type=int, default=2000, help="users of the training validation")
    p.add_argument("--eval-users", type=int, default=0, help="users of the test evaluation (0: all)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="embedding cache (default: WORK/cache); one that holds the item and training "
                        "intention vectors leaves their embedding out of the training time")
    p.add_argument("--text-model", default="minilm")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--before", default="", help="a git ref whose idream/data/datasets.py also loads the data")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    a = p.parse_args(argv)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT))
    py = sys.executable
    steps = {}
    if not (a.data / "interactions.csv").exists():
        r = measured([py, "-m", "benchmarks", "synthetic", "--out", str(a.data)], env, log)
        steps["generate"] = {"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]}
    sizes = json.loads(measured([py, "-c", LOAD.format(root=str(ROOT), data=str(a.data), windows=False,
                                                        import_data="from idream.data.datasets import load_dataset")],
                                env, log)["stdout"])
    r = measured([py, "-c", LOAD.format(root=str(ROOT), data=str(a.data), windows=True,
                                        import_data="from idream.data.datasets import load_dataset")], env, log)
    steps["load"] = {**json.loads(r["stdout"]), "wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]}
    if a.before:
        old = a.work / f"data-{a.before}.py"
        a.work.mkdir(parents=True, exist_ok=True)
        old.write_text(subprocess.run(["git", "show", f"{a.before}:idream/data/datasets.py"], cwd=ROOT, check=True,
                                      capture_output=True, text=True).stdout)
        imp = ("import importlib.util; spec = importlib.util.spec_from_file_location('old_data', "
               f"{str(old)!r}); m = importlib.util.module_from_spec(spec); sys.modules['old_data'] = m; "
               "spec.loader.exec_module(m); load_dataset = m.load_dataset")
        r = measured([py, "-c", LOAD.format(root=str(ROOT), data=str(a.data), windows=False, import_data=imp)],
                     env, log)
        steps["load_before"] = {**json.loads(r["stdout"]), "ref": a.before, "wall_s": r["wall_s"],
                                "peak_rss_mb": r["peak_rss_mb"]}
    ckpt, cache = a.work / "checkpoint", a.cache_dir or a.work / "cache"
    train_cmd = [py, "-m", "idream", "train", "--dataset", str(a.data), "--out", str(ckpt),
                 "--text-model", a.text_model, "--epochs", "1", "--max-train-samples", str(a.max_train_samples),
                 "--valid-users", str(a.valid_users), "--threads", str(a.threads), "--no-eval", "--quiet",
                 "--cache-dir", str(cache)]
    r = measured(train_cmd, env, log)
    train_log = json.loads((ckpt / "config.json").read_text())["train_log"]
    epoch = train_log["history"][0]
    steps["train"] = {"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"], "targets": epoch["targets"],
                      "steps_s": epoch["steps_s"], "targets_per_s": round(epoch["targets"] / epoch["steps_s"], 1),
                      "valid_NDCG@10": epoch["valid_NDCG@10"], "valid_users": a.valid_users}
    eval_cmd = [py, "-m", "idream", "evaluate", "--checkpoint", str(ckpt), "--split", "test",
                "--users", str(a.eval_users), "--cache-dir", str(cache), "--json"]
    r = measured(eval_cmd, env, log)
    res = json.loads(r["stdout"])["results"][0]
    steps["evaluate"] = {"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"], "cases": res["cases"],
                         "of_cases": res.get("of_cases", res["cases"]), "metrics": res["metrics"]}
    short = lambda cmd: " ".join(["python" if c == py else str(c) for c in cmd])  # noqa: E731
    made = json.loads((a.data / "dataset.json").read_text()).get("synthetic", {})
    result = {"dataset": str(a.data), "generated": made, "sizes": sizes, "steps": steps, "machine": machine(),
              "python": platform.python_version(), "threads": a.threads, "commit": git_commit(),
              "commands": {"this": "python scripts/streaming_ml20m.py " + " ".join(argv or sys.argv[1:]),
                           "train": short(train_cmd), "evaluate": short(eval_cmd)}}
    path = write_results(result, a.out, "streaming-ml20m-shaped", markdown(result))
    log(f"wrote {path}")
    return result


def markdown(r: dict) -> str:
    s, z = r["steps"], r["sizes"]
    L = s["load"]
    lines = [
        "# Data that streams: the MovieLens-20M-shaped synthetic set",
        "",
        f"Data: `python -m benchmarks synthetic` (seed {r['generated'].get('seed', '?')}): "
        f"{z['users']:,} users, {z['items']:,} items, "
        f"{z['interactions']:,} interactions. Machine: {r['machine']}, {r['threads']} torch thread(s), "
        f"commit `{r['commit']}`. Every step runs in a fresh process; peak RSS is its maximum resident "
        "set (os.wait4), wall time includes starting Python.",
        "",
        "| step | wall s | peak RSS MB | what it measures |",
        "|---|---|---|---|",
    ]
    if "generate" in s:
        g = s["generate"]
        lines.append(f"| generate the folder | {g['wall_s']} | {g['peak_rss_mb']} | a block of users at a time |")
    lines.append(f"| load + split + windows | {L['wall_s']} | {L['peak_rss_mb']} | load {L['load_s']} s, "
                 f"split {L['split_s']} s, {L['windows']:,} windows in {L['windows_s']} s |")
    if "load_before" in s:
        b = s["load_before"]
        lines.append(f"| load with `{b['ref']}`'s loader | {b['wall_s']} | {b['peak_rss_mb']} | "
                     f"load {b['load_s']} s, the whole file in one pandas table |")
    t, e = s["train"], s["evaluate"]
    who = (f"every user ({e['cases']:,})" if e["cases"] == e["of_cases"]
           else f"{e['cases']:,} of {e['of_cases']:,} users, a seeded sample")
    peak = max(v["peak_rss_mb"] for k, v in s.items() if k != "load_before")
    lines += [
        f"| train | {t['wall_s']} | {t['peak_rss_mb']} | {t['targets']:,} targets in {t['steps_s']} s of "
        f"steps: **{t['targets_per_s']} targets/s**; validation on {t['valid_users']:,} users "
        f"(NDCG@10 {t['valid_NDCG@10']}) |",
        f"| evaluate (test) | {e['wall_s']} | {e['peak_rss_mb']} | {who}: {e['cases'] / e['wall_s']:.1f} "
        f"users/s, loading included; NDCG@10 {e['metrics']['NDCG@10']}, HR@10 {e['metrics']['HR@10']} |",
        "",
        f"The largest peak RSS of any step is {peak:,} MB: "
        f"{'within' if peak <= 6 * 1024 else 'over'} the goal of 6 GB (6,144 MB).",
        "",
        "Train and evaluate wall times include loading the folder again, and training includes the item "
        "text vectors and the training intentions, read from the embedding cache (the first run embeds "
        "them once). One epoch over random windows holding about "
        f"{t['targets']:,} targets is a short budget, not a trained model: the NDCG is there to show the "
        "pipeline runs end to end, not to rank anything. Evaluation ranks the whole catalog for each "
        "user.",
        "",
        f"Command: `{r['commands']['this']}`, which ran `{r['commands']['train']}` and "
        f"`{r['commands']['evaluate']}`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
