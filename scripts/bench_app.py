"""Speed of the demo's endpoints: server-side /recommend (one-step) and the 11-value ρ sweep.

    python scripts/bench_app.py [--checkpoint checkpoints/ml-100k] [--calls 30] [--http] [--cold-start]

Server-side time is the endpoint's own function (what /recommend and /sweep run), timed in
process after warm-up and after the background UMAP refit, median over --calls calls. --http
adds the gradio_client round trip to the app served on 127.0.0.1; --cold-start times
`python app.py` from launch to its first answered /recommend. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.speed import timings_ms  # noqa: E402

INTENTION = "something light and funny from the 90s"


def timed(fn, calls: int, warmup: int) -> dict:
    times = sorted(timings_ms(fn, calls, warmup))
    return {"median_ms": round(statistics.median(times), 1), "p90_ms": round(times[int(0.9 * (len(times) - 1))], 1),
            "min_ms": round(times[0], 1), "calls": calls}


def cold_start(checkpoint: str, history: list[str], timeout: float = 120) -> dict:
    """Seconds from `python app.py` to the page served and to the first /recommend answered."""
    import urllib.request

    from demo.testing import free_port

    port = free_port()
    env = dict(os.environ, IDREAM_CHECKPOINT=checkpoint, GRADIO_SERVER_PORT=str(port),
               GRADIO_SERVER_NAME="127.0.0.1", GRADIO_ANALYTICS_ENABLED="False")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        page = None
        while time.perf_counter() - t0 < timeout and page is None:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    page = time.perf_counter() - t0 if r.status == 200 else None
            except OSError:
                time.sleep(0.2)
        from gradio_client import Client

        Client(url, verbose=False).predict(history, INTENTION, api_name="/recommend")
        return {"page_s": round(page, 1), "first_recommend_s": round(time.perf_counter() - t0, 1)}
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=os.environ.get("IDREAM_CHECKPOINT", "checkpoints/ml-100k"))
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--user", default="1", help="whose last 10 items form the history")
    p.add_argument("--http", action="store_true", help="also time the gradio_client round trip")
    p.add_argument("--cold-start", action="store_true", help="also time `python app.py` to first answer")
    p.add_argument("--out", default="results", help="writes app-speed.json and app-speed.md here")
    a = p.parse_args(argv)

    import gradio
    import torch

    from demo.callbacks import Callbacks
    from demo.service import get_service
    from benchmarks.results import machine

    t = time.perf_counter()
    s = get_service(a.checkpoint)
    load_s = time.perf_counter() - t
    s.wait_ready(300)  # the background UMAP refit must not compete with the timings
    cb = Callbacks(s)
    history, _ = s.user_history(a.user)
    args = dict(history=history, intention=INTENTION, w=None, steps=1, k=10, seed=0)
    out = {
        "checkpoint": a.checkpoint,
        "machine": machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "gradio": gradio.__version__},
        "request": {"history_items": len(history), "intention": INTENTION, "steps": 1, "k": 10},
        "service_load_s": round(load_s, 2),
        "recommend_one_step": timed(lambda: cb.recommend_api(rho=None, **args), a.calls, a.warmup),
        "sweep_rho_0_to_10": timed(lambda: cb.sweep_api(**args), max(10, a.calls // 3), 2),
        "explore_ui_with_figure": timed(
            lambda: cb.explore(history, INTENTION, None, None, 1, 10, 0, []), 10, 2),
        "goals_ms": {"recommend_one_step": 150, "sweep_rho_0_to_10": 1000},
    }
    if a.http:
        from gradio_client import Client

        from demo.testing import serve

        client = Client(serve(a.checkpoint)[1], verbose=False)
        out["http_recommend_one_step"] = timed(
            lambda: client.predict(history, INTENTION, api_name="/recommend"), a.calls, a.warmup)
    if a.cold_start:
        out["cold_start"] = cold_start(a.checkpoint, history)
    out["command"] = "python scripts/bench_app.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(json.dumps(out, indent=2))
    write_markdown(out, Path(a.out))
    return 0


def write_markdown(out: dict, folder: Path) -> None:
    """results/app-speed.{json,md}: what the README shows."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app-speed.json").write_text(json.dumps(out, indent=2))
    r, s = out["recommend_one_step"], out["sweep_rho_0_to_10"]
    lines = [f"Machine: {out['machine']}, {out['torch_threads']} torch thread(s), load average "
             f"{out['load_average'][0]} at the start; checkpoint `{out['checkpoint']}`; request: "
             f"{out['request']['history_items']} history items + an intention, k = 10.", "",
             "| measurement | median | p90 | goal |", "|---|---|---|---|",
             f"| `/recommend`, one-step, server side ({r['calls']} calls) | {r['median_ms']} ms | "
             f"{r['p90_ms']} ms | ≤ 150 ms |",
             f"| ρ sweep, 11 values in one batched call ({s['calls']} calls) | {s['median_ms']} ms | "
             f"{s['p90_ms']} ms | ≤ 1000 ms |"]
    if "http_recommend_one_step" in out:
        h = out["http_recommend_one_step"]
        lines.append(f"| `/recommend` round trip through gradio_client | {h['median_ms']} ms | "
                     f"{h['p90_ms']} ms | |")
    if "cold_start" in out:
        c = out["cold_start"]
        lines.append("| cold start: page served / first answer | "
                     + " / ".join(f"{v} s" for k, v in c.items() if k.endswith("_s")) + " | | < 30 s |")
    lines += ["", f"Command: `{out['command']}`"]
    (folder / "app-speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
