"""Tune a peer (SASRec, or DreamRec: iDream's code with ID vectors) on the validation split, as
iDream was tuned: a grid of settings, each trained on a time budget with the learning-rate decay
fitted to it, judged by its best validation NDCG@10 (the test split is never built here). Rows
are appended to results/tuning-<model>.jsonl (a stopped run resumes where it stopped); the table
results/tuning-<model>.md is rewritten from all rows.

    python scripts/tune_peer.py sasrec --max-minutes 4 --shard 0/2   # two processes,
    python scripts/tune_peer.py sasrec --max-minutes 4 --shard 1/2   # one core each
    python scripts/tune_peer.py dreamrec --max-minutes 1              # every setting, short budget,
    python scripts/tune_peer.py dreamrec --max-minutes 4 --promote 8 --from-minutes 1  # the best 8, longer
    python scripts/tune_peer.py dreamrec --table                      # rewrite the table only

The chosen setting is the best one at the longest budget any setting ran.
"""

import argparse
import itertools
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.results import git_commit, machine  # noqa: E402

GRIDS = {
    "sasrec": {"train_on": ["prefixes", "windows"], "lr": [1e-3, 3e-3], "dropout": [0.2, 0.5],
               "hidden": [64, 128], "max_len": [20, 50, 100]},
    "dreamrec": {"lr": [5e-4, 1e-3, 3e-3], "dropout": [0.1, 0.3], "id_dim": [64, 128],
                 "history_len": [10, 20], "ce_weight": [10.0, 50.0]},
}


def log_path(model: str) -> Path:
    return ROOT / "results" / f"tuning-{model}.jsonl"


def rows(model: str) -> list[dict]:
    path = log_path(model)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def best(all_rows: list[dict]) -> dict | None:
    """The chosen run: best validation NDCG@10 among the runs at the longest budget."""
    if not all_rows:
        return None
    longest = max(r["max_minutes"] for r in all_rows)
    return max((r for r in all_rows if r["max_minutes"] == longest), key=lambda r: r["best_valid_NDCG@10"])


def promoted(all_rows: list[dict], k: int, from_minutes: float) -> list[dict]:
    """The settings (as config dicts) of the k best runs at budget `from_minutes`: successive halving."""
    at = sorted((r for r in all_rows if r["max_minutes"] == from_minutes), key=lambda r: -r["best_valid_NDCG@10"])
    return [r["config"] for r in at[:k]]


def left_out(model: str, all_rows: list[dict]) -> str:
    """Why the grid's settings that never ran were skipped, from the runs that did (SASRec's long-prefix
    runs manage about one epoch in the budget, so their dropout-0.5 twins were not run)."""
    ran = {json.dumps({k: r["config"][k] for k in GRIDS[model]}, sort_keys=True) for r in all_rows}
    missing = [c for c in configs(model, 0, 1.0, "cpu") if json.dumps({k: getattr(c, k) for k in GRIDS[model]},
                                                                    sort_keys=True) not in ran]
    if not missing or model != "sasrec":
        return ""
    long_prefix = [r for r in all_rows if r["config"]["train_on"] == "prefixes" and r["config"]["max_len"] >= 50]
    windows = [r["best_valid_NDCG@10"] for r in all_rows
               if r["config"]["train_on"] == "windows" and r["config"]["max_len"] >= 50]
    if not long_prefix or not windows:
        return f"Not run: {len(missing)} settings."
    kinds = sorted({f"{c.train_on}/max_len {c.max_len}/dropout {c.dropout}" for c in missing})
    return (f"Not run: {len(missing)} settings ({', '.join(kinds)}). "
            f"The {len(long_prefix)} prefix runs with max_len >= 50 that did run finished at most "
            f"{max(r['epochs_run'] for r in long_prefix)} epoch(s) in the budget and scored at most "
            f"{max(r['best_valid_NDCG@10'] for r in long_prefix):.4f}, against up to {max(windows):.4f} for "
            "windows runs of the same lengths; more dropout cannot help a model that sees the data once.")


def table(model: str, all_rows: list[dict]) -> str:
    keys = sorted(GRIDS[model])
    done = sorted(all_rows, key=lambda r: -r["best_valid_NDCG@10"])
    out = [f"{model} tuned on the validation split (chronological leave-one-out, full ranking, earlier "
           "items masked); the test split is never built by this script. Each row: "
           f"`python scripts/tune_peer.py {model}` with the settings shown, defaults otherwise; best "
           "validation NDCG@10 of the run, sorted.", "",
           f"Runs: {len(all_rows)} of {len(configs(model, 0, 1.0, 'cpu'))}; budgets (minutes): "
           f"{sorted({r['max_minutes'] for r in all_rows})}; commits: {sorted({r['commit'] for r in all_rows})}; "
           f"machine: {all_rows[0]['machine'] if all_rows else ''}.", ""]
    chosen = best(all_rows)
    if chosen:
        out += [f"Chosen (best at the longest budget, {chosen['max_minutes']:g} min): "
                + ", ".join(f"{k}={chosen['config'][k]}" for k in keys)
                + f" (valid NDCG@10 {chosen['best_valid_NDCG@10']:.4f}).", ""]
    note = left_out(model, all_rows)
    if note:
        out += [note, ""]
    out += [
           "| " + " | ".join(keys) + " | budget min | clock | seed | valid NDCG@10 | best epoch | epochs | wall min |",
           "|---" * (len(keys) + 7) + "|"]
    for r in done:
        c = r["config"]
        out.append("| " + " | ".join(str(c[k]) for k in keys) + f" | {r['max_minutes']:g} | {c.get('clock', 'wall')} "
                   f"| {c['seed']} | {r['best_valid_NDCG@10']:.4f} | {r['best_epoch']} | {r['epochs_run']} | "
                   f"{r['minutes']} |")
    return "\n".join(out) + "\n"


def grid_configs(base, grid: dict) -> list:
    """Every combination of the grid's values over the config dataclass `base`, in a fixed order."""
    keys = sorted(grid)
    return [replace(base, **dict(zip(keys, v))) for v in itertools.product(*(grid[k] for k in keys))]


def configs(model: str, seed: int, max_minutes: float, clock: str, grid: dict | None = None) -> list:
    """Every setting of the model's grid (or `grid`) over its defaults."""
    if model == "sasrec":
        from benchmarks.peers.sasrec import SASRecConfig
        base = SASRecConfig(seed=seed, max_minutes=max_minutes, clock=clock)
    else:
        from benchmarks.peers.dreamrec import DreamRecConfig
        base = DreamRecConfig(seed=seed, max_minutes=max_minutes, clock=clock, threads=0)
    return grid_configs(base, grid or GRIDS[model])


def train_one(model: str, cfg, dataset: str) -> dict:
    """Train one setting; its best validation NDCG@10, epochs and curve."""
    if model == "sasrec":
        from idream.data.datasets import chronological_split, load_dataset
        from benchmarks.peers.sasrec import train_sasrec
        ds = load_dataset(dataset)
        _, info = train_sasrec(chronological_split(ds, 10), ds.n_items, cfg, progress=False)
        return {"best_valid_NDCG@10": info["best_valid_NDCG@10"], "best_epoch": info["best_epoch"],
                "epochs_run": info["epochs_run"], "curve": [h["valid_NDCG@10"] for h in info["history"]]}
    from idream.training.train import train
    rec, _, _ = train(replace(cfg, dataset=dataset), progress=False, log_fn=lambda s: None)
    log = rec.config["train_log"]
    return {"best_valid_NDCG@10": log["best_valid_NDCG@10"], "best_epoch": log["best_epoch"],
            "epochs_run": log["epochs_run"], "curve": [h["valid_NDCG@10"] for h in log["history"]]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", choices=sorted(GRIDS), help="the peer to tune")
    ap.add_argument("--dataset", default="ml-100k", help="ml-100k or a dataset folder")
    ap.add_argument("--max-minutes", type=float, default=4.0, help="training budget of each run")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="cpu",
                    help="budget in this process's CPU seconds (default; fair between runs side by side) "
                         "or wall seconds")
    ap.add_argument("--seed", type=int, default=0, help="seed of every run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process (default 1)")
    ap.add_argument("--shard", default="0/1", help="i/n: run every n-th setting from the i-th")
    ap.add_argument("--grid", default="", help="JSON {field: [values]} instead of the model's grid")
    ap.add_argument("--promote", type=int, default=0,
                    help="run only the K best settings of the runs at --from-minutes (successive halving)")
    ap.add_argument("--from-minutes", type=float, default=None, help="the shorter budget --promote reads")
    ap.add_argument("--table", action="store_true", help="only rewrite the table from the rows")
    a = ap.parse_args()
    md = log_path(a.model).with_suffix(".md")
    if a.table:
        md.write_text(table(a.model, rows(a.model)))
        return
    if a.promote and a.from_minutes is None:
        ap.error("--promote needs --from-minutes")
    torch.set_num_threads(a.threads)
    i, n = (int(x) for x in a.shard.split("/"))
    done = {json.dumps(r["config"], sort_keys=True) for r in rows(a.model)}
    todo = configs(a.model, a.seed, a.max_minutes, a.clock, json.loads(a.grid) if a.grid else None)
    if a.promote:
        keep = [{k: c[k] for k in GRIDS[a.model]} for c in promoted(rows(a.model), a.promote, a.from_minutes)]
        todo = [c for c in todo if {k: getattr(c, k) for k in GRIDS[a.model]} in keep]
    for cfg in todo[i::n]:
        if json.dumps(asdict(cfg), sort_keys=True, default=list) in done:
            continue
        t = time.time()
        res = train_one(a.model, cfg, a.dataset)
        row = {"dataset": a.dataset, "max_minutes": a.max_minutes, "commit": git_commit(), "machine": machine(),
               "threads": a.threads, **{k: round(v, 5) if isinstance(v, float) else v for k, v in res.items()},
               "minutes": round((time.time() - t) / 60, 2), "config": json.loads(json.dumps(asdict(cfg), default=list))}
        with open(log_path(a.model), "a") as f:
            f.write(json.dumps(row) + "\n")
        print(a.model, row["best_valid_NDCG@10"], {k: getattr(cfg, k) for k in sorted(GRIDS[a.model])}, flush=True)
    md.write_text(table(a.model, rows(a.model)))


if __name__ == "__main__":
    main()
