"""Benchmarks: every model on the same split and seeds (quality), and request latency (speed).

Results are written as JSON and Markdown under a results folder, with the dataset, split, seeds,
machine and git commit in the header; the README shows those files, never typed-in numbers.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.peers.baselines import popularity_scorer, textknn_scorer
from benchmarks.report import METRIC_KEYS, machine
from idream.catalog import item_embeddings
from idream.data import chronological_split, cold_items, load_dataset, test_cases
from idream.device import training_device
from idream.evaluate import evaluate_recommender, generated_intentions, rank_all
from idream.metrics import mask_seen, top_k

MODELS = ("popularity", "textknn", "sasrec", "dreamrec", "idream")


def git_commit() -> str:
    """The checked-out commit; IDREAM_GIT_COMMIT names it where the tree is a copy (a GPU machine)."""
    if os.environ.get("IDREAM_GIT_COMMIT"):
        return os.environ["IDREAM_GIT_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _params(*modules) -> int:
    return int(sum(p.numel() for m in modules for p in m.parameters()))


def _metrics(res) -> dict:
    """The reported metrics of a result whose scores were all finite (else NonFiniteScores)."""
    res.require_finite()
    return {k: res.metrics[k] for k in METRIC_KEYS}


# ---------------------------------------------------------------------------------------------
# Quality
# ---------------------------------------------------------------------------------------------

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
    from benchmarks.peers.sasrec import SASRecConfig, evaluate_sasrec, train_sasrec
    from idream.train import TrainConfig, train

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

    def run_model(name: str, seed: int, split, cold) -> list[dict]:
        nonlocal E
        t = time.time()
        if name == "popularity":
            pop = popularity_scorer(split, ds.n_items)
            m = measured(lambda c: rank_all(lambda r: pop(c.histories[r]), c), test, cold)
            return [{"model": name, "seed": seed, **m, "train_s": round(time.time() - t, 1), "params": 0}]
        if name == "textknn":
            from idream import text
            tm = (train_overrides or {}).get("text_model", "minilm")
            E = item_embeddings(ds, text.get_backend(tm), progress=False) if E is None else E
            knn = textknn_scorer(E)
            m = measured(lambda c: rank_all(lambda r: knn(c.histories[r]), c), test, cold)
            return [{"model": name, "seed": seed, **m, "train_s": 0.0, "params": 0}]
        if name == "sasrec":  # the same minutes as iDream, the same fitted learning-rate decay
            same = {k: (train_overrides or {}).get(k, getattr(TrainConfig, k)) for k in ("max_minutes", "clock")}
            cfg = SASRecConfig(seed=seed, **{"device": device, **same, **(sasrec_overrides or {})})
            model, info = train_sasrec(split, ds.n_items, cfg, progress=True, log_fn=log_fn)
            return [{"model": name, "seed": seed, **measured(lambda c: evaluate_sasrec(model, c), test, cold),
                     "train_s": round(time.time() - t, 1), "params": _params(model),
                     "valid_NDCG@10": info["best_valid_NDCG@10"], "epochs": info["epochs_run"],
                     "config": info["config"]}]
        # the diffusion models: DreamRec is iDream's code with ID vectors in place of text
        cfg = TrainConfig(dataset=dataset, seed=seed, cold_frac=cold_frac, cold_seed=seed,
                          **{"device": device, **(train_overrides or {})})
        if name == "dreamrec":
            cfg = replace(cfg, item_source="id", **(dreamrec_overrides or {}))
        rec, _, _ = train(cfg, progress=False, log_fn=lambda s: log_fn(f"{name} {s}"))
        cases = tests.setdefault(rec.history_len, test_cases(ds, rec.history_len))
        train_s = round(time.time() - t, 1)
        params = _params(rec.model, rec.items)
        g = rec.config["guidance"]
        unguided = measured(lambda c: evaluate_recommender(rec, c, steps=1, w=g["w"], rho=0.0, seed=seed),
                            cases, cold)
        epochs = rec.config.get("train_log", {}).get("epochs_run")
        out = [{"model": name, "seed": seed, **unguided, "train_s": train_s,
                "params": params, "w": g["w"], "epochs": epochs,
                "valid_NDCG@10": g.get("w_grid", {}).get(str(g["w"]))}]
        if name == "idream":
            def guided(c):
                q = generated_intentions(rec, c, seed=seed)
                return evaluate_recommender(rec, c, steps=1, w=g["w"], rho=g["rho"], intentions=q, seed=seed)
            out.append({"model": "idream+intention", "seed": seed, **measured(guided, cases, cold),
                        "train_s": train_s, "params": params, "w": g["w"], "rho": g["rho"],
                        "epochs": epochs})
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
    order = [*MODELS, "idream+intention"]  # the same row order whatever order they ran in
    for model in sorted(dict.fromkeys(r["model"] for r in result["rows"]), key=order.index):
        rs = [r for r in result["rows"] if r["model"] == model]
        s = {"model": model, "runs": len(rs),
             "train_s": round(statistics.mean(r["train_s"] for r in rs), 1),
             "params": rs[0]["params"],
             "epochs": sorted({r["epochs"] for r in rs if r.get("epochs") is not None})}
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
          "idream+intention": "iDream, 1-step, generated intention"}


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
    lines += [f"\nNote: {result[k]}." for k in sorted(result) if k.endswith("_note")]
    if result.get("command"):
        lines += ["", f"Command: `{result['command']}`"]
    md = "\n".join(lines) + "\n"
    if not result.get("complete", True):  # saved after each model: say a stopped run is partial
        md = "**Partial: the run has not finished (or was stopped); these rows are done.**\n\n" + md
    return md


def write_results(result: dict, out_dir: Path, stem: str, markdown: str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2, default=float))
    (out_dir / f"{stem}.md").write_text(markdown)
    return out_dir / f"{stem}.md"


# ---------------------------------------------------------------------------------------------
# Speed
# ---------------------------------------------------------------------------------------------

def _time(fn, repeats: int, warmup: int = 2) -> dict:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts = np.array(ts) * 1000
    return {"median_ms": round(float(np.median(ts)), 3), "p95_ms": round(float(np.percentile(ts, 95)), 3)}


def _top10(search, oracles: torch.Tensor, seen: list, chunk: int = 16) -> torch.Tensor:
    """search(oracles, seen) -> top-10 indices, a few rows at a time (a 1M-item score matrix
    per row).  (U, D) -> (U, 10)"""
    return torch.cat([search(oracles[i:i + chunk], seen[i:i + chunk]) for i in range(0, len(oracles), chunk)])


def _recall(found: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean share of each row's true top-10 that was found.  (U, 10), (U, 10) -> float"""
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def run_speed(ckpt: str, sizes=(1682, 100_000, 1_000_000), repeats: int = 30, log_fn=print,
              users: int = 200) -> dict:
    """Per-request latency of recommend (oracle + scoring + masking + top-k) at several catalog
    sizes, next to the floor (one matrix-vector product over the catalog), and training throughput.

    Retrieval: at every size both searches of idream.index (exact, and the HNSW graph whatever the
    size) with their build time, memory, one-step latency and recall@10 against the exact ranking,
    on the oracles of `users` real users (their last test window, their earlier items left out).
    What decides idream.index.EXACT_BELOW."""
    import faiss

    from idream.index import EF_SEARCH, ItemIndex
    from idream.recommender import Recommender

    torch.set_grad_enabled(False)
    rec = Recommender.load(ckpt)
    V = rec.item_vectors()
    N, D = V.shape
    rng = np.random.default_rng(0)
    hist_items = [rec.dataset.item_meta(i)["item_id"] for i in range(5)]
    idx = [rec.resolve_item(i) for i in hist_items]
    from idream.data import window
    hist = window(np.asarray(idx), len(idx), rec.history_len)[None]
    intention = "something light and funny from the 90s"
    cases = test_cases(rec.dataset, rec.history_len)
    real = cases.subset(np.sort(np.random.default_rng(0).choice(len(cases), min(users, len(cases)),
                                                                 replace=False)))
    oracles = rec.oracle(real.histories)  # (U, D) one step, the checkpoint's w and rho
    rows, retrieval = [], []
    for n in sizes:
        if n <= N:
            Vn = V[:n]
        else:  # synthetic rows with the catalog's per-dimension mean and spread
            mu, sd = V.mean(0), V.std(0)
            extra = torch.from_numpy(rng.standard_normal((n - N, D), dtype=np.float32)) * sd + mu
            Vn = torch.cat([V, extra])
        n_repeats = repeats if n < 500_000 else max(5, repeats // 3)
        for steps in (1, 50):
            for with_q in (False, True):
                def request():
                    q = rec.encode_intentions([intention]) if with_q else None
                    x0 = rec.oracle(hist, q, steps=steps, seed=0)
                    scores = mask_seen(x0 @ Vn.T, [np.asarray(idx)])
                    return top_k(scores, 10)
                r = _time(request, n_repeats)
                rows.append({"catalog": n, "steps": steps, "intention": with_q, **r})
        x = torch.randn(1, D)
        floor = _time(lambda: x @ Vn.T, repeats)
        for r in rows:
            if r["catalog"] == n:
                r["floor_median_ms"] = floor["median_ms"]
                r["ratio_to_floor"] = round(r["median_ms"] / floor["median_ms"], 1)
        log_fn(f"catalog {n}: floor {floor['median_ms']} ms")
        seen = [s[s < n] for s in real.seen]
        exact = ItemIndex(Vn, "exact")  # the ranking the graph's recall is measured against
        truth = _top10(lambda q, s: exact.search(q, 10, s)[1], oracles, seen)
        for kind in ("exact", "hnsw"):
            t = time.perf_counter()
            index = ItemIndex(Vn, kind)
            build_s = time.perf_counter() - t
            found = _top10(lambda q, s: index.search(q, 10, s)[1], oracles, seen)
            row = {"catalog": n, "search": kind, "build_s": round(build_s, 3), "index_bytes": index.nbytes(),
                   "recall@10": round(_recall(found, truth), 4)}
            for with_q in (False, True):
                def request():
                    q = rec.encode_intentions([intention]) if with_q else None
                    return index.search(rec.oracle(hist, q, steps=1, seed=0), 10, [np.asarray(idx)])
                r = _time(request, n_repeats)
                row.update({f"{'intention_' if with_q else ''}{k}": v for k, v in r.items()})
            if kind == "hnsw":  # the dial behind EF_SEARCH
                row["ef_search"] = index.ef_search
                row["recall@10_by_ef"] = {}
                for ef in (32, 64, EF_SEARCH, 2 * EF_SEARCH):
                    index.ef_search = ef
                    found = _top10(lambda q, s: index.search(q, 10, s)[1], oracles, seen)
                    row["recall@10_by_ef"][str(ef)] = round(_recall(found, truth), 4)
                index.ef_search = row["ef_search"]
            retrieval.append(row)
            log_fn(f"catalog {n}: {kind} build {row['build_s']} s, recall@10 {row['recall@10']}, "
                   f"{row['median_ms']} ms")
        Vn = index = None  # free the catalog and its graph before the next size
    # training throughput: denoised targets per second of the training step, in the form the
    # checkpoint trains (the causal encoder denoises every position of 32 sequences at once)
    from idream.diffusion import training_loss
    from idream.train import TrainConfig
    torch.set_grad_enabled(True)
    model = rec.model.train()
    L, causal = rec.history_len, rec.model.cfg.encoder == "causal"
    S = TrainConfig.seq_batch_size if causal else TrainConfig.batch_size
    h = torch.randint(0, N, (S, L))
    valid = torch.ones(S, L, dtype=torch.bool)
    B = S * L if causal else S  # targets per step
    seq_i, pos_i = torch.arange(S).repeat_interleave(L), torch.arange(L).repeat(S)
    y = torch.randint(0, N, (B,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        t = torch.randint(0, rec.T, (B,))
        x0 = V[y]
        x_t = rec.diffusion.q_sample(x0, t, torch.randn_like(x0))
        yes, no = torch.ones(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)
        if causal:
            pred = model.forward_sequence(x_t, t, V[h], valid, seq_i, pos_i, yes, torch.zeros(B, D), no)
        else:
            pred = model(x_t, t, V[h], valid, yes, torch.zeros(B, D), no)
        loss, _ = training_loss(pred, x0, y, V, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tr = _time(step, 10)
    model.eval()
    return {"checkpoint": str(ckpt), "machine": machine(), "commit": git_commit(),
            "threads": torch.get_num_threads(), "repeats": repeats, "rows": rows,
            "retrieval": retrieval, "recall_users": len(real), "faiss": faiss.__version__,
            "train_batch": f"{S} sequences × {L} positions" if causal else f"{S} cases",
            "train_samples_per_s": round(B / (tr["median_ms"] / 1000), 1)}


def speed_markdown(result: dict) -> str:
    lines = [f"Machine: {result['machine']} ({result['threads']} torch threads), commit "
             f"`{result['commit']}`, checkpoint `{result['checkpoint']}`; median and p95 over "
             f"{result['repeats']} requests after warm-up (fewer at 1M items). A request = intention "
             "encoding (when given) + DDIM sampling with guidance + scoring every item + masking + "
             "top-10 (partial selection, no full sort). Floor = one bare matrix-vector product over "
             "the catalog.", "",
             "| catalog | steps | intention | median ms | p95 ms | floor ms | × floor |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['catalog']:,} | {r['steps']} | {'yes' if r['intention'] else 'no'} | "
                     f"{r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['floor_median_ms']:.2f} | "
                     f"{r['ratio_to_floor']} |")
    if result.get("retrieval"):
        lines += ["", f"Retrieval (idream.index, faiss {result['faiss']}): the same one-step request "
                  "with the top-10 from the index's search (exact: every item scored; hnsw: an HNSW "
                  "graph's candidates, rescored exactly, history dropped from them). Recall@10 against "
                  f"the exact ranking on the oracles of {result['recall_users']} real users (their last "
                  "window, their earlier items left out); index memory is what the index holds beyond "
                  "the item vectors; the graph is built on one thread (the same graph in every run).", "",
                  "| catalog | search | build s | index MB | recall@10 | median ms | p95 ms | "
                  "median ms, intention | p95 ms, intention | recall@10 by efSearch |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in result["retrieval"]:
            by_ef = ", ".join(f"{ef}: {v:.3f}" for ef, v in r.get("recall@10_by_ef", {}).items()) or "–"
            lines.append(f"| {r['catalog']:,} | {r['search']} | {r['build_s']:.2f} | "
                         f"{r['index_bytes'] / 2**20:.1f} | {r['recall@10']:.4f} | {r['median_ms']:.2f} | "
                         f"{r['p95_ms']:.2f} | {r['intention_median_ms']:.2f} | {r['intention_p95_ms']:.2f} | "
                         f"{by_ef} |")
    lines += ["", f"Training throughput: {result['train_samples_per_s']:,} denoised targets/s "
              f"(batch: {result.get('train_batch', '256 cases')}).",
              "", f"Command: `{result.get('command', 'python -m idream bench speed')}`"]
    return "\n".join(lines) + "\n"


def main_quality(a) -> dict:
    if a.threads:
        torch.set_num_threads(a.threads)
    overrides = json.loads(a.train_overrides) if a.train_overrides else {}
    sas = json.loads(a.sasrec_overrides) if a.sasrec_overrides else {}
    dream = json.loads(a.dreamrec_overrides) if a.dreamrec_overrides else {}
    command = "python -m idream " + " ".join(sys.argv[1:])
    start = time.time()

    def save(result, final=False):  # after every model: a stopped run keeps its finished rows
        result["command"] = command
        result["complete"] = final
        result["wall_minutes"] = round((time.time() - start) / 60, 1)
        stem = f"bench-quality-{result['dataset']}" + ("-cold" if result.get("cold_frac") else "")
        return write_results(result, a.out, stem, quality_markdown(result))

    result = run_quality(a.dataset, a.seeds, tuple(a.models), overrides, sas,
                         log_fn=lambda s: print(s, file=sys.stderr, flush=True),
                         device=a.device, on_rows=save,
                         dreamrec_overrides=dream, cold_frac=a.cold)
    print(save(result, final=True).read_text())
    return result


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
    stem = f"bench-quality-{result['dataset']}" + ("-cold" if result.get("cold_frac") else "")
    md = write_results(result, a.out, stem, quality_markdown(result))
    print(md.read_text())
    return md


def main_speed(a) -> dict:
    result = run_speed(a.checkpoint, tuple(a.sizes), a.repeats,
                       log_fn=lambda s: print(s, file=sys.stderr, flush=True), users=a.users)
    result["command"] = "python -m idream " + " ".join(sys.argv[1:])
    print(write_results(result, a.out, "bench-speed", speed_markdown(result)).read_text())
    return result
