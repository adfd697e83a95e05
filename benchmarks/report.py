"""Evaluation runs that are written down: metrics.json, the model card, cold-start timing."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.peers.baselines import popularity_scorer, textknn_scorer
from benchmarks.results import METRIC_KEYS, machine
from idream.catalog import item_embeddings
from idream.checkpoint import atomic_write, read_config, write_json
from idream.data import chronological_split, evaluation_cases, load_dataset
from idream.evaluate import dump_rankings, evaluate_recommender, generated_intentions, rank_all


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


def evaluate_command(a) -> dict:
    """The body of `python -m idream evaluate`."""
    command = "python -m idream " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["evaluate"] \
        else "python -m idream evaluate"
    if a.baseline:
        from idream import text
        if a.checkpoint:
            cfg = read_config(Path(a.checkpoint))
            ds_spec, L = a.dataset or cfg["data"]["dataset"], cfg["data"]["history_len"]
            tm, desc = cfg["text"]["backend"], cfg["text"].get("descriptions", "template")
        else:
            if not a.dataset:
                raise ValueError("--baseline needs --dataset (or --checkpoint)")
            ds_spec, L, tm = a.dataset, a.history_len, a.text_model
            desc = getattr(a, "descriptions", None) or "template"
        ds = load_dataset(ds_spec)
        split = chronological_split(ds, L)
        E = item_embeddings(ds, text.get_backend(tm), desc, cache_dir=a.cache_dir, progress=False) \
            if a.baseline == "textknn" else None
        entries = [baseline_entry(a.baseline, ds, split, a.split, E, a.seed, a.dump_rankings, getattr(a, "users", 0))]
        if a.checkpoint and a.save:
            update_metrics(Path(a.checkpoint), entries, ds.name, command)
        return {"dataset": ds.name, "split": a.split, "seed": a.seed, "results": entries}
    if not a.checkpoint:
        raise ValueError("evaluate needs --checkpoint DIR (or --baseline NAME --dataset D)")
    from idream.recommender import Recommender
    rec = Recommender.load(a.checkpoint)
    if a.cache_dir:
        rec.config["cache_dir"] = a.cache_dir
    entries = evaluate_checkpoint(rec, a.split, a.steps, a.w, a.rho, a.intention, a.seed,
                                  a.dump_rankings, users=getattr(a, "users", 0))
    if a.save:
        update_metrics(Path(a.checkpoint), entries, rec.dataset.name, command)
        write_model_card(Path(a.checkpoint))
    return {"dataset": rec.dataset.name, "split": a.split, "seed": a.seed, "results": entries}


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


def write_model_card(ckpt: Path) -> Path:
    """README.md of a checkpoint, generated from config.json and metrics.json (never typed in)."""
    ckpt = Path(ckpt)
    cfg = read_config(ckpt)
    mpath = ckpt / "metrics.json"
    metrics = json.loads(mpath.read_text()) if mpath.exists() else {}
    g = cfg.get("guidance", {})
    tr = cfg.get("train", {})
    tl = cfg.get("train_log", {})
    m = cfg["model"]
    k = tr.get("future_k", 1) if m.get("encoder") == "causal" else 1  # the in-context form ranks one target
    targets = (f"the next {k} items (weights {tr.get('future_decay')}^j; the next alone with an intention)"
               if k > 1 else "the next item")
    size = sum(f.stat().st_size for f in ckpt.glob("*.safetensors"))
    lines = [
        f"# iDream checkpoint: {cfg['data']['name']}",
        "",
        "A text-guided diffusion recommender (iDreamRec, arXiv 2410.13428) trained on "
        f"**{cfg['data']['name']}** ({cfg['data']['n_items']} items).",
        "",
        "## How it was made",
        "",
        f"```\n{tr.get('command', 'python -m idream train ...')}\n```",
        "",
        f"- Descriptions: {cfg['text']['descriptions']} ({cfg['text'].get('template_version', '')}); "
        f"text model: `{cfg['text']['name']}` ({cfg['text']['dim']}-d, fixed).",
        f"- Transform: `{cfg['transform']}`. Item vectors: text vector"
        + (" + learned residual (zero for items unseen in training)" if m.get("n_items")
           else " only (the paper's form)")
        + ".",
        ("- History encoder: causal self-attention over the history (as SASRec), depth "
         f"{m.get('encoder_depth')}; its last state is one token of the denoiser."
         if m.get("encoder") == "causal" else
         "- History encoder: none; every history item is a token of the denoiser (in-context)."),
        f"- Denoiser: width {m['width']}, depth {m['depth']}, heads {m['heads']}, history length "
        f"{m['history_len']}, dropout {m['dropout']}; T={cfg['diffusion']['T']} "
        f"({cfg['diffusion']['schedule']} β).",
        f"- Training: lr {tr.get('lr')}, batch {tr.get('batch_size')}, condition dropout "
        f"{tr.get('p_uncond')}, intention probability {tr.get('p_intention')}, ranking-loss weight "
        f"{tr.get('ce_weight')} (τ={tr.get('tau')}), ranking targets: {targets}, "
        f"share of targets at t=T−1 {tr.get('p_t_max', 0.0)}, seed {tr.get('seed')}; "
        f"{tl.get('epochs_run', '?')} epochs run, best epoch {tl.get('best_epoch', '?')} "
        f"(validation NDCG@10 {tl.get('best_valid_NDCG@10', '?')}), {tl.get('minutes', '?')} minutes.",
        f"- Guidance defaults chosen on validation: w = {g.get('w')}, ρ = {g.get('rho')} "
        f"(w grid {g.get('w_grid')}, ρ grid {g.get('rho_grid')}"
        + (f", HR@10 lift per ρ {g.get('rho_lift')}" if g.get("rho_lift") else "") + ")."
        + (f" Text-steered (`idream.steer`): ρ ∈ [0, 1] turns the oracle toward the intention's text "
           f"direction, the learned term at κρ, κ = {g.get('kappa')}; "
           f"ρ is {g.get('chosen_on', '').split('ρ ', 1)[-1]}; "
           f"re-chosen without retraining by `python -m idream guidance --checkpoint {ckpt}`."
           + (f" The slider offers ρ up to {g['rho_max']:g}, the best free-phrased precision on the dev "
              "half (`python -m idream bench text --set-slider`)." if "rho_max" in g else "")
           if g.get("mode") == "turn" else ""),
        (f"- New items (no learned residual; `idream/newitems.py`): score max(own, mean + spread·"
         f"(a·z + b)), z their text closeness to the history; a = {n['a']:g}, b = {n['b']:g}, chosen on "
         f"{n['chosen_on'].split(': ', 1)[0]}; set by `python -m idream new-items`."
         + (f" With an intention, + c·(ρ/ρ₀)·z_q, z_q their text closeness to it; c = {n['c']:g}, chosen "
            f"on the {n['c_chosen_on'].split(': ', 1)[0]}; set by `python -m idream new-items --intention`."
            if n.get("c_chosen_on") else "")
         if (n := cfg.get("new_items", {})).get("a") else
         "- New items (no learned residual) rank by their own score alone."),
        f"- Weights and vectors: {size / 1e6:.1f} MB of safetensors.",
        "",
        "## Results",
        "",
        f"Protocol: {metrics.get('protocol', '')}. Machine: {metrics.get('machine', '')}.",
        "",
        "Test split (read once, to report):",
        "",
        results_table(metrics) if metrics else "_not evaluated yet_",
        "",
        "Validation split (what the choices and the shipping bars read):",
        "",
        results_table(metrics, "valid") if metrics else "_not evaluated yet_",
        "",
    ]
    cmds = sorted({e["command"] for e in metrics.get("results", {}).values() if e.get("command")})
    if cmds:
        lines += ["Rows written by:", "", "```", *cmds, "```", ""]
    checks = quality_checks(metrics, float(g.get("w", 0.0)), float(g.get("rho", 1.0)),
                            int(tr.get("seed", 0))) if metrics else []
    if checks:
        lines += ["### Shipping bars (validation split, same run)", "", bars_markdown(checks), ""]
    hist = tl.get("history", [])
    if hist:
        lines += ["## Training curve (validation, one-step, unguided, w = 0)", "",
                  "| epoch | train MSE | train CE | valid NDCG@10 | valid HR@10 | minutes |",
                  "|---|---|---|---|---|---|"]
        for r in hist:
            lines.append(f"| {r['epoch']} | {r.get('mse', '')} | {r.get('ce', '')} | "
                         f"{r['valid_NDCG@10']} | {r['valid_HR@10']} | {r['minutes']} |")
        lines.append("")
    cs = metrics.get("cold_start")
    if cs:
        lines += ["## Cold start", "",
                  f"Loading this checkpoint and answering one recommendation from a cold process: "
                  f"median {cs['median_s']:.2f} s over {cs['repeats']} runs (max {cs['max_s']:.2f} s) "
                  f"on {cs['machine']}, measured by `{cs['command']}`.", ""]
    notes = ckpt / "NOTES.md"
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    lines += ["## Limits", "",
              "- MovieLens ratings are used as implicit interactions; template descriptions carry "
              "little collaborative signal, which is why the learned residual and ranking loss exist.",
              "- Generated intentions are built from the target's own metadata, so guided numbers "
              "measure how well the model follows an intention, not how well it reads minds.",
              "- Data: MovieLens © GroupLens (F. M. Harper and J. A. Konstan, 2015, \"The MovieLens "
              "Datasets: History and Context\", ACM TiiS 5(4)); not redistributed here.", ""]
    path = ckpt / "README.md"
    text = "\n".join(lines)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def bench_coldstart(ckpt: str, repeats: int = 5) -> dict:
    """Median wall time of a fresh `python -m idream recommend` process (load + one answer)."""
    cfg = read_config(Path(ckpt))
    ds = load_dataset(cfg["data"]["dataset"])
    first = ds.item_meta(0)["item_id"]
    cmd = [sys.executable, "-m", "idream", "recommend", "--checkpoint", str(ckpt), "--history",
           str(first), "--intention", "something light and funny from the 90s", "--json"]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    out = {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
           "repeats": repeats, "machine": machine(),
           "command": f"python -m idream bench coldstart --checkpoint {ckpt} --repeats {repeats}"}
    path = Path(ckpt) / "metrics.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data["cold_start"] = out
    write_json(path, data)
    write_model_card(Path(ckpt))
    return out
