"""Validation-only probe of the item space: one training per call, its train log and the guidance
choice written as one JSON line (never reads the test split).

    python results/experiments/item-space-probe.py NAME '{"text_dims": 64, "id_dims": 64}' [--out DIR]
    python results/experiments/item-space-probe.py --table   # the runs so far, as Markdown

The adaLN and null-space settings need results/experiments/adaln-nullspace.patch applied first.
"""

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.results import git_commit, machine
from idream.serving.checkpoint import save_checkpoint
from idream.training.train import TrainConfig, train

LOG = ROOT / "results" / "experiments" / "item-space-probe.jsonl"
if sys.argv[1] == "--table":
    print("| run | settings | best valid NDCG@10 | best / run epochs | CPU min | ρ chosen | HR@10 lift at ρ "
          "| lift at ρ 0.4 |\n|---|---|---|---|---|---|---|---|")
    for line in LOG.read_text().splitlines():
        r = json.loads(line)
        sets = ", ".join(f"{k} {v}" for k, v in r["settings"].items()) or "defaults"
        lift = r["rho_lift"] or {}
        print(f"| {r['name']} | {sets} | {r['best_valid_NDCG@10']:.4f} | {r['best_epoch']} / {r['epochs_run']} "
              f"| {r['cpu_minutes']} | {r['rho']} | {lift.get(str(r['rho']), '–')} | {lift.get('0.4', '–')} |")
    sys.exit(0)
name, over = sys.argv[1], json.loads(sys.argv[2])
out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
cfg = TrainConfig(**{"threads": 1, "clock": "cpu", "max_minutes": 25, "epochs": 40, **over})
t = time.time()
rec, split, E = train(cfg, progress=False, log_fn=lambda s: print(name, s, flush=True))
if out:
    save_checkpoint(rec, out, E)
log, g = rec.config["train_log"], rec.config["guidance"]
row = {"name": name, "settings": over, "best_valid_NDCG@10": log["best_valid_NDCG@10"],
       "best_epoch": log["best_epoch"], "epochs_run": log["epochs_run"], "cpu_minutes": log["minutes"],
       "wall_minutes": round((time.time() - t) / 60, 1), "w": g["w"], "rho": g["rho"],
       "rho_lift": g.get("rho_lift"), "rho_grid": g.get("rho_grid"),
       "curve": [h["valid_NDCG@10"] for h in log["history"]],
       "params": sum(p.numel() for p in list(rec.model.parameters()) + list(rec.table.parameters())),
       "commit": git_commit(), "machine": machine("cpu")}
print(json.dumps(row), flush=True)
with open(LOG, "a") as f:
    f.write(json.dumps(row) + "\n")
