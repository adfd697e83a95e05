"""Speed: per-request latency at several catalog sizes, the retrieval index's recall, and
training throughput, written as JSON and Markdown with the machine and commit in the header."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.results import git_commit, machine, write_results
from idream.data.datasets import test_cases
from idream.ranking import mask_seen, top_k


ROWS = ("gaussian", "near copies", "noisy copies")  # the kinds of synthetic rows (see catalog)
NOISE = 0.35  # "noisy copies": the noise's share of the catalog's spread


def timings_ms(fn, repeats: int, warmup: int) -> list[float]:
    """Wall milliseconds of each of `repeats` calls of fn, after `warmup` calls left unmeasured."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    return ts


def _time(fn, repeats: int, warmup: int = 2) -> dict:
    ts = np.array(timings_ms(fn, repeats, warmup))
    return {"median_ms": round(float(np.median(ts)), 3), "p95_ms": round(float(np.percentile(ts, 95)), 3)}


def _top10(index, oracles: torch.Tensor, seen: list, chunk: int = 16) -> torch.Tensor:
    """An ItemIndex's top-10 for the oracles, their seen items left out, a few rows at a time
    (a 1M-item score matrix per row).  (U, D) -> (U, 10)"""
    return torch.cat([index.search(oracles[i:i + chunk], 10, seen[i:i + chunk])[1]
                      for i in range(0, len(oracles), chunk)])


def _oracle(rec, hist, intention: str | None, steps: int) -> torch.Tensor:
    """The oracle of one timed request, the intention's encoding included.  -> (1, D)"""
    q = None if intention is None else rec.encode_intentions([intention])
    return rec.oracle(hist, q, steps=steps, seed=0)


def _exact_rows(rec, Vn, hist, idx, intention, n_repeats, repeats, log_fn) -> list[dict]:
    """Latency of the request scoring every item (1 and 50 steps, with and without an
    intention) next to the floor, one bare matrix-vector product over the catalog."""
    rows = []
    for steps in (1, 50):
        for with_q in (False, True):
            def request():
                x0 = _oracle(rec, hist, intention if with_q else None, steps)
                scores = mask_seen(x0 @ Vn.T, [np.asarray(idx)])
                return top_k(scores, 10)
            rows.append({"catalog": len(Vn), "steps": steps, "intention": with_q, **_time(request, n_repeats)})
    x = torch.randn(1, Vn.shape[1])
    floor = _time(lambda: x @ Vn.T, repeats)
    for r in rows:
        r["floor_median_ms"] = floor["median_ms"]
        r["ratio_to_floor"] = round(r["median_ms"] / floor["median_ms"], 1)
    log_fn(f"catalog {len(Vn)}: floor {floor['median_ms']} ms")
    return rows


def _recalls(found: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """The share of each row's true top-10 that was found.  (U, 10), (U, 10) -> (U,)"""
    return np.array([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)])


def _recall(found: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean share of each row's true top-10 that was found.  (U, 10), (U, 10) -> float"""
    return float(np.mean(_recalls(found, truth)))


def catalog(V: torch.Tensor, n: int, rows: str, seed: int = 0) -> torch.Tensor:
    """The real item vectors V (N, D) and n - N synthetic rows after them.  -> (n, D)

    rows="gaussian": independent draws with the catalog's per-dimension mean and spread;
    "near copies": each row a real item's offset from the mean mixed with such a draw's (weight
    a ~ U(0.6, 0.95) on the item, √(1 − a²) on the draw: the same mean and about the same spread),
    so that many synthetic items compete with the real ones for an oracle's top-10;
    "noisy copies": a real item plus Gaussian noise of NOISE times the catalog's spread per
    dimension (closer still: a thousand copies of every item crowd each oracle's top-10)."""
    N, D = V.shape
    out = torch.empty(n, D)
    out[:N] = V
    rng = np.random.default_rng(seed)
    mu, sd = V.mean(0), V.std(0)
    for lo in range(N, n, 100_000):  # in blocks: no full-size temporaries
        m = min(n, lo + 100_000) - lo
        block = torch.from_numpy(rng.standard_normal((m, D), dtype=np.float32)) * sd  # (m, D)
        if rows == "near copies":
            a = torch.from_numpy(rng.uniform(0.6, 0.95, (m, 1)).astype(np.float32))
            block = a * (V[torch.from_numpy(rng.integers(0, N, m))] - mu) + (1 - a ** 2).sqrt() * block
        elif rows == "noisy copies":
            block = V[torch.from_numpy(rng.integers(0, N, m))] - mu + NOISE * block
        elif rows != "gaussian":
            raise ValueError(f"synthetic rows are one of {', '.join(ROWS)}, got {rows!r}")
        out[lo:lo + m] = block + mu
    return out


def _available_bytes() -> int:
    """Memory the system can still give (MemAvailable), or a large number where unknown."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2**62


def searches(n: int, d: int) -> list[tuple[str, str | None, str]]:
    """(label, faiss factory, search parameters) of the indexes compared at n items: the
    default, and up to 1M items an IVF clustering (beyond, its copy of the vectors and its
    build outgrow this machine's memory) and up to 100k an HNSW graph (its one-thread build
    takes minutes beyond)."""
    from idream.serving.index import CANDIDATES, default_factory

    nlist = 1024 if n >= 500_000 else 256
    out = [(f"{default_factory(d)} (default)", None, "")]
    if n <= 1_000_000:
        out.append((f"IVF{nlist},Flat nprobe={nlist // 16}", f"IVF{nlist},Flat", f"nprobe={nlist // 16}"))
    if n <= 100_000:
        out.append((f"HNSW32 efSearch={CANDIDATES}", "HNSW32", f"efSearch={CANDIDATES}"))
    return out


def run_speed(ckpt: str, sizes=(1682, 100_000, 1_000_000), repeats: int = 30, log_fn=print,
              users: int = 200, synthetic=ROWS) -> dict:
    """Per-request latency of recommend (oracle + scoring + masking + top-k) at several catalog
    sizes, next to the floor (one matrix-vector product over the catalog), and training throughput.

    Retrieval: at every size and kind of synthetic rows, exact search, idream.serving.index's default
    faiss index and two others (IVF, HNSW) with their build time, memory, one-step latency and
    recall@10 against the exact ranking on the oracles of `users` real users (their last test
    window, their earlier items left out). What decides idream.serving.index.EXACT_BELOW and CANDIDATES.
    A size whose vectors would take more than half the memory left is skipped and said so."""
    import faiss

    from idream.serving.index import CANDIDATE_SHARE, CANDIDATES, ItemIndex
    from idream.serving.recommender import Recommender

    torch.set_grad_enabled(False)
    load_before = [round(x, 2) for x in os.getloadavg()]  # the machine may be shared: say how busy
    rec = Recommender.load(ckpt)
    V = rec.item_vectors()
    N, D = V.shape
    hist_items = [rec.dataset.item_meta(i)["item_id"] for i in range(5)]
    idx = [rec.resolve_item(i) for i in hist_items]
    from idream.data.datasets import window
    hist = window(np.asarray(idx), len(idx), rec.history_len)[None]
    intention = "something light and funny from the 90s"
    cases = test_cases(rec.dataset, rec.history_len)
    real = cases.subset(np.sort(np.random.default_rng(0).choice(len(cases), min(users, len(cases)),
                                                                 replace=False)))
    oracles = rec.oracle(real.histories)  # (U, D) one step, the checkpoint's w and rho
    rows, retrieval, skipped = [], [], []
    for n in sizes:
        if n * D * 4 > _available_bytes() // 2:
            skipped.append(n)
            log_fn(f"catalog {n}: skipped, its vectors need more than half the memory left")
            continue
        n_repeats = repeats if n < 500_000 else max(5, repeats // 3)
        for kind in (("real",) if n <= N else synthetic):
            Vn = V[:n] if n <= N else catalog(V, n, kind)
            if kind in ("real", "gaussian"):  # the exact path's latency, as before the index
                rows += _exact_rows(rec, Vn, hist, idx, intention, n_repeats, repeats, log_fn)
            seen = [s[s < n] for s in real.seen]
            exact = ItemIndex(Vn, "exact")  # the ranking every index's recall is measured against
            truth = _top10(exact, oracles, seen)
            for label, factory, params in [("exact", None, "")] + searches(n, D):
                t = time.perf_counter()
                index = exact if label == "exact" else ItemIndex(Vn, "faiss", factory=factory, params=params)
                build_s = time.perf_counter() - t
                found = _top10(index, oracles, seen)
                each = _recalls(found, truth)
                row = {"catalog": n, "rows": kind, "search": label, "build_s": round(build_s, 3),
                       "index_bytes": index.nbytes(), "recall@10": round(float(each.mean()), 4),
                       "recall@10_worst": round(float(each.min()), 2)}
                for with_q in (False, True):
                    def request():
                        x0 = _oracle(rec, hist, intention if with_q else None, steps=1)
                        return index.search(x0, 10, [np.asarray(idx)])
                    r = _time(request, n_repeats)
                    row.update({f"{'intention_' if with_q else ''}{k}": v for k, v in r.items()})
                if label.endswith("(default)"):  # the dial behind CANDIDATES and CANDIDATE_SHARE
                    row["candidates"] = default = index.candidates
                    row["recall@10_by_candidates"] = {}
                    for c in sorted({300, 1000, 3000, 5000, CANDIDATES, default}):
                        index.candidates = c
                        found = _top10(index, oracles, seen)
                        row["recall@10_by_candidates"][str(c)] = round(_recall(found, truth), 4)
                    index.candidates = default
                retrieval.append(row)
                log_fn(f"catalog {n} ({kind}): {label} build {row['build_s']} s, recall@10 "
                       f"{row['recall@10']}, {row['median_ms']} ms")
                index = None
            Vn = exact = None  # free the catalog and its index before the next one
    # training throughput: denoised targets per second of the training step, in the form the
    # checkpoint trains (the causal encoder denoises every position of 32 sequences at once)
    from idream.core.diffusion import training_loss
    from idream.training.train import TrainConfig
    torch.set_grad_enabled(True)
    model = rec.model.train()
    L, S = rec.history_len, TrainConfig.seq_batch_size
    h = torch.randint(0, N, (S, L))
    valid = torch.ones(S, L, dtype=torch.bool)
    B = S * L  # targets per step
    seq_i, pos_i = torch.arange(S).repeat_interleave(L), torch.arange(L).repeat(S)
    y = torch.randint(0, N, (B,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        t = torch.randint(0, rec.T, (B,))
        x0 = V[y]
        x_t = rec.diffusion.q_sample(x0, t, torch.randn_like(x0))
        yes, no = torch.ones(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)
        pred = model.forward_sequence(x_t, t, V[h], valid, seq_i, pos_i, yes, torch.zeros(B, D), no)
        loss, _ = training_loss(pred, x0, y, V, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tr = _time(step, 10)
    model.eval()
    return {"checkpoint": str(ckpt), "machine": machine(), "commit": git_commit(),
            "threads": torch.get_num_threads(), "repeats": repeats, "rows": rows,
            "retrieval": retrieval, "recall_users": len(real), "faiss": faiss.__version__,
            "skipped_sizes": skipped, "candidates": CANDIDATES, "candidate_share": CANDIDATE_SHARE,
            "load_average": [load_before, [round(x, 2) for x in os.getloadavg()]],
            "train_batch": f"{S} sequences × {L} positions",
            "train_samples_per_s": round(B / (tr["median_ms"] / 1000), 1)}


def speed_markdown(result: dict) -> str:
    lines = [f"Machine: {result['machine']} ({result['threads']} torch threads), commit "
             f"`{result['commit']}`, checkpoint `{result['checkpoint']}`; median and p95 over "
             f"{result['repeats']} requests after warm-up (fewer at 1M items). A request = intention "
             "encoding (when given) + DDIM sampling with guidance + scoring every item + masking + "
             "top-10 (partial selection, no full sort). Floor = one bare matrix-vector product over "
             "the catalog." + (" Load average (1, 5, 15 min) before → after: "
                               f"{' '.join(map(str, result['load_average'][0]))} → "
                               f"{' '.join(map(str, result['load_average'][1]))}."
                               if result.get("load_average") else ""), "",
             "| catalog | steps | intention | median ms | p95 ms | floor ms | × floor |",
             "|---|---|---|---|---|---|---|"]
    merged = bool(result.get("commands"))  # rows from several runs: each names its commit
    if merged:
        lines[-2:] = [lines[-2] + " commit |", lines[-1] + "---|"]
    for r in result["rows"]:
        lines.append(f"| {r['catalog']:,} | {r['steps']} | {'yes' if r['intention'] else 'no'} | "
                     f"{r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['floor_median_ms']:.2f} | "
                     f"{r['ratio_to_floor']} |" + (f" `{r.get('commit', result['commit'])}` |" if merged else ""))
    if result.get("retrieval"):
        lines += ["", f"Retrieval (idream.serving.index, faiss {result['faiss']}): the same one-step request "
                  "with the top-10 from a search. exact: every item scored; the faiss indexes propose "
                  + (f"max({result['candidates']:,}, N / {result['candidate_share']:,}) candidates each"
                     if result.get("candidate_share") else f"{result['candidates']:,} candidates each")
                  + ", rescored exactly, history dropped from them. Synthetic rows are "
                  "independent draws with the catalog's per-dimension "
                  "mean and spread (gaussian), real items mixed with such draws (near copies, which "
                  f"compete for the top-10) or real items plus Gaussian noise of {NOISE} of that spread "
                  "(noisy copies, closer still). Recall@10 against the exact ranking on the oracles of "
                  f"{result['recall_users']} real users (their last window, their earlier items left "
                  "out; worst: the lowest of a single request); index MB is the faiss index's own size "
                  "beside the item vectors; built on one thread (the same index in every run).", "",
                  "| catalog | rows | search | build s | index MB | recall@10 | worst | median ms | p95 ms | "
                  "median ms, intention | p95 ms, intention | recall@10 by candidates |"
                  + (" commit |" if merged else ""),
                  "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if merged else "")]
        for r in result["retrieval"]:
            by_c = ", ".join(f"{c}: {v:.3f}" for c, v in r.get("recall@10_by_candidates", {}).items()) or "–"
            worst = f"{r['recall@10_worst']:.2f}" if "recall@10_worst" in r else "–"
            lines.append(f"| {r['catalog']:,} | {r['rows']} | {r['search']} | {r['build_s']:.2f} | "
                         f"{r['index_bytes'] / 2**20:.1f} | {r['recall@10']:.4f} | {worst} | {r['median_ms']:.2f} | "
                         f"{r['p95_ms']:.2f} | {r['intention_median_ms']:.2f} | {r['intention_p95_ms']:.2f} | "
                         f"{by_c} |" + (f" `{r.get('commit', result['commit'])}` |" if merged else ""))
    if result.get("skipped_sizes"):
        lines += ["", "Skipped (their vectors need more than half the memory left): "
                  + ", ".join(f"{n:,}" for n in result["skipped_sizes"]) + " items."]
    lines += ["", f"Training throughput: {result['train_samples_per_s']:,} denoised targets/s "
              f"(batch: {result.get('train_batch', '256 cases')}).",
              "", f"Command: `{result.get('command', 'python -m benchmarks speed')}`"]
    if merged:
        lines += ["", "Rows merged from these runs (`--merge`): "
                  + "; ".join(f"`{c['command']}` at `{c['commit']}`" for c in result["commands"]) + "."]
    return "\n".join(lines) + "\n"


def main_speed(a) -> dict:
    if a.threads:
        import faiss

        torch.set_num_threads(a.threads)
        faiss.omp_set_num_threads(a.threads)
    rows = tuple(getattr(a, "rows", None) or ROWS)
    unknown = set(rows) - set(ROWS)
    if unknown:
        sys.exit(f"error: --rows takes {', '.join(ROWS)}; not {', '.join(sorted(unknown))}")
    result = run_speed(a.checkpoint, tuple(a.sizes), a.repeats,
                       log_fn=lambda s: print(s, file=sys.stderr, flush=True), users=a.users, synthetic=rows)
    result["command"] = "python -m benchmarks " + shlex.join(a.argv)
    if getattr(a, "merge", False):
        result = merged(result, Path(a.out) / "bench-speed.json")
    print(write_results(result, a.out, "bench-speed", speed_markdown(result)).read_text())
    return result


def merged(new: dict, path: Path) -> dict:
    """The new result with the rows of an earlier one (same checkpoint) at the sizes and kinds of
    rows it did not measure; each kept row names the commit it was measured at."""
    if not path.exists():
        return new
    old = json.loads(path.read_text())
    if old.get("checkpoint") != new["checkpoint"]:
        sys.exit(f"error: {path} times {old.get('checkpoint')}, not {new['checkpoint']}: no merge")
    sizes = {r["catalog"] for r in new["rows"]}
    kinds = {(r["catalog"], r["rows"]) for r in new["retrieval"]}
    stamp = lambda r: {"commit": old.get("commit", "unknown"), **r}  # noqa: E731
    rows = [stamp(r) for r in old.get("rows", []) if r["catalog"] not in sizes] + new["rows"]
    retrieval = [stamp(r) for r in old.get("retrieval", []) if (r["catalog"], r["rows"]) not in kinds]
    order = lambda r: (r["catalog"], ROWS.index(r["rows"]) if r["rows"] in ROWS else -1)  # noqa: E731
    commands = old.get("commands") or [{"commit": old.get("commit"), "command": old.get("command")}]
    return {**new, "rows": sorted(rows, key=lambda r: (r["catalog"], r["steps"], r["intention"])),
            "retrieval": sorted(retrieval + new["retrieval"], key=order),  # stable: search order kept
            "commands": commands + [{"commit": new["commit"], "command": new["command"]}]}
