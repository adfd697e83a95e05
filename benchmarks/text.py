"""How well the text half works: free-phrased intentions against a plain text search, in one run.

For real users' histories (the last L items before their test item) and each intention of the
free-phrased set (benchmarks/intentions/, written by hand, never trained on), the top-10 of:
- iDream guided by the intention at each position of the ρ slider (one step, w from the
  checkpoint);
- text search: cosine between the intention's and each item's text vectors in the text model's
  own space (no training at all), history masked;
- late fusion: unguided iDream scores + λ × text-search cosine, both z-scored per request, λ
  chosen on the development half.
Reported per half (dev: where choices are made; test: read to report): genre precision@10 (share
of the top-10 with a genre the intention means, and its decade where it names one),
personalisation (mean Jaccard overlap of different users' top-10 for the same intention) and
cos(oracle, intention) in the scoring space. And, at the checkpoint's ρ, the HR@10 lift that
generated intentions give on the validation and test positions.

    python -m benchmarks text --checkpoint checkpoints/ml-100k   (or python -m benchmarks.text)
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import free_intentions
from idream.errors import InputError

LAMBDAS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
K = 10


def zscore(s: torch.Tensor) -> torch.Tensor:
    """Per-row z-scores over the finite entries; masked (-inf) entries stay -inf.  (B, N)"""
    finite = torch.isfinite(s)
    x = torch.where(finite, s, torch.zeros_like(s))
    n = finite.sum(1, keepdim=True).clamp(min=1)
    mu = x.sum(1, keepdim=True) / n
    sd = (((x - mu) ** 2 * finite).sum(1, keepdim=True) / n).sqrt().clamp(min=1e-12)
    return torch.where(finite, (x - mu) / sd, s)


def matches(ds, intention: dict) -> np.ndarray:
    """Per item: does it have a genre the intention means (and its decade, where it names one)?  (N,)"""
    want = set(intention["genres"])
    ok = np.array([bool(want & set(g)) for g in ds.items["genres"]])
    if intention["decade"] is not None:
        years = ds.items["year"].to_numpy(dtype="float64", na_value=np.nan)
        ok &= (years >= intention["decade"]) & (years < intention["decade"] + 10)
    return ok


def overlap(tops: list[np.ndarray]) -> float:
    """Mean pairwise Jaccard overlap of the users' top-K lists for one intention."""
    sets = [set(t.tolist()) for t in tops]
    pairs = [len(a & b) / len(a | b) for a, b in itertools.combinations(sets, 2)]
    return float(np.mean(pairs)) if pairs else 1.0


def masked_top(scores: torch.Tensor, histories: np.ndarray) -> np.ndarray:
    """Top-K item indices per row with each row's history masked.  (B, N) -> (B, K)"""
    from idream.data.datasets import PAD
    from idream.ranking import mask_seen, top_k
    seen = [h[h != PAD] for h in histories]
    return top_k(mask_seen(scores.clone(), seen), K).numpy()


def summarise(tops: np.ndarray, ok: np.ndarray) -> dict:
    """tops (I, U, K) item indices; ok (I, N) matches -> precision and overlap, mean over intentions."""
    prec = np.take_along_axis(ok[:, None, :].repeat(tops.shape[1], 1), tops, 2).mean(axis=(1, 2))
    return {"precision": float(prec.mean()), "overlap": float(np.mean([overlap(list(t)) for t in tops])),
            "per_intention": prec.round(3).tolist()}


def slider(rec) -> list[float]:
    """The ρ positions to measure: the whole of STEER_RANGE (so that the slider's top can be
    chosen) and the slider's own positions, the default included."""
    from idream.core.steer import STEER_RANGE, positions
    return sorted(set(rec.rho_positions()) | set(positions(*STEER_RANGE)) | {rec.default_rho})


def slider_top(r: dict) -> float | None:
    """The slider's top, chosen on the dev half: the ρ (not below the
    default) with the best free-phrased precision; beyond it ρ only costs personalisation."""
    if r["guidance"].get("mode") != "turn":  # (results made with the paper's learned ρ)
        return None
    dial = [d for d in r["halves"]["dev"]["dial"] if d["rho"] >= r["default_rho"]]
    return max(dial, key=lambda d: d["precision"])["rho"]


@torch.no_grad()
def run(checkpoint: str, n_users: int = 20, seed: int = 0, log=print, labels: str | None = None) -> dict:
    """labels: a dataset with the same item ids whose genres and years score the lists (for a
    catalog that has none of its own, e.g. scripts/titles_only.py's twin of ml-100k)."""
    from idream.data.catalog import item_embeddings
    from idream.data.datasets import test_cases
    from idream.serving.recommender import Recommender

    rec = Recommender.load(checkpoint)
    ds = rec.dataset
    rhos = slider(rec)
    truth = ds
    if labels:
        from idream.data.datasets import load_dataset
        truth = load_dataset(labels)
        if truth.items["item_id"].tolist() != ds.items["item_id"].tolist():
            raise ValueError(f"--labels {labels}: its items are not the checkpoint's (same ids, same order)")
    w = rec.default_w
    cases = test_cases(ds, rec.history_len)
    users = np.random.default_rng(seed).choice(len(cases), n_users, replace=False)
    H = cases.histories[users]  # (U, L): the last L items before each user's test item
    E = item_embeddings(ds, rec.backend, rec.descriptions,
                        rec.config.get("cache_dir"), progress=False)
    En = torch.from_numpy(E / np.linalg.norm(E, axis=1, keepdims=True)).float()  # (N, D) raw text space
    U = len(users)
    out = {"checkpoint": str(checkpoint), "dataset": ds.name, "labels": truth.name, "users": U, "seed": seed, "w": w,
           "default_rho": rec.default_rho, "rhos": rhos,
           "guidance": {k: v for k, v in rec.config.get("guidance", {}).items()
                        if k in ("mode", "kappa", "w", "rho")},
           "lambdas": list(LAMBDAS), "halves": {}}
    for half in free_intentions.HALVES:
        rows = free_intentions.load(half)
        t = time.time()
        e = rec.backend.encode([r["text"] for r in rows])  # (I, D) raw
        q_raw = torch.from_numpy(e / np.linalg.norm(e, axis=1, keepdims=True)).float()
        q = torch.from_numpy(rec.transform(e)).float()  # (I, D) the model's space
        ok = np.stack([matches(truth, r) for r in rows])  # (I, N)
        I = len(rows)
        hist = np.repeat(H[None], I, 0).reshape(I * U, -1)  # (I·U, L): every user for each intention
        qq = q.repeat_interleave(U, 0)  # (I·U, D)
        toward = rec.intention_directions(qq)  # the intention's text direction: what ρ turns to
        # unguided from the same batch and seed, so each row starts from the noise its guided rows do
        unguided = rec.scores(rec.oracle(hist, None, steps=1, w=w, rho=0.0, seed=seed))  # (I·U, N)
        res = {"intentions": I, "ids": [r["id"] for r in rows], "dial": []}
        for rho in rhos:
            x0 = rec.oracle(hist, qq, steps=1, w=w, rho=rho, seed=seed)  # (I·U, D)
            tops = masked_top(rec.scores(x0), hist).reshape(I, U, K)
            cos = torch.cosine_similarity(x0, toward, dim=1).reshape(I, U).mean(1)  # per intention
            res["dial"].append({"rho": rho, **summarise(tops, ok), "cos_oracle_intention": float(cos.mean()),
                                "cos_per_intention": cos.numpy().round(4).tolist()})
        text = (q_raw @ En.T).repeat_interleave(U, 0)  # (I·U, N)
        res["text_search"] = summarise(masked_top(text, hist).reshape(I, U, K), ok)
        base = zscore(unguided)
        res["late_fusion"] = {str(lam): summarise(masked_top(base + lam * zscore(text), hist).reshape(I, U, K), ok)
                              for lam in LAMBDAS}
        res["unguided"] = summarise(masked_top(unguided, hist).reshape(I, U, K), ok)
        out["halves"][half] = res
        log(f"{half}: {I} intentions x {U} users in {time.time() - t:.0f} s")
    dev = out["halves"]["dev"]["late_fusion"]
    out["lambda"] = float(max(dev, key=lambda k: dev[k]["precision"]))  # chosen on dev only
    out["lift"] = generated_lift(rec, seed)
    out["slider"] = list(rec.rho_range)
    out["slider_top"] = slider_top(out)
    return out


def set_slider(checkpoint: str, r: dict) -> None:
    """Write the slider's top chosen on the dev half into the checkpoint (guidance.rho_max) and
    refresh its model card."""
    from idream.evaluation.card import write_model_card
    from idream.serving.checkpoint import read_config, write_json

    if r["slider_top"] is None:
        raise InputError("--set-slider: the checkpoint was made with the paper's learned ρ, which has no slider to set")
    cfg = read_config(Path(checkpoint)).to_dict()  # edited as JSON: the key says the top was chosen
    cfg["guidance"]["rho_max"] = r["slider_top"]
    write_json(Path(checkpoint) / "config.json", cfg)
    write_model_card(Path(checkpoint))
    r["slider"] = [r["slider"][0], r["slider_top"]]


def generated_lift(rec, seed: int = 0) -> dict:
    """HR@10 with generated intentions at the checkpoint's ρ over HR@10 unguided, per split."""
    from idream.data.datasets import chronological_split, evaluation_cases
    from idream.evaluation.evaluate import evaluate_recommender, generated_intentions

    split = chronological_split(rec.dataset, rec.history_len)
    out = {}
    for name in ("valid", "test"):
        cases = evaluation_cases(rec.dataset, split, name)
        one = evaluate_recommender(rec, cases, steps=1, w=rec.default_w, rho=0.0, seed=seed).metrics["HR@10"]
        q = generated_intentions(rec, cases, seed=seed)
        gen = evaluate_recommender(rec, cases, steps=1, w=rec.default_w, rho=rec.default_rho,
                                   intentions=q, seed=seed).metrics["HR@10"]
        out[name] = {"unguided_HR@10": round(one, 5), "generated_HR@10": round(gen, 5),
                     "lift": round(gen / one, 3) if one else None}
    return out


def markdown(r: dict) -> str:
    lam = str(r["lambda"])
    rho0 = r["default_rho"]
    scored = (f", scored with the genres and years of {r['labels']}" if r.get("labels", r["dataset"]) != r["dataset"]
              else "")
    lines = [f"Checkpoint `{r['checkpoint']}` ({r['dataset']}{scored}), {r['users']} users (seed {r['seed']}; "
             "their last items before the test item as history), free-phrased intentions from "
             "`benchmarks/intentions/free_phrased.jsonl`; one-step sampling, w = "
             f"{r['w']:g}. Genre precision@10: share of the top-10 with a genre the intention means "
             "(and its decade where it names one). Overlap: mean Jaccard overlap of different users' "
             "top-10 for the same intention (1.0 = not personal). Late fusion's λ is chosen on the dev "
             f"half: λ = {lam}.", "",
             "| method | dev precision | dev overlap | test precision | test overlap |", "|---|---|---|---|---|"]

    def row(label, get):
        d, t = get(r["halves"]["dev"]), get(r["halves"]["test"])
        lines.append(f"| {label} | {d['precision']:.3f} | {d['overlap']:.3f} | {t['precision']:.3f} | "
                     f"{t['overlap']:.3f} |")

    at = {x["rho"]: i for i, x in enumerate(r["halves"]["dev"]["dial"])}
    row(f"iDream at the default ρ = {rho0:g}", lambda h: h["dial"][at[rho0]])
    best = max(r["halves"]["dev"]["dial"], key=lambda d: d["precision"])["rho"]  # chosen on dev
    if best != rho0:
        row(f"iDream at ρ = {best:g} (best dev precision)", lambda h: h["dial"][at[best]])
    row("iDream unguided (ρ = 0, the intention ignored)", lambda h: h["unguided"])
    row("text search (intention vs item text, raw space)", lambda h: h["text_search"])
    row(f"late fusion (unguided + {lam} × text search)", lambda h: h["late_fusion"][lam])
    g = r.get("guidance", {})
    toward = ("the intention's text direction d (idream.core.steer: the scoring-space direction whose item "
              "scores are the text model's cosines)" if g.get("mode") == "turn" else "the transformed intention vector")
    steer = (f" Text-steered model: ρ turns the oracle toward d by ρ·90°, the learned guidance term at "
             f"κρ, κ = {g['kappa']:g}." if g.get("mode") == "turn" else "")
    lo, hi = r.get("slider", (None, None))
    top = r.get("slider_top")
    where = (f" The slider's top, chosen on the dev half (the best dev precision at or above the "
             f"default): ρ = {top:g}; the checkpoint's slider runs {lo:g}–{hi:g}, and positions beyond "
             "it are marked." if top is not None else "")
    lines += ["", "The dial (test half): genre precision@10 and the cosine between the oracle and "
              f"{toward}, at each ρ.{steer}{where}", "",
              "| ρ | precision | overlap | cos(oracle, intention) |", "|---|---|---|---|"]
    for d in r["halves"]["test"]["dial"]:
        beyond = " (beyond the slider)" if hi is not None and d["rho"] > hi else ""
        lines.append(f"| {d['rho']:g}{beyond} | {d['precision']:.3f} | {d['overlap']:.3f} | "
                     f"{d['cos_oracle_intention']:.3f} |")
    lines += ["", "Generated intentions (from the target's genres and decade), HR@10 at ρ = "
              f"{rho0:g} over unguided:", "", "| split | unguided HR@10 | with intention | lift |",
              "|---|---|---|---|"]
    for name, v in r["lift"].items():
        lines.append(f"| {name} | {v['unguided_HR@10']:.4f} | {v['generated_HR@10']:.4f} | {v['lift']:.2f}× |")
    lines += ["", f"Command: `{r.get('command', 'python -m benchmarks.text')}`; commit `{r.get('commit', '')}`; "
              f"machine: {r.get('machine', '')}."]
    return "\n".join(lines) + "\n"


def main(argv=None, prog: str = "python -m benchmarks.text"):
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="checkpoints/ml-100k", help="checkpoint folder to measure")
    ap.add_argument("--users", type=int, default=20, help="real users whose histories are used (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="draws the users and the sampling noise")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--labels", default=None, metavar="NAME|DIR",
                    help="score with this dataset's genres and years (same item ids), for a "
                         "catalog without its own (default: the checkpoint's dataset)")
    ap.add_argument("--out", default="results", help="folder for bench-text-<dataset>.{md,json}")
    ap.add_argument("--set-slider", action="store_true",
                    help="write the slider's top chosen on the dev half into the checkpoint "
                         "(guidance.rho_max) and refresh its model card")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from benchmarks.results import git_commit, machine
    r = run(a.checkpoint, a.users, a.seed, log=lambda s: print(s, file=sys.stderr, flush=True),
            labels=a.labels)
    r.update(command=f"{prog} " + " ".join(sys.argv[1:] if argv is None else argv),
             commit=git_commit(), machine=machine())
    if a.set_slider:
        set_slider(a.checkpoint, r)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-text-{r['dataset']}"
    (out / f"{stem}.json").write_text(json.dumps(r, indent=1))
    md = markdown(r)
    (out / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
