"""Table full training runs side by side by their validation curves (never the test split).

Each run is a folder written by `python -m idream train ... --no-eval`; its config.json holds the
command, the settings and the per-epoch validation NDCG@10. Rows are appended (once per run
folder and command) to results/tuning-runs.jsonl and the whole record is tabled in
results/tuning-runs.md.

    python scripts/compare_runs.py RUN_DIR [RUN_DIR ...] [--note "what the runs compare"]
"""

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from idream.training.train import RETIRED, TrainConfig  # noqa: E402

LOG = ROOT / "results" / "tuning-runs.jsonl"
IGNORED = {"threads", "max_minutes", "seed", "device", "dataset", "command"}


def run_row(folder: Path, note: str) -> dict:
    """The settings that differ from today's defaults, and the validation curve of one run."""
    cfg = json.loads((Path(folder) / "config.json").read_text())
    train, log = cfg["train"], cfg["train_log"]
    defaults = asdict(TrainConfig())
    known = {**defaults, **RETIRED}  # a retired knob counts where it held another value than today's
    changed = {k: v for k, v in train.items()
               if k not in IGNORED and k in known and json.dumps(v) != json.dumps(known[k])}
    # code from while the retired knobs were settings wrote them all: one missing there did not exist yet
    then = [*defaults, *RETIRED] if RETIRED.keys() & train.keys() else defaults
    changed.update({k: "(not in that code: off)" for k in then if k not in train and k not in IGNORED})
    curve = [h["valid_NDCG@10"] for h in log["history"]]
    return {"run": Path(folder).name, "command": train.get("command", ""), "changed": changed,
            "dataset": cfg["data"]["dataset"], "seed": train["seed"], "threads": train.get("threads"),
            "best_valid_NDCG@10": log["best_valid_NDCG@10"], "best_epoch": log["best_epoch"],
            "epochs_run": log["epochs_run"], "minutes": log["minutes"], "curve": curve,
            "guidance": {k: cfg["guidance"].get(k) for k in ("w", "rho")},
            "valid_intention_NDCG@10": max(cfg["guidance"].get("rho_grid", {}).values(), default=None),
            "note": note}


def table(rows: list[dict]) -> str:
    lines = ["Training runs (`python -m idream train --no-eval`, the command in each row; runs "
             "cut by a minute budget say so in their note), "
             "compared on the **validation** split: one-step, unguided NDCG@10 per epoch, the best "
             "epoch (kept by early stopping), and the best validation NDCG@10 with generated "
             "intentions over the ρ grid. Settings: what differs from the defaults at the time of "
             "the table (the defaults themselves may have moved since an older row).", "",
             "| run | settings vs defaults | best valid NDCG@10 | best epoch / run | with intention | "
             "minutes | curve (every 3rd epoch) | note |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = ", ".join(f"{k}={v}" for k, v in r["changed"].items()) or "defaults"
        curve = " ".join(f"{v:.3f}" for v in r["curve"][2::3])
        q = r.get("valid_intention_NDCG@10")
        lines.append(f"| {r['run']} | {s} | {r['best_valid_NDCG@10']:.4f} | {r['best_epoch']} / "
                     f"{r['epochs_run']} | {'–' if q is None else f'{q:.4f}'} | {r['minutes']} | "
                     f"{curve} | {r['note']} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="+", help="run folders written by `python -m idream train`")
    p.add_argument("--note", default="")
    a = p.parse_args()
    old = [json.loads(x) for x in LOG.read_text().splitlines() if x.strip()] if LOG.exists() else []
    seen = {(r["run"], r["command"]) for r in old}
    new = [r for r in (run_row(Path(f), a.note) for f in a.runs) if (r["run"], r["command"]) not in seen]
    LOG.parent.mkdir(exist_ok=True)
    with open(LOG, "a") as f:
        for r in new:
            f.write(json.dumps(r) + "\n")
    (ROOT / "results" / "tuning-runs.md").write_text(table(old + new))
    print(table(old + new))


if __name__ == "__main__":
    main()
