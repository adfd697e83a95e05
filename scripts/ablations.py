"""Ablations for the benchmark issue, on validation and test of one split (choices are made on
validation only; test is shown next to it, never used to pick anything).

    python scripts/ablations.py sampling --checkpoint checkpoints/ml-100k
        steps 1/5/20/50/T, the w grid, the ρ grid with generated intentions, and averaging several
        one-step oracles, all on one trained model -> results/ablation-sampling.{json,md}
    python scripts/ablations.py training --dataset ml-100k --max-minutes 5
        transform none/scale/whiten, history length 10 vs 50, and the in-context denoiser (the
        paper's form) vs the causal encoder, each trained with the same minute budget and seed
        -> results/ablation-training.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results import git_commit, machine  # noqa: E402
from idream.evaluation.evaluate import evaluate_recommender, generated_intentions, rank_all  # noqa: E402

SPLITS = ("valid", "test")
COLS = ("NDCG@10", "HR@10")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cells(m: dict) -> dict:
    return {f"{s} {k}": round(m[s][k], 4) for s in SPLITS for k in COLS}


def averaged(rec, samples, n: int, w, seed: int = 0):
    """Mean of n one-step oracles with different noise, then ranked."""
    def score(rows):
        x0 = sum(rec.oracle(samples.histories[rows], None, steps=1, w=w, rho=0.0,
                            seed=seed + 7919 * j + int(rows[0])) for j in range(n)) / n
        return rec.scores(x0)
    return rank_all(score, samples)


def sampling(checkpoint: str) -> dict:
    from idream.serving.recommender import Recommender
    from idream.data.datasets import chronological_split, evaluation_cases

    torch.set_grad_enabled(False)
    rec = Recommender.load(checkpoint)
    sp = chronological_split(rec.dataset, rec.history_len)
    cases = {s: evaluation_cases(rec.dataset, sp, s) for s in SPLITS}  # validation decides, test reports
    w0, rho0 = rec.default_w, rec.default_rho
    q = {s: generated_intentions(rec, cases[s], seed=0) for s in SPLITS}
    rows = []

    def add(group, setting, fn):
        t = time.time()
        m = {s: fn(cases[s], s).metrics for s in SPLITS}
        rows.append({"group": group, "setting": setting, **_cells(m), "seconds": round(time.time() - t, 1)})
        log(f"{group} {setting}: {rows[-1]}")

    for steps in (1, 5, 20, 50, rec.T):
        add("steps (unguided, w=%g)" % w0, steps, lambda smp, s, n=steps: evaluate_recommender(
            rec, smp, steps=n, w=w0, rho=0.0))
    for w in (0.0, 1.0, 2.0, 3.0, 5.0, 8.0):
        add("history guidance w (1 step)", w, lambda smp, s, w=w: evaluate_recommender(
            rec, smp, steps=1, w=w, rho=0.0))
    for rho in (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0):
        add("intention strength ρ (1 step, generated intentions, w=%g)" % w0, rho,
            lambda smp, s, r=rho: evaluate_recommender(rec, smp, steps=1, w=w0, rho=r, intentions=q[s]))
    for n in (1, 4, 16):
        add("average of n one-step oracles (w=%g)" % w0, n, lambda smp, s, n=n: averaged(rec, smp, n, w0))
    return {"kind": "sampling", "checkpoint": checkpoint, "dataset": rec.dataset.name,
            "defaults": {"w": w0, "rho": rho0, "T": rec.T}, "rows": rows}


TRAINING_RUNS = (("defaults", {}),  # causal encoder, history 10, whiten
                 ("transform", {"transform": "scale"}), ("transform", {"transform": "none"}),
                 ("history length", {"history_len": 50}),
                 # the paper's in-context encoder: results/experiments/incontext-encoder.patch, then
                 # ("history encoder", {"encoder": "incontext", "history_len": 10}) here
                 ("training t", {"p_t_max": 0.0}))  # uniform t, as the paper


def training(dataset: str, max_minutes: float, seed: int, threads: int = 0) -> dict:
    from idream.data.datasets import evaluation_cases
    from idream.training.train import TrainConfig, train

    rows = []
    for group, settings in TRAINING_RUNS:
        t = time.time()
        cfg = TrainConfig(dataset=dataset, seed=seed, max_minutes=max_minutes, threads=threads, **settings)
        rec, sp, _ = train(cfg, progress=False, log_fn=lambda s: log(f"{settings} {s}"))
        g = rec.config["guidance"]
        cases = {s: evaluation_cases(rec.dataset, sp, s) for s in SPLITS}
        with torch.no_grad():
            m = {s: evaluate_recommender(rec, cases[s], steps=1, w=g["w"], rho=0.0).metrics
                 for s in SPLITS}
            qi = {s: generated_intentions(rec, cases[s], seed=0) for s in SPLITS}
            mi = {s: evaluate_recommender(rec, cases[s], steps=1, w=g["w"], rho=g["rho"],
                                          intentions=qi[s]).metrics for s in SPLITS}
        rows.append({"group": group, "setting": ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults",
                     "w": g["w"], "rho": g["rho"], "epochs": rec.config["train_log"]["epochs_run"],
                     **_cells(m), **{f"intention {k}": v for k, v in _cells(mi).items()},
                     "minutes": round((time.time() - t) / 60, 1)})
        log(json.dumps(rows[-1]))
    return {"kind": "training", "dataset": dataset, "seed": seed, "max_minutes": max_minutes, "rows": rows}


def markdown(r: dict) -> str:
    head = (f"Dataset **{r['dataset']}**, chronological leave-one-out; commit `{r['commit']}`, machine: "
            f"{r['machine']}. Command: `{r['command']}`. Choices are made on validation; test is shown "
            "beside it, never used to choose.")
    keys = [f"{s} {k}" for s in SPLITS for k in COLS]
    if r["kind"] == "sampling":
        d = r["defaults"]
        lines = [head, "", f"One trained model (`{r['checkpoint']}`, defaults chosen on validation: w={d['w']:g}, "
                 f"ρ={d['rho']:g}; T={d['T']}).", ""]
        for group in dict.fromkeys(x["group"] for x in r["rows"]):
            lines += [f"**{group}**", "", "| setting | " + " | ".join(keys) + " | seconds |",
                      "|---" * (len(keys) + 2) + "|"]
            lines += [f"| {x['setting']:g} | " + " | ".join(f"{x[k]:.4f}" for k in keys) + f" | {x['seconds']} |"
                      for x in r["rows"] if x["group"] == group]
            lines.append("")
    else:
        ik = [f"intention {k}" for k in keys]
        lines = [head, "", f"Each row trained with the defaults except the setting shown, seed {r['seed']}, "
                 f"the same {r['max_minutes']:g}-minute training budget (so at equal compute; longer "
                 "histories get fewer epochs). Unguided = one step at the w chosen on validation; "
                 "intention = generated intentions at the ρ chosen on validation.", "",
                 "| setting | epochs | w | ρ | " + " | ".join(keys) + " | " +
                 " | ".join(k.replace("intention ", "intention ") for k in ik) + " | minutes |",
                 "|---" * (len(keys) * 2 + 5) + "|"]
        lines += [f"| {x['setting']} | {x['epochs']} | {x['w']:g} | {x['rho']:g} | " +
                  " | ".join(f"{x[k]:.4f}" for k in keys + ik) + f" | {x['minutes']} |" for x in r["rows"]]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="kind", required=True)
    s = sub.add_parser("sampling")
    s.add_argument("--checkpoint", default="checkpoints/ml-100k")
    t = sub.add_parser("training")
    t.add_argument("--dataset", default="ml-100k")
    t.add_argument("--max-minutes", type=float, default=5.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default=str(ROOT / "results"))
    a = p.parse_args(argv)
    r = sampling(a.checkpoint) if a.kind == "sampling" else training(a.dataset, a.max_minutes, a.seed, a.threads)
    r.update(commit=git_commit(), machine=machine(),
             command="python scripts/ablations.py " + " ".join(sys.argv[1:] if argv is None else argv))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"ablation-{a.kind}.json").write_text(json.dumps(r, indent=1))
    (out / f"ablation-{a.kind}.md").write_text(markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
