"""Cold start: a fresh `python -m idream recommend` process, timed, into metrics.json."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.results import machine
from idream.data.datasets import load_dataset
from idream.evaluation.card import write_model_card
from idream.serving.checkpoint import read_config, write_json


def bench_coldstart(ckpt: str, repeats: int = 5) -> dict:
    """Median wall time of a fresh `python -m idream recommend` process (load + one answer)."""
    ds = load_dataset(read_config(Path(ckpt)).data.dataset)
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
           "command": f"python -m benchmarks coldstart --checkpoint {ckpt} --repeats {repeats}"}
    path = Path(ckpt) / "metrics.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data["cold_start"] = out
    write_json(path, data)
    write_model_card(Path(ckpt))
    return out
