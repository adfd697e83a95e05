"""New items against their own text. Each hand-written case (newitems/cases.json beside this file,
never trained on) is a real history, an intention in a person's own words, a new item whose plot
fits both and a misfit that fits neither. The two new items are added to the session as the page
adds them (`Recommender.embed_new_item`, `extra_items`), and the whole catalog plus them is ranked
for the history + intention at the checkpoint's default ρ, and unguided (the history alone). The
fitting item's rank is compared with a text-only reference that uses no training at all:

    ref_j = z(cos(e_j, q)) + z(max_h cos(e_j, e_h))

cosines in the text model's own space (q the intention, h the history items), each term z-scored
over the catalog (the mean and standard deviation of the N catalog items' values for this case).
Both rank the same candidates: the catalog and the two new items, less the history and its twins.

Reported per half (dev: where choices are made; test: read once to report): the share of cases
where the model ranks the fitting item at or above the reference (goal ≥ 80 %), the share of
fitting items in the top-10 for the model and the reference, the misfits in the top-50 (goal:
none), median ranks.

    python -m idream bench newitems --checkpoint checkpoints/ml-100k [--half dev|test]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

CASES = Path(__file__).resolve().parent / "newitems" / "cases.json"
HALVES = ("dev", "test")
TOP, MISFIT_TOP = 10, 50  # the fitting item should reach the top-10, a misfit never the top-50
COLUMNS = ("model", "unguided", "reference")


class CaseFileError(ValueError):
    """A case file that cannot be read as new-item cases; the message says what to fix."""


def load_cases(path: str | Path = CASES, half: str | None = None) -> list[dict]:
    """The cases of one half (None: both), each checked for what the bench reads."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        cases = doc["cases"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CaseFileError(f"{path}: not a new-item case file ({e})") from None
    ids = [c.get("id") for c in cases]
    if len(set(ids)) != len(ids):
        raise CaseFileError(f"{path}: case ids must be unique")
    for c in cases:
        where = f"{path}: case {c.get('id')!r}"
        if c.get("half") not in HALVES:
            raise CaseFileError(f"{where}: 'half' must be one of {', '.join(HALVES)}")
        if not c.get("history") or not str(c.get("intention") or "").strip():
            raise CaseFileError(f"{where} needs a history and an intention")
        for key in ("fit", "misfit"):
            if not str(c.get(key, {}).get("title") or "").strip():
                raise CaseFileError(f"{where}: its {key} item needs a title")
    if half is not None and half not in HALVES:
        raise CaseFileError(f"unknown half {half!r}: use {' or '.join(HALVES)}")
    return [c for c in cases if half is None or c["half"] == half]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def reference_scores(E: np.ndarray, q: np.ndarray, history: list[int], n_catalog: int) -> np.ndarray:
    """The text-only score of every candidate: intention cosine + closeness to the history, each
    z-scored over the first n_catalog rows (the catalog).  E (N + n, Dt) raw, q (Dt,) -> (N + n,)"""
    U = _unit(E)
    intention = U @ _unit(q)
    closeness = (U @ U[np.asarray(history, dtype=np.int64)].T).max(1)

    def z(x):
        return (x - x[:n_catalog].mean()) / max(float(x[:n_catalog].std()), 1e-12)

    return z(intention) + z(closeness)


def rank_of(scores: np.ndarray, target: int, masked) -> float:
    """1-based rank of `target` among the unmasked rows, ties counted at their expected place."""
    keep = np.ones(len(scores), dtype=bool)
    keep[np.asarray(masked, dtype=np.int64)] = False
    s, t = scores[keep], scores[target]
    return 1 + float((s > t).sum()) + (float((s == t).sum()) - 1) / 2


def new_item(rec, spec: dict) -> dict:
    """A case's new item as the page's form takes it: title, description, genres, year."""
    return rec.embed_new_item(spec["title"], spec.get("description", ""), spec.get("year"),
                              tuple(spec.get("genres", ())))


def run_case(rec, case: dict, E: np.ndarray) -> dict:
    """The fitting item's and the misfit's ranks by the model (guided, unguided) and the reference."""
    ds, N = rec.dataset, rec.dataset.n_items
    for h in case["history"]:
        if not ds.has_item(h["item_id"]):
            raise CaseFileError(f"case {case['id']}: {h['item_id']} is not an item of {ds.name}")
    history = [h["item_id"] for h in case["history"]]
    idx = [rec.resolve_item(i) for i in history]
    masked = rec.dataset.with_twins(idx)
    new = [new_item(rec, case["fit"]), new_item(rec, case["misfit"])]
    out = {"id": case["id"], "half": case["half"], "fit": {}, "misfit": {}}
    for column, intention in (("model", case["intention"]), ("unguided", None)):
        rows = rec.recommend(history, intention, k=N + 2 - len(masked), extra_items=new).items
        # the whole ranking; idream.index caps it at N + 1 candidates (its `total` counts the rows
        # of the extra items' scores, not their columns), so the one left out is the last
        where = {r["item_id"]: r["rank"] for r in rows if r["new"]}
        last = N + 2 - len(masked)
        out["fit"][column], out["misfit"][column] = where.get("new:1", last), where.get("new:2", last)
    q = rec.backend.encode([case["intention"]])[0]
    ref = reference_scores(np.vstack([E, new[0]["e"], new[1]["e"]]), q, idx, N)
    out["fit"]["reference"] = rank_of(ref, N, masked)
    out["misfit"]["reference"] = rank_of(ref, N + 1, masked)
    out["candidates"] = N + 2 - len(masked)
    return out


def summarise(rows: list[dict]) -> dict:
    """Per half: the goal's share, top-10 shares, misfits in the top-50, median ranks."""
    fit = {c: np.array([r["fit"][c] for r in rows], dtype=np.float64) for c in COLUMNS}
    misfit = {c: np.array([r["misfit"][c] for r in rows], dtype=np.float64) for c in COLUMNS}
    return {
        "cases": len(rows),
        "fit_at_or_above_reference": round(float((fit["model"] <= fit["reference"]).mean()), 4),
        "unguided_at_or_above_reference": round(float((fit["unguided"] <= fit["reference"]).mean()), 4),
        "fit_top10": {c: round(float((fit[c] <= TOP).mean()), 4) for c in COLUMNS},
        "misfit_top50": {c: int((misfit[c] <= MISFIT_TOP).sum()) for c in COLUMNS},
        "median_fit_rank": {c: float(np.median(fit[c])) for c in COLUMNS},
        "median_misfit_rank": {c: float(np.median(misfit[c])) for c in COLUMNS},
    }


def run(checkpoint: str, cases_path: str | Path = CASES, half: str | None = None, log=print) -> dict:
    """Every case of the half (None: both) on one checkpoint, and each half's summary."""
    from idream.catalog import item_embeddings
    from idream.recommender import Recommender

    cases = load_cases(cases_path, half)
    rec = Recommender.load(checkpoint)
    E = rec.embeddings if rec.embeddings is not None else item_embeddings(
        rec.dataset, rec.backend, rec.config["text"].get("descriptions", "template"),
        rec.config.get("cache_dir"), progress=False)
    rows = []
    for c in cases:
        rows.append(run_case(rec, c, E))
        r = rows[-1]
        log(f"{c['id']} ({c['half']}): fit {r['fit']['model']} / unguided {r['fit']['unguided']} / "
            f"reference {r['fit']['reference']:g}; misfit {r['misfit']['model']}")
    halves = [h for h in HALVES if any(r["half"] == h for r in rows)]
    return {"dataset": rec.dataset.name, "checkpoint": str(checkpoint), "rho": rec.default_rho,
            "w": rec.default_w, "steps": 1, "seed": 0, "cases_file": _shown(cases_path),
            "summary": {h: summarise([r for r in rows if r["half"] == h]) for h in halves},
            "cases": rows, "titles": {c["id"]: c["fit"]["title"] for c in cases}}


def _shown(path) -> str:
    """A path as the results name it: relative to the repository where it lies inside."""
    p = Path(path).resolve()
    root = Path(__file__).resolve().parents[1]
    return str(p.relative_to(root)) if p.is_relative_to(root) else str(p)


def markdown(r: dict) -> str:
    """The results page: the goals per half, then every case."""
    pct = lambda x: f"{100 * x:.0f} %"  # noqa: E731
    lines = [f"# New items against their own text — {r['dataset']}", "",
             f"Checkpoint `{r['checkpoint']}` at its default ρ = {r['rho']:g} (w = {r['w']:g}, one "
             f"step, seed 0); unguided: the history alone. Cases: `{r['cases_file']}`. Machine: "
             f"{r['machine']}. Commit `{r['commit']}`. Command: `{r['command']}`.", "",
             "Reference: z(cos(item, intention)) + z(largest cos(item, history item)) in the text "
             "model's own space, each z-scored over the catalog; no training. Ranks are among the "
             "catalog and the case's two new items, less the history and its twins.", "",
             "| half | cases | fit ≤ reference (goal ≥ 80 %) | fit in top-10: model / unguided / "
             "reference | misfits in top-50: model / unguided / reference (goal 0) | median fit "
             "rank: model / unguided / reference | median misfit rank (model) |",
             "|---|---|---|---|---|---|---|"]
    for h, s in r["summary"].items():
        t, m, f = s["fit_top10"], s["misfit_top50"], s["median_fit_rank"]
        lines.append(f"| {h} | {s['cases']} | {pct(s['fit_at_or_above_reference'])} | "
                     f"{pct(t['model'])} / {pct(t['unguided'])} / {pct(t['reference'])} | "
                     f"{m['model']} / {m['unguided']} / {m['reference']} | "
                     f"{f['model']:g} / {f['unguided']:g} / {f['reference']:g} | "
                     f"{s['median_misfit_rank']['model']:g} |")
    lines += ["", "| case | half | fitting new item | model | unguided | reference | misfit: model | "
              "misfit: reference |", "|---|---|---|---|---|---|---|---|"]
    for c in r["cases"]:
        lines.append(f"| {c['id']} | {c['half']} | {r['titles'][c['id']]} | {c['fit']['model']} | "
                     f"{c['fit']['unguided']} | {c['fit']['reference']:g} | {c['misfit']['model']} | "
                     f"{c['misfit']['reference']:g} |")
    return "\n".join(lines) + "\n"


def main_newitems(a) -> None:
    """`python -m idream bench newitems`: run, write results/bench-newitems-<dataset>[-half].*"""
    import torch

    from benchmarks.results import git_commit, machine, write_results

    if a.threads:
        torch.set_num_threads(a.threads)
    r = run(a.checkpoint, a.cases or CASES, a.half, log=lambda s: print(s, file=sys.stderr, flush=True))
    r.update(command="python -m idream " + " ".join(sys.argv[1:]), commit=git_commit(), machine=machine())
    stem = f"bench-newitems-{r['dataset']}" + (f"-{a.half}" if a.half else "")
    md = markdown(r)
    write_results(r, Path(a.out), stem, md)
    print(md)
