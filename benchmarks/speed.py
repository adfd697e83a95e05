"""Speed: per-request latency at several catalog sizes, the retrieval index's recall, and
training throughput, written as JSON and Markdown with the machine and commit in the header."""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from benchmarks.results import git_commit, machine, write_results
from idream.data import test_cases
from idream.metrics import mask_seen, top_k


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


def main_speed(a) -> dict:
    result = run_speed(a.checkpoint, tuple(a.sizes), a.repeats,
                       log_fn=lambda s: print(s, file=sys.stderr, flush=True), users=a.users)
    result["command"] = "python -m idream " + " ".join(sys.argv[1:])
    print(write_results(result, a.out, "bench-speed", speed_markdown(result)).read_text())
    return result
