"""Regenerate the measured sections of README.md and docs/*.md from the files the commands wrote.

Each entry of BLOCKS fills the text between `<!-- NAME:start -->` and `<!-- NAME:end -->` in one
document from one source: a results/*.md table written by a command, or a checkpoint's
metrics.json (rendered by `core_results`). Numbers are never typed into a block by hand, and no
hand-written prose belongs inside one. A block listed here but missing from its document, a
missing source, and a block marker that no entry fills are all reported as warnings.

    python scripts/update_readme.py          # rewrite the documents
    python scripts/update_readme.py --check  # exit 1 when a document is not current
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHECKPOINT = "checkpoints/ml-100k/metrics.json"

# (document, block name, source), paths relative to the repository root
BLOCKS = [
    ("README.md", "bench-quality-ml-100k", "results/bench-quality-ml-100k.md"),
    ("docs/benchmarks.md", "results", CHECKPOINT),
    ("docs/benchmarks.md", "bench-quality-ml-100k", "results/bench-quality-ml-100k.md"),
    ("docs/benchmarks.md", "bench-quality-ml-100k-cold", "results/bench-quality-ml-100k-cold.md"),
    ("docs/benchmarks.md", "bench-quality-ml-100k-minus2", "results/bench-quality-ml-100k-minus2.md"),
    ("docs/benchmarks.md", "bench-quality-ml-1m-gpu", "results/bench-quality-ml-1m-gpu.md"),
    ("docs/benchmarks.md", "bench-quality-ml-1m-gpu-idream-batch128",
     "results/bench-quality-ml-1m-gpu-idream-batch128.md"),
    ("docs/benchmarks.md", "bench-quality-ml-1m", "results/bench-quality-ml-1m.md"),
    ("docs/benchmarks.md", "recbole-sasrec-ml-100k", "results/recbole-sasrec-ml-100k.md"),
    ("docs/benchmarks.md", "bench-text-ml-100k", "results/bench-text-ml-100k.md"),
    ("docs/benchmarks.md", "bench-text-ml-100k-titles", "results/bench-text-ml-100k-titles.md"),
    ("docs/benchmarks.md", "app-speed", "results/app-speed.md"),
    ("docs/benchmarks.md", "bench-speed", "results/bench-speed.md"),
    ("docs/tuning.md", "tuning", "results/tuning.md"),
    ("docs/tuning.md", "tuning-runs", "results/tuning-runs.md"),
    ("docs/tuning.md", "bench-quality-ml-100k-future-k5", "results/bench-quality-ml-100k-future-k5.md"),
    ("docs/tuning.md", "bench-quality-ml-100k-future-k1", "results/bench-quality-ml-100k-future-k1.md"),
    ("docs/ablations.md", "ablation-sampling", "results/ablation-sampling.md"),
    ("docs/ablations.md", "ablation-training", "results/ablation-training.md"),
    ("docs/reliability.md", "reliability", "results/reliability.md"),
]

MARKER = re.compile(r"<!-- ([\w.-]+):start -->")


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def core_results(ckpt: Path) -> str:
    """The shipped checkpoint's own table, quality bars and cold start, from its JSON files."""
    from idream.evaluation.report import bars_markdown, quality_checks, results_table

    metrics = json.loads((ckpt / "metrics.json").read_text())
    cfg = json.loads((ckpt / "config.json").read_text())
    g, seed = cfg["guidance"], cfg["train"]["seed"]
    lines = [f"Dataset **{metrics['dataset']}** ({metrics['protocol']}); seed {seed}; "
             f"machine: {metrics['machine']}.", "", "Test split (read once, to report):", "",
             results_table(metrics), "", "Validation split (what every choice and the shipping bars read):",
             "", results_table(metrics, "valid"), ""]
    checks = quality_checks(metrics, g["w"], g["rho"], seed)
    if checks:
        lines += [bars_markdown(checks), ""]
    cmds = sorted({e["command"] for e in metrics["results"].values()})
    lines += ["Produced by:", "", "```", cfg["train"].get("command", ""), *cmds, "```"]
    cs = metrics.get("cold_start")
    if cs:
        lines += ["", f"Cold start (load + one recommendation with an intention, fresh process): "
                      f"median {cs['median_s']:.2f} s over {cs['repeats']} runs on {cs['machine']} "
                      f"(`{cs['command']}`)."]
    return "\n".join(lines)


def render(source: str) -> str:
    """The body of a block, from its source file."""
    path = ROOT / source
    if path.name == "metrics.json":
        return core_results(path.parent)
    return path.read_text(encoding="utf-8")


def fill(text: str, name: str, body: str) -> tuple[str, bool]:
    """text with the NAME block's body replaced; and whether the block was there."""
    pat = re.compile(rf"(<!-- {re.escape(name)}:start -->\n).*?(<!-- {re.escape(name)}:end -->)", re.S)
    if not pat.search(text):
        return text, False
    return pat.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text), True


def updated_documents() -> dict[str, tuple[str, str]]:
    """{document: (current text, text with every block filled)}; warnings on stderr."""
    docs: dict[str, tuple[str, str]] = {}
    rendered: dict[str, str] = {}
    for doc, name, source in BLOCKS:
        path = ROOT / doc
        if not path.exists():
            warn(f"{doc} does not exist (block {name})")
            continue
        old, new = docs.get(doc, (None, None))
        if old is None:
            old = new = path.read_text(encoding="utf-8")
        if not (ROOT / source).exists():
            warn(f"{source} does not exist: block {name} in {doc} left as it is")
        else:
            if source not in rendered:
                rendered[source] = render(source)
            new, found = fill(new, name, rendered[source])
            if not found:
                warn(f"no {name} block in {doc} (expected <!-- {name}:start --> … <!-- {name}:end -->)")
        docs[doc] = (old, new)
    listed = {(doc, name) for doc, name, _ in BLOCKS}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        doc = path.relative_to(ROOT).as_posix()
        text = docs[doc][0] if doc in docs else path.read_text(encoding="utf-8")
        for name in MARKER.findall(text):
            if (doc, name) not in listed:
                warn(f"{doc} has a block {name} that no entry of BLOCKS fills")
    return docs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a document is stale")
    a = ap.parse_args(argv)
    stale = []
    for doc, (old, new) in updated_documents().items():
        if new != old:
            stale.append(doc)
            if not a.check:
                (ROOT / doc).write_text(new, encoding="utf-8")
    verb = "stale" if a.check else "updated"
    print(f"{verb}: {', '.join(stale)}" if stale else "all blocks current")
    return 1 if a.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
