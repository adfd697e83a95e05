"""Regenerate the README's measured sections from the files the commands wrote.

Fills the blocks between `<!-- NAME:start -->` and `<!-- NAME:end -->` markers; numbers are
never typed into the README by hand.
"""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from idream.report import quality_checks, results_table  # noqa: E402


def block(text: str, name: str, body: str) -> str:
    pat = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pat.search(text):
        print(f"warning: no {name} block in README.md", file=sys.stderr)
        return text
    return pat.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def core_results(ckpt: Path) -> str:
    metrics = json.loads((ckpt / "metrics.json").read_text())
    cfg = json.loads((ckpt / "config.json").read_text())
    g, seed = cfg["guidance"], cfg["train"]["seed"]
    lines = [f"Dataset **{metrics['dataset']}**, test split ({metrics['protocol']}); seed {seed}; "
             f"machine: {metrics['machine']}.", "", results_table(metrics), ""]
    checks = quality_checks(metrics, g["w"], g["rho"], seed)
    if checks:
        lines += ["| quality bar | value | reference | ratio | bar | |", "|---|---|---|---|---|---|"]
        for c in checks:
            lines.append(f"| {c['check']} | {c['value']:.4f} | {c['reference']:.4f} | {c['ratio']:.2f}× "
                         f"| ≥ {c['bar']:.2f}× | {'pass' if c['passed'] else 'FAIL'} |")
        lines.append("")
    cmds = sorted({e["command"] for e in metrics["results"].values()})
    lines += ["Produced by:", "", "```", cfg["train"].get("command", ""), *cmds, "```"]
    cs = metrics.get("cold_start")
    if cs:
        lines += ["", f"Cold start (load + one recommendation with an intention, fresh process): "
                      f"median {cs['median_s']:.2f} s over {cs['repeats']} runs on {cs['machine']} "
                      f"(`{cs['command']}`)."]
    return "\n".join(lines)


def main():
    readme = ROOT / "README.md"
    text = readme.read_text()
    ckpt = ROOT / "checkpoints" / "ml-100k"
    if (ckpt / "metrics.json").exists():
        text = block(text, "results", core_results(ckpt))
    extra = ROOT / "results"
    for name in ("app-speed", "tuning", "tuning-runs", "bench-quality-ml-100k",
                 "bench-quality-ml-100k-minus2", "bench-quality-ml-1m",
                 "bench-quality-ml-1m-gpu", "bench-quality-ml-1m-gpu-idream-batch128",
                 "bench-notes", "recbole-sasrec-ml-100k", "ablation-sampling", "ablation-training", "bench-speed",
                 "reliability"):
        f = extra / f"{name}.md"
        if f.exists():
            text = block(text, name, f.read_text())
    readme.write_text(text)


if __name__ == "__main__":
    main()
