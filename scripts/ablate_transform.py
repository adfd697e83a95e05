"""Choose the default transform on validation: short trainings with none / scale / whiten.

Writes results/transform-ablation.json and .md (validation NDCG@10, one-step, unguided and at the
chosen w). Usage: python scripts/ablate_transform.py [--epochs 3] [--max-train-samples 30000]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from idream.report import machine  # noqa: E402
from idream.train import TrainConfig, train  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-train-samples", type=int, default=30000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rows = []
    for kind in ("none", "scale", "whiten"):
        cfg = TrainConfig(dataset=a.dataset, transform=kind, epochs=a.epochs, patience=a.epochs,
                          max_train_samples=a.max_train_samples, seed=a.seed, rho_grid=(2.0,))
        rec, _, _ = train(cfg, progress=False, log_fn=lambda s: print(kind, s, file=sys.stderr))
        g, log = rec.config["guidance"], rec.config["train_log"]
        rows.append({"transform": kind, "valid_NDCG@10_w0": log["best_valid_NDCG@10"],
                     "w": g["w"], "valid_NDCG@10_at_w": g["w_grid"][str(g["w"])],
                     "valid_NDCG@10_intention_rho2": g["rho_grid"]["2.0"],
                     "epochs": a.epochs, "train_samples": a.max_train_samples})
    out = {"dataset": a.dataset, "split": "valid", "seed": a.seed, "machine": machine(),
           "command": "python scripts/ablate_transform.py " + " ".join(sys.argv[1:]), "rows": rows}
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "transform-ablation.json").write_text(json.dumps(out, indent=2))
    md = [f"Transform ablation on {a.dataset}, validation split, seed {a.seed}, {a.epochs} epochs on "
          f"{a.max_train_samples} training cases each ({out['machine']}; `{out['command']}`):", "",
          "| transform | NDCG@10 (w=0) | best w | NDCG@10 (best w) | NDCG@10 (intention, ρ=2) |",
          "|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['transform']} | {r['valid_NDCG@10_w0']:.4f} | {r['w']:g} | "
                  f"{r['valid_NDCG@10_at_w']:.4f} | {r['valid_NDCG@10_intention_rho2']:.4f} |")
    (ROOT / "results" / "transform-ablation.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
