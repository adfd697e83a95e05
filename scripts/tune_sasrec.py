"""Tune the SASRec peer on the validation split, as iDream was tuned: a grid of settings, each
trained on a time budget with the learning-rate decay fitted to it, judged by its best
validation NDCG@10 (the test split is never built here). Rows are appended to
results/tuning-sasrec.jsonl; the table results/tuning-sasrec.md is rewritten from all rows.

    python scripts/tune_sasrec.py --max-minutes 3 --threads 1 --shard 0/2   # two processes,
    python scripts/tune_sasrec.py --max-minutes 3 --threads 1 --shard 1/2   # one core each
    python scripts/tune_sasrec.py --table                                   # rewrite the table
"""

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from idream.bench import git_commit  # noqa: E402
from idream.data import chronological_split, load_dataset  # noqa: E402
from idream.report import machine  # noqa: E402
from idream.sasrec import SASRecConfig, grid_configs, train_sasrec  # noqa: E402

LOG = ROOT / "results" / "tuning-sasrec.jsonl"
GRID = {"train_on": ["prefixes", "windows"], "lr": [1e-3, 3e-3], "dropout": [0.2, 0.5],
        "hidden": [64, 128], "max_len": [20, 50, 100]}


def rows(path: Path = LOG) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def table(all_rows: list[dict]) -> str:
    keys = sorted(GRID)
    done = sorted(all_rows, key=lambda r: -r["best_valid_NDCG@10"])
    head = ("SASRec tuned on ml-100k's validation split (chronological leave-one-out, full ranking, "
            "earlier items masked); the test split is never built by this script. Each row: "
            "`python scripts/tune_sasrec.py` with the settings shown, SASRecConfig defaults "
            "otherwise; best validation NDCG@10 of the run, sorted.")
    ms = sorted({r["max_minutes"] for r in all_rows})
    out = [head, "", f"Runs: {len(all_rows)}; budgets (minutes): {ms}; commits: "
           f"{sorted({r['commit'] for r in all_rows})}; machine: {all_rows[0]['machine'] if all_rows else ''}.", "",
           "| " + " | ".join(keys) + " | budget min | clock | seed | valid NDCG@10 | best epoch | epochs | minutes |",
           "|---" * (len(keys) + 7) + "|"]
    for r in done:
        c = r["config"]
        out.append("| " + " | ".join(str(c[k]) for k in keys) + f" | {r['max_minutes']:g} | {c.get('clock', 'wall')} | {c['seed']} | "
                   f"{r['best_valid_NDCG@10']:.4f} | {r['best_epoch']} | {r['epochs_run']} | {r['minutes']} |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--max-minutes", type=float, default=3.0, help="training budget of each run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="cpu",
                    help="budget in this process's CPU seconds (default; fair between runs side by "
                         "side) or wall seconds")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    ap.add_argument("--shard", default="0/1", help="i/n: run every n-th setting from the i-th")
    ap.add_argument("--grid", default="", help="JSON {field: [values]} instead of the default grid")
    ap.add_argument("--table", action="store_true", help="only rewrite the table from the rows")
    a = ap.parse_args()
    if a.table:
        (LOG.with_suffix(".md")).write_text(table(rows()))
        return
    torch.set_num_threads(a.threads)
    i, n = (int(x) for x in a.shard.split("/"))
    grid = json.loads(a.grid) if a.grid else GRID
    ds = load_dataset(a.dataset)
    split = chronological_split(ds, 10)
    base = SASRecConfig(seed=a.seed, max_minutes=a.max_minutes, clock=a.clock)
    seen = {json.dumps(r["config"], sort_keys=True) for r in rows()}
    for cfg in grid_configs(base, grid)[i::n]:
        if json.dumps(asdict(cfg), sort_keys=True) in seen:  # resumable: a finished setting is kept
            continue
        t = time.time()
        _, info = train_sasrec(split, ds.n_items, cfg, progress=False)
        row = {"dataset": ds.name, "max_minutes": a.max_minutes, "commit": git_commit(), "machine": machine(),
               "threads": a.threads, "best_valid_NDCG@10": round(info["best_valid_NDCG@10"], 5),
               "best_epoch": info["best_epoch"], "epochs_run": info["epochs_run"],
               "minutes": round((time.time() - t) / 60, 2), "config": info["config"],
               "curve": [h["valid_NDCG@10"] for h in info["history"]]}
        with open(LOG, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({k: row[k] for k in ("best_valid_NDCG@10", "best_epoch", "epochs_run")}),
              {k: cfg.__dict__[k] for k in grid}, flush=True)
    LOG.with_suffix(".md").write_text(table(rows()))


if __name__ == "__main__":
    main()
