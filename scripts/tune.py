"""Short validation runs of TrainConfig variants, appended to results/tuning.jsonl and tabled in
results/tuning.md (the tuning record the model card points to). Never reads the test split.

    python scripts/tune.py --runs '[{"transform": "whiten", "ce_weight": 50}, {"tau": 100}]' \
        [--epochs 4] [--max-train-samples 40000]
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results import machine  # noqa: E402
from idream.training.train import TrainConfig, train  # noqa: E402

LOG = ROOT / "results" / "tuning.jsonl"


def table(rows: list[dict]) -> str:
    lines = ["Short runs on ml-100k, validation split only (one-step; NDCG@10 unguided at w=0, at "
             "the best w of the grid, and with generated intentions at ρ=2). Each row: "
             "`python scripts/tune.py` with the settings shown (defaults otherwise).", "",
             "| settings | epochs × cases | NDCG@10 w=0 | best w | NDCG@10 best w | NDCG@10 intention ρ=2 "
             "| minutes | machine |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
        lines.append(f"| {s} | {r['epochs']} × {r['cases']} | {r['w0']:.4f} | {r['w']:g} | "
                     f"{r['best_w']:.4f} | {r['rho2']:.4f} | {r['minutes']} | {r['machine']} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", required=True, help="JSON list of TrainConfig overrides")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--max-train-samples", type=int, default=40000)
    a = p.parse_args()
    LOG.parent.mkdir(exist_ok=True)
    for settings in json.loads(a.runs):
        t = time.time()
        cfg = TrainConfig(epochs=a.epochs, patience=a.epochs, max_train_samples=a.max_train_samples,
                          rho_grid=(2.0,), **settings)
        rec, _, _ = train(cfg, progress=False, log_fn=lambda s: print(s, file=sys.stderr))
        g, log = rec.config["guidance"], rec.config["train_log"]
        row = {"settings": settings, "epochs": a.epochs, "cases": a.max_train_samples,
               "w0": log["best_valid_NDCG@10"], "w": g["w"], "best_w": g["w_grid"][str(g["w"])],
               "rho2": g["rho_grid"]["2.0"], "minutes": round((time.time() - t) / 60, 1),
               "machine": machine()}
        with open(LOG, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    rows = [json.loads(line) for line in LOG.read_text().splitlines() if line.strip()]
    (ROOT / "results" / "tuning.md").write_text(table(rows))


if __name__ == "__main__":
    main()
