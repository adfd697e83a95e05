"""What every benchmark result carries: the metrics it reports, the machine and the commit it ran
on, and its JSON written beside its Markdown (the README shows those files, never typed-in numbers).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from idream.evaluation.report import METRIC_KEYS, machine  # noqa: F401 (re-exported)


def git_commit() -> str:
    """The checked-out commit; IDREAM_GIT_COMMIT names it where the tree is a copy (a GPU machine)."""
    if os.environ.get("IDREAM_GIT_COMMIT"):
        return os.environ["IDREAM_GIT_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_results(result: dict, out_dir: Path, stem: str, markdown: str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2, default=float))
    (out_dir / f"{stem}.md").write_text(markdown)
    return out_dir / f"{stem}.md"
