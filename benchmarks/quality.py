"""Quality: every model on the same split and seeds (popularity, text-kNN, SASRec, DreamRec, iDream).

Results are written as JSON and Markdown under a results folder, with the dataset, split, seeds,
machine and git commit in the header; the README shows those files, never typed-in numbers.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from idream.evaluation.references import popularity_scorer, textknn_scorer, textsearch_scorer
from benchmarks.results import METRIC_KEYS, git_commit, machine, write_results
from idream.data.catalog import item_embeddings
from idream.data.datasets import chronological_split, cold_items, load_dataset, test_cases
from idream.training.device import training_device
from idream.evaluation.evaluate import evaluate_recommender, generated_intentions, rank_all

MODELS = ("popularity", "textknn", "sasrec", "dreamrec", "idream", "textsearch")


def _params(*modules) -> int:
    return int(sum(p.numel() for m in modules for p in m.parameters()))


def stopped_by(epochs_run: int, best_epoch: int, patience: int) -> str:
    """"early" when validation had not improved for `patience` epochs (the model converged),
    "cap" when the minute budget or the epoch count ended it first."""
    return "early" if epochs_run - best_epoch >= patience else "cap"


def _metrics(res) -> dict:
    """The reported metrics of a result whose scores were all finite (else NonFiniteScores)."""
    res.require_finite()
    return {k: res.metrics[k] for k in METRIC_KEYS}


def run_quality(dataset: str, seeds, models=MODELS, train_overrides: dict | None = None,
                sasrec_overrides: dict | None = None, log_fn=print,
                device: str = "cpu", on_rows=None, dreamrec_overrides: dict | None = None,
                cold_frac: float = 0.0) -> dict:
    """Train and evaluate every model on one split for each seed; returns per-run rows.
    SASRec runs with its settings tuned on validation (SASRecConfig's defaults) and iDream's time
    budget and budget clock unless sasrec_overrides say otherwise; dreamrec_overrides go over train_overrides for
    DreamRec alone. on_rows(result) is called after each model, so a long run that is stopped
    keeps what it finished. cold_frac > 0: the cold-start protocol, a seeded share of the items
    (drawn per seed) never trains, and the rows also report the cases whose target is cold/warm."""
    from benchmarks.peers.dreamrec import dreamrec_config
    from benchmarks.peers.sasrec import SASRecConfig, evaluate_sasrec, train_sasrec
    from idream.training.train import TrainConfig, train

    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown models {unknown}: use some of {', '.join(MODELS)}")
    training_device(device)  # a clear error now, not after the first models have run
    commit = git_commit()  # the code that runs, even if the tree moves on during a long run
    ds = load_dataset(dataset)
    test = test_cases(ds, 10)  # read once per model, after its training, to report
    tests = {10: test}  # the diffusion models' cases, by their history window
    rows = []
    result = {"dataset": ds.name, "split": "chronological leave-one-out, test", "seeds": list(seeds),
              "machine": machine(device), "commit": commit, "threads": torch.get_num_threads(),
              "device": device, "rows": rows, **({"cold_frac": cold_frac} if cold_frac else {})}
    E = None

    def measured(evaluate, cases, cold) -> dict:
        """Metrics on the test cases and, under the cold protocol, on those whose target is
        cold and those whose target is warm."""
        out = {"metrics": _metrics(evaluate(cases))}
        if len(cold):
            is_cold = np.isin(cases.targets, cold)
            for part, idx in (("cold", np.flatnonzero(is_cold)), ("warm", np.flatnonzero(~is_cold))):
                out[f"metrics_{part}"] = _metrics(evaluate(cases.subset(idx)))
                out[f"cases_{part}"] = len(idx)
        return out

    def text_backend():
        from idream import text
        return text.get_backend((train_overrides or {}).get("text_model", "minilm"))

    def item_vectors() -> np.ndarray:
        """The catalog's text vectors (N, D_text), embedded once for the text baselines."""
        nonlocal E
        E = item_embeddings(ds, text_backend(), progress=False) if E is None else E
        return E

    def run_model(name: str, seed: int, split, cold) -> list[dict]:
        t = time.time()
        if name == "popularity":
            pop = popularity_scorer(split, ds.n_items)
            m = measured(lambda c: rank_all(lambda r: pop(c.histories[r]), c), test, cold)
            return [{"model": name, "seed": seed, **m, "train_s": round(time.time() - t, 1), "params": 0}]
        if name == "textknn":
            knn = textknn_scorer(item_vectors())
            m = measured(lambda c: rank_all(lambda r: knn(c.histories[r]), c), test, cold)
            return [{"model": name, "seed": seed, **m, "train_s": 0.0, "params": 0}]
        if name == "textsearch":  # the intention row's own sentences, ranked by text alone
            from idream.evaluation.evaluate import intention_vectors
            search, backend = textsearch_scorer(item_vectors()), text_backend()

            def ranked(c):
                Q = intention_vectors(ds, c, backend, seed=seed)
                return rank_all(lambda r: search(Q[r]), c)
            return [{"model": name, "seed": seed, **measured(ranked, test, cold), "train_s": 0.0, "params": 0}]
        if name == "sasrec":  # the same minutes as iDream, the same fitted learning-rate decay
            same = {k: (train_overrides or {}).get(k, getattr(TrainConfig, k)) for k in ("max_minutes", "clock")}
            cfg = SASRecConfig(seed=seed, **{"device": device, **same, **(sasrec_overrides or {})})
            model, info = train_sasrec(split, ds.n_items, cfg, progress=True, log_fn=log_fn)
            return [{"model": name, "seed": seed, **measured(lambda c: evaluate_sasrec(model, c), test, cold),
                     "train_s": round(time.time() - t, 1), "params": _params(model),
                     "valid_NDCG@10": info["best_valid_NDCG@10"], "epochs": info["epochs_run"],
                     "stopped": stopped_by(info["epochs_run"], info["best_epoch"], cfg.patience),
                     "config": info["config"]}]
        # the diffusion models: DreamRec is iDream's code with ID vectors in place of text (peers/dreamrec.py)
        cfg = TrainConfig(dataset=dataset, seed=seed, cold_frac=cold_frac, cold_seed=seed,
                          **{"device": device, **(train_overrides or {})})
        if name == "dreamrec":
            cfg = dreamrec_config(cfg, **(dreamrec_overrides or {}))
        rec, _, _ = train(cfg, progress=False, log_fn=lambda s: log_fn(f"{name} {s}"))
        cases = tests.setdefault(rec.history_len, test_cases(ds, rec.history_len))
        train_s = round(time.time() - t, 1)
        params = _params(rec.model, rec.table)
        g = rec.config["guidance"]
        unguided = measured(lambda c: evaluate_recommender(rec, c, steps=1, w=g["w"], rho=0.0, seed=seed),
                            cases, cold)
        log = rec.config.get("train_log", {})
        epochs = log.get("epochs_run")
        stopped = stopped_by(epochs, log["best_epoch"], cfg.patience) if epochs else None
        out = [{"model": name, "seed": seed, **unguided, "train_s": train_s,
                "params": params, "w": g["w"], "epochs": epochs, "stopped": stopped,
                "valid_NDCG@10": g.get("w_grid", {}).get(str(g["w"]))}]
        if name == "idream" and rec.new_item_rule.on:  # the same model, new items by their own score
            rule = rec.config.pop("new_items")  # (the rule is read at every request: nothing to reset)
            out.append({"model": "idream-own-score", "seed": seed,
                        **measured(lambda c: evaluate_recommender(rec, c, steps=1, w=g["w"], rho=0.0, seed=seed),
                                   cases, cold),
                        "train_s": train_s, "params": params, "w": g["w"], "epochs": epochs,
                        "stopped": stopped})
            rec.config["new_items"] = rule
        if name == "idream":
            def guided(c):
                q = generated_intentions(rec, c, seed=seed)
                return evaluate_recommender(rec, c, steps=1, w=g["w"], rho=g["rho"], intentions=q, seed=seed)
            out.append({"model": "idream+intention", "seed": seed, **measured(guided, cases, cold),
                        "train_s": train_s, "params": params, "w": g["w"], "rho": g["rho"],
                        "epochs": epochs, "stopped": stopped})
        return out

    for seed in seeds:
        cold = cold_items(ds, cold_frac, seed) if cold_frac else np.zeros(0, dtype=np.int64)
        split = chronological_split(ds, 10, cold_items=cold)  # what training and every choice may read
        for name in models:  # in the order given: put the one that matters first in a tight budget
            rows.extend(run_model(name, seed, split, cold))
            log_fn(f"{name} seed={seed} test NDCG@10={rows[-1]['metrics']['NDCG@10']:.4f}")
            if on_rows:
                on_rows(result)
    return result


def summarize(result: dict) -> list[dict]:
    """Mean ± std over seeds per model."""
    out = []
    order = [*MODELS, "idream-own-score", "idream+intention"]  # the same row order whatever order they ran in
    for model in sorted(dict.fromkeys(r["model"] for r in result["rows"]), key=order.index):
        rs = [r for r in result["rows"] if r["model"] == model]
        s = {"model": model, "runs": len(rs),
             "train_s": round(statistics.mean(r["train_s"] for r in rs), 1),
             "params": rs[0]["params"],
             "epochs": sorted({r["epochs"] for r in rs if r.get("epochs") is not None}),
             "capped": sum(r.get("stopped") == "cap" for r in rs)}
        for k in METRIC_KEYS:
            s[k] = _mean_std([r["metrics"][k] for r in rs])
        for part in ("cold", "warm"):  # the cold-start protocol's two groups of cases
            if all(f"metrics_{part}" in r for r in rs):
                for k in ("HR@10", "NDCG@10"):
                    s[f"{part} {k}"] = _mean_std([r[f"metrics_{part}"][k] for r in rs])
                s[f"{part} cases"] = round(statistics.mean(r[f"cases_{part}"] for r in rs))
        # validation NDCG@10 of the kept epoch / dropout: what every choice was made on
        v = [r["valid_NDCG@10"] for r in rs if r.get("valid_NDCG@10") is not None]
        s["valid_NDCG@10"] = _mean_std(v) if len(v) == len(rs) else None
        out.append(s)
    return out


def _mean_std(v: list) -> tuple:
    return statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0


LABELS = {"popularity": "Popularity", "textknn": "Text-kNN", "sasrec": "SASRec (ours)",
          "dreamrec": "DreamRec (ID vectors)", "idream": "iDream, 1-step, unguided",
          "idream-own-score": "iDream, 1-step, unguided, new items by their own score",
          "idream+intention": "iDream, 1-step, generated intention",
          "textsearch": "Text search, generated intention"}


def quality_markdown(result: dict) -> str:
    lines = [f"Dataset **{result['dataset']}**, {result['split']} split, seeds {result['seeds']}, "
             f"commit `{result['commit']}`, machine: {result['machine']}"
             f"{', %d torch thread(s)' % result['threads'] if result.get('threads') else ''}. "
             "Mean ± std over seeds."
             f"{' Whole run: %.0f minutes.' % result['wall_minutes'] if result.get('wall_minutes') else ''}", "",
             "| model | " + " | ".join(METRIC_KEYS) + " | valid NDCG@10 | train s | epochs | params |",
             "|---" * (len(METRIC_KEYS) + 5) + "|"]
    for s in summarize(result):
        cells = " | ".join("–" if s[k] is None else f"{s[k][0]:.4f} ± {s[k][1]:.4f}"
                           for k in [*METRIC_KEYS, "valid_NDCG@10"])
        ep = s["epochs"]
        ep = "–" if not ep else f"{ep[0]}" if len(ep) == 1 else f"{ep[0]}–{ep[-1]}"
        if s["capped"]:  # the budget or the epoch count ended training before early stopping
            ep += f" (capped: {s['capped']} of {s['runs']})"
        lines.append(f"| {LABELS.get(s['model'], s['model'])} | {cells} | {s['train_s']:.0f} | {ep} | "
                     f"{s['params']:,} |")
    if result.get("cold_frac"):
        lines += ["", f"Cold-start protocol: a seeded {result['cold_frac']:.0%} of the items (drawn per seed) never "
                  "trains; they stay in the catalog with their text vectors and no learned residual. Test "
                  "cases split by whether their target is one of them:", "",
                  "| model | cold NDCG@10 | cold HR@10 | warm NDCG@10 | warm HR@10 | cold / warm cases |",
                  "|---|---|---|---|---|---|"]
        keys = ("cold NDCG@10", "cold HR@10", "warm NDCG@10", "warm HR@10")
        for s in summarize(result):
            if "cold NDCG@10" in s:
                cells = " | ".join(f"{s[k][0]:.4f} ± {s[k][1]:.4f}" for k in keys)
                lines.append(f"| {LABELS.get(s['model'], s['model'])} | {cells} | "
                             f"{s['cold cases']} / {s['warm cases']} |")
    sas = [r["config"] for r in result["rows"] if r["model"] == "sasrec" and "config" in r]
    if sas:
        c = sas[0]
        lines += ["", f"SASRec: {c['train_on']}, max_len {c['max_len']}, hidden {c['hidden']}, dropout "
                  f"{c['dropout']}, lr {c['lr']} (tuned on validation: results/tuning-sasrec.md), "
                  f"{c['max_minutes']:g}-minute budget with the learning-rate decay fitted to it."]
    if any(s["capped"] for s in summarize(result)):
        lines += ["", "Capped: the budget or the epoch count ended that many runs before early stopping "
                  "on validation, so they are not converged."]
    lines += [f"\nNote: {result[k]}." for k in sorted(result) if k.endswith("_note")]
    if result.get("command"):
        lines += ["", f"Command: `{result['command']}`"]
    md = "\n".join(lines) + "\n"
    if not result.get("complete", True):  # saved after each model: say a stopped run is partial
        md = "**Partial: the run has not finished (or was stopped); these rows are done.**\n\n" + md
    return md


def main_quality(a) -> dict:
    if a.threads:
        torch.set_num_threads(a.threads)
    overrides = json.loads(a.train_overrides) if a.train_overrides else {}
    sas = json.loads(a.sasrec_overrides) if a.sasrec_overrides else {}
    dream = json.loads(a.dreamrec_overrides) if a.dreamrec_overrides else {}
    command = "python -m benchmarks " + " ".join(a.argv)
    start = time.time()

    def save(result, final=False):  # after every model: a stopped run keeps its finished rows
        result["command"] = command
        result["complete"] = final
        result["wall_minutes"] = round((time.time() - start) / 60, 1)
        return write_results(result, a.out, quality_stem(result), quality_markdown(result))

    result = run_quality(a.dataset, a.seeds, tuple(a.models), overrides, sas,
                         log_fn=lambda s: print(s, file=sys.stderr, flush=True),
                         device=a.device, on_rows=save,
                         dreamrec_overrides=dream, cold_frac=a.cold)
    print(save(result, final=True).read_text())
    return result


def quality_stem(result: dict) -> str:
    """The results files' name: bench-quality-<dataset>, -cold under the cold-start protocol."""
    return f"bench-quality-{result['dataset']}" + ("-cold" if result.get("cold_frac") else "")


def main_table(a) -> Path:
    """Rewrite a quality table from its JSON (the rows are what the run measured; no retraining)."""
    path = Path(a.json)
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"cannot read {path}: {e}") from None
    if not isinstance(result, dict) or not result.get("rows"):
        raise SystemExit(f"{path} is not a quality benchmark result (no rows)")
    md = quality_markdown(result)
    out = path.with_suffix(".md")
    out.write_text(md)
    print(md)
    return out


def merge_quality(results: list[dict]) -> dict:
    """One result from quality runs made side by side (one process per seed or per model): their rows
    together. Refuses runs of another dataset, split or cold-start fraction, or a (model, seed) twice."""
    first = results[0]
    for key in ("dataset", "split", "cold_frac"):
        if len({json.dumps(r.get(key)) for r in results}) > 1:
            raise ValueError(f"cannot merge runs with different {key}: {[r.get(key) for r in results]}")
    seen, rows = set(), []
    for r in results:
        for row in r["rows"]:
            key = (row["model"], row["seed"])
            if key in seen:
                raise ValueError(f"{row['model']} seed {row['seed']} is in more than one run")
            seen.add(key)
            rows.append(row)
    out = {k: v for k, v in first.items() if k not in ("rows", "command", "wall_minutes")}
    out["rows"] = rows
    out["seeds"] = sorted({row["seed"] for row in rows})
    out["commit"] = ", ".join(dict.fromkeys(r["commit"] for r in results))
    out["complete"] = all(r.get("complete", True) for r in results)
    out["command"] = "  and, side by side,  ".join(r.get("command", "?") for r in results) + "  (rows merged)"
    return out


def main_merge(a) -> Path:
    try:
        results = [json.loads(Path(p).read_text()) for p in a.jsons]
        result = merge_quality(results)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"cannot merge {' '.join(a.jsons)}: {e}") from None
    md = write_results(result, a.out, quality_stem(result), quality_markdown(result))
    print(md.read_text())
    return md
