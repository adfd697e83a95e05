"""Evaluation rows that are written down: a checkpoint's metrics.json (iDream and the reference
scorers on the same cases), the shipping bars read from it, and its tables."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from idream.data.datasets import chronological_split, evaluation_cases
from idream.evaluation.evaluate import dump_rankings, evaluate_recommender, generated_intentions, rank_all
from idream.evaluation.references import popularity_scorer, textknn_scorer
from idream.serving.checkpoint import write_json

METRIC_KEYS = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20")


def machine(device: str = "cpu") -> str:
    """The CPU (and the GPU, where training ran on one) for the header of a results file."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = f"{cpu}, {os.cpu_count()} cores, {platform.system()}"
    if str(device).startswith("cuda"):
        import torch
        if torch.cuda.is_available():
            out += f", training on GPU {torch.cuda.get_device_name(torch.device(device))}"
    return out


def _entry_key(e: dict) -> str:
    sample = f"/users={e['cases']}" if "of_cases" in e else ""  # a sample never replaces all cases
    if e["model"] != "idream":
        return f"{e['split']}/{e['model']}{sample}"
    return (f"{e['split']}/idream/steps={e['steps']}/w={e['w']:g}/rho={e['rho']:g}/"
            f"intention={e['intention']}/seed={e['seed']}{sample}")


def _label(e: dict) -> str:
    if e["model"] != "idream":
        return e["model"]
    q = f", intention ρ={e['rho']:g}" if e["intention"] != "none" else ""
    return f"iDream {e['steps']}-step, w={e['w']:g}{q}"


def evaluate_checkpoint(rec, split_name: str, steps_list, w, rho, intention: str, seed: int,
                        dump: str | None = None, split=None, users: int = 0) -> list[dict]:
    """Entries for each steps value (the same noise seed for each); `users`: a seeded sample of
    that many users' cases (0: all)."""
    split = split or chronological_split(rec.dataset, rec.history_len)
    every = evaluation_cases(rec.dataset, split, split_name)
    samples = every.sample(users, seed)
    w = rec.default_w if w is None else float(w)
    if intention == "generated":
        rho = rec.default_rho if rho is None else float(rho)
        q = generated_intentions(rec, samples, seed=seed)
    else:
        rho, q = 0.0, None
    out = []
    for i, steps in enumerate(steps_list):
        res = evaluate_recommender(rec, samples, steps=steps, w=w, rho=rho, intentions=q, seed=seed,
                                   dump_top=50 if dump else 0).require_finite(f"the checkpoint ({steps}-step)")
        if dump:
            p = Path(dump)
            if len(steps_list) > 1:
                p = p.with_name(f"{p.stem}.steps{steps}{p.suffix}")
            dump_rankings(p, rec.dataset, samples, res)
        e = {"model": "idream", "split": split_name, "steps": int(steps), "w": w, "rho": rho,
             "intention": intention, "seed": seed, "cases": len(samples),
             **({"of_cases": len(every)} if len(samples) < len(every) else {}),
             "metrics": {k: round(res.metrics[k], 5) for k in METRIC_KEYS}}
        e["label"] = _label(e)
        out.append(e)
    return out


def baseline_entry(name: str, ds, split, split_name: str, E, seed: int = 0, dump=None,
                   users: int = 0) -> dict:
    every = evaluation_cases(ds, split, split_name)
    samples = every.sample(users, seed)
    scorer = popularity_scorer(split, ds.n_items) if name == "popularity" else textknn_scorer(E)
    res = rank_all(lambda rows: scorer(samples.histories[rows]), samples, dump_top=50 if dump else 0,
                   seed=seed).require_finite(name)
    if dump:
        dump_rankings(Path(dump), ds, samples, res)
    e = {"model": name, "split": split_name, "seed": seed, "cases": len(samples),
         **({"of_cases": len(every)} if len(samples) < len(every) else {}),
         "metrics": {k: round(res.metrics[k], 5) for k in METRIC_KEYS}}
    e["label"] = _label(e)
    return e


def update_metrics(ckpt: Path, entries: list[dict], dataset: str, command: str) -> None:
    """Merge entries into metrics.json (keyed by their settings) and refresh the model card."""
    path = Path(ckpt) / "metrics.json"
    data = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            data = {}
    data.setdefault("dataset", dataset)
    data["protocol"] = ("chronological leave-one-out (last item test, second-last validation), "
                        "full ranking over every item, the user's earlier items masked")
    data["machine"] = machine()
    results = data.setdefault("results", {})
    for e in entries:
        results[_entry_key(e)] = {**e, "command": command}
    write_json(path, data)


def forget_guided(ckpt: Path) -> int:
    """Drop metrics.json's rows measured with an intention: a new guidance (mode, κ) changes what
    their ρ means. Returns how many were dropped."""
    path = Path(ckpt) / "metrics.json"
    if not path.exists():
        return 0
    data = json.loads(path.read_text())
    results = data.get("results", {})
    stale = [k for k, e in results.items() if e.get("model") == "idream" and e.get("intention", "none") != "none"]
    for k in stale:
        del results[k]
    write_json(path, data)
    return len(stale)


def standard_evaluation(rec, split, E, out: Path, seed: int = 0, log_fn=print) -> list[dict]:
    """What `train` runs at the end: the standard rows for the model card, on validation (what
    the shipping bars read) and then on test (read once, to report)."""
    ds = rec.dataset
    rows = []
    for name in ("valid", "test"):
        rows += [baseline_entry("popularity", ds, split, name, E, seed),
                 baseline_entry("textknn", ds, split, name, E, seed)]
        rows += evaluate_checkpoint(rec, name, [1, 10, 50], None, None, "none", seed, split=split)
        rows += evaluate_checkpoint(rec, name, [1], None, None, "generated", seed, split=split)
    for r in rows:
        cmd = (f"python -m idream evaluate --checkpoint {out} --split {r['split']} --save "
               + (f"--baseline {r['model']}" if r["model"] != "idream" else
                  f"--steps {r['steps']} --intention {r['intention']} --seed {seed}"))
        update_metrics(out, [r], ds.name, cmd)
        log_fn(f"{r['split']:<5} {r['label']:<36} NDCG@10={r['metrics']['NDCG@10']:.4f} "
               f"HR@10={r['metrics']['HR@10']:.4f}")
    return rows


# ---------------------------------------------------------------------------------------------

def _find(results: dict, **want) -> dict | None:
    for e in results.values():
        if all(e.get(k) == v for k, v in want.items()):
            return e
    return None


def quality_checks(metrics: dict, w: float, rho: float, seed: int = 0, split: str = "valid") -> list[dict]:
    """The shipping bars, computed from metrics.json on the validation split: they decide what
    ships, so they never read test."""
    res = metrics.get("results", {})
    pop = _find(res, model="popularity", split=split)
    knn = _find(res, model="textknn", split=split)
    one = _find(res, model="idream", split=split, steps=1, intention="none", w=w, seed=seed)
    gen = _find(res, model="idream", split=split, steps=1, intention="generated", w=w, rho=rho, seed=seed)
    checks = []
    if pop and one:
        checks.append(("iDream unguided one-step NDCG@10 / popularity NDCG@10", one["metrics"]["NDCG@10"],
                       pop["metrics"]["NDCG@10"], 1.10))
    if knn and one:
        checks.append(("iDream unguided one-step NDCG@10 / text-kNN NDCG@10", one["metrics"]["NDCG@10"],
                       knn["metrics"]["NDCG@10"], 1.10))
    if gen and one:
        checks.append(("iDream generated intentions HR@10 / unguided HR@10", gen["metrics"]["HR@10"],
                       one["metrics"]["HR@10"], 2.0))
    return [{"check": c, "value": a, "reference": b, "ratio": (a / b if b else float("inf")),
             "bar": bar, "passed": b > 0 and a / b >= bar} for c, a, b, bar in checks]


def bars_markdown(checks: list[dict]) -> str:
    """The shipping bars as a Markdown table."""
    lines = ["| bar (validation) | value | reference | ratio | bar | |", "|---|---|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c['check']} | {c['value']:.4f} | {c['reference']:.4f} | {c['ratio']:.2f}× | "
                     f"≥ {c['bar']:.2f}× | {'pass' if c['passed'] else 'FAIL'} |")
    return "\n".join(lines)


def results_table(metrics: dict, split: str = "test") -> str:
    rows = [e for e in metrics.get("results", {}).values() if e["split"] == split]
    order = {"popularity": 0, "textknn": 1, "idream": 2}
    rows.sort(key=lambda e: (order.get(e["model"], 9), e.get("intention", ""), e.get("steps", 0)))
    lines = ["| model | " + " | ".join(METRIC_KEYS) + " |", "|---" * (len(METRIC_KEYS) + 1) + "|"]
    for e in rows:
        lines.append(f"| {e['label']} | " + " | ".join(f"{e['metrics'][k]:.4f}" for k in METRIC_KEYS) + " |")
    return "\n".join(lines)


