"""Speed of the demo's endpoints: server-side /recommend (one-step) and the 11-value ρ sweep;
and the app under a crowd.

    python scripts/bench_app.py [--checkpoint checkpoints/ml-100k] [--calls 30] [--http] [--cold-start]
    python scripts/bench_app.py load [--users 100] [--calls 10] [--set IDREAM_MAX_BATCH=64 ...]

Server-side time is the endpoint's own function (what /recommend and /sweep run), timed in
process after warm-up and after the background UMAP refit, median over --calls calls (through the
API's batching worker, the intention's vector from its cache after the first call). --http
adds the gradio_client round trip to the app served on 127.0.0.1; --cold-start times
`python app.py` from launch to its first answered /recommend. Prints one JSON object.

`load` serves the app in its own process on 127.0.0.1 (as `python app.py` builds it; --set
overrides its settings through the environment), lets --users gradio_client users (scripts/crowd.py:
hostile intentions, one /sweep in five) make two warm-up calls each, then --calls calls each, all
at once; counts refusals, errors and wrong answers, latency, throughput and the server's RSS, and
writes results/app-load.{json,md} (the machine and its load average named).
"""

from __future__ import annotations

import argparse
import asyncio
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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["load"]:
        return load_main(argv[1:])
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
        "recommend_one_step": timed(lambda: asyncio.run(cb.recommend_api(rho=None, **args)), a.calls, a.warmup),
        "sweep_rho_0_to_10": timed(lambda: asyncio.run(cb.sweep_api(**args)), max(10, a.calls // 3), 2),
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



# -- the crowd -----------------------------------------------------------------------------------

GOALS = {"refused": 0, "errors": 0, "wrong": 0, "recommend_p95_ms": 1000, "requests_per_s": 60,
         "rss_growth": 0.10}


def load_settings() -> dict:
    """The app's crowd settings as the served process reads them (call after setting the environment)."""
    import demo.app
    import demo.batcher

    return {"IDREAM_MAX_BATCH": demo.batcher.MAX_BATCH, "IDREAM_MAX_WAITING": demo.batcher.MAX_WAITING,
            "IDREAM_MAX_THREADS": demo.app.MAX_THREADS, "IDREAM_QUEUE_SIZE": demo.app.QUEUE_SIZE}


def sample_rss(server, samples: list, stop) -> None:
    """The server's RSS every half second until stop is set (or the process is gone)."""
    while not stop.wait(0.5):
        try:
            samples.append(server.rss())
        except OSError:
            return


def run_crowd(checkpoint: str, users: int, calls: int, warmup: int = 2, env: dict | None = None,
              log=print) -> dict:
    """Serve the app, warm it up, send users × calls at once, and measure (see the docstring)."""
    import threading

    from crowd import Crowd, Tally, percentile
    from reliability import Catalog, Server

    cat = Catalog.for_checkpoint(checkpoint)
    os.environ.update(env or {})
    settings = load_settings()
    server = Server(checkpoint, env=env)
    rss, samples, stop = {"after_start": server.rss()}, [], threading.Event()
    try:
        log(f"app ready in {server.start_s:.0f} s; connecting {users} users")
        crowd = Crowd(server.url, cat.labels, cat.item_ids, cat.sequences, users)
        crowd.run(warmup, Tally(), seed=1)
        rss["after_warmup"] = server.rss()
        threading.Thread(target=sample_rss, args=(server, samples, stop), daemon=True).start()
        load_before = os.getloadavg()
        log(f"{users} users × {calls} calls")
        tally = Tally()
        cpu = (server.cpu_seconds(), sum(os.times()[:2]))
        wall = crowd.run(calls, tally, seed=2)
        cpu = (server.cpu_seconds() - cpu[0], sum(os.times()[:2]) - cpu[1])
        load_after = os.getloadavg()
        rss["end"] = server.rss()
        stop.set()
        server_errors = server.errors_logged()
    finally:
        stop.set()
        server.stop()
    rec = tally.records
    lat = {}
    for kind in ("recommend", "sweep", "all"):
        xs = [r[1] for r in rec if r[3] == "ok" and kind in (r[2], "all")]
        lat[kind] = {"n": len(xs), "mean_ms": round(sum(xs) / max(len(xs), 1) * 1000, 1),
                     "p50_ms": round(percentile(xs, 50) * 1000, 1),
                     "p95_ms": round(percentile(xs, 95) * 1000, 1),
                     "max_ms": round(max(xs) * 1000, 1) if xs else None}
    return {
        "users": users, "calls_per_user": calls, "warmup_calls_per_user": warmup, "sent": len(rec),
        "answered": tally.count("ok"), "refused": tally.count("refused"), "errors": tally.count("error"),
        "wrong": tally.count("wrong"), "messages": tally.messages, "wall_s": round(wall, 2),
        "requests_per_s": round(len(rec) / wall, 1), "latency": lat,
        "cpu_ms_per_request": {"server": round(cpu[0] / len(rec) * 1000, 1),
                               "users": round(cpu[1] / len(rec) * 1000, 1)},
        "rss_mb": {k: round(v / 2**20, 1) for k, v in rss.items()},
        "rss_max_mb": round(max(samples + [rss["end"]]) / 2**20, 1),
        "rss_growth": round(rss["end"] / rss["after_warmup"] - 1, 4),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "settings": settings, "server_log_errors": server_errors[:10], "app_start_s": round(server.start_s, 1),
    }


def load_main(argv) -> int:
    p = argparse.ArgumentParser(prog="bench_app.py load", description="the app under a crowd")
    p.add_argument("--checkpoint", default=os.environ.get("IDREAM_CHECKPOINT", "checkpoints/ml-100k"))
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2, help="calls per user before the measured ones")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an app setting for the served process, e.g. IDREAM_MAX_BATCH=32")
    p.add_argument("--out", default="results", help="writes app-load.json and app-load.md here")
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "scripts"))
    from benchmarks.results import machine

    env = dict(kv.split("=", 1) for kv in a.set)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    out = {"command": "python scripts/bench_app.py load " + " ".join(argv),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "checkpoint": a.checkpoint,
           "machine": machine(), "nproc": os.cpu_count(),
           **run_crowd(a.checkpoint, a.users, a.calls, a.warmup, env, log), "goals": GOALS}
    out["met"] = met(out)
    folder = ROOT / a.out
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app-load.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    (folder / "app-load.md").write_text(load_markdown(out))
    print(load_markdown(out))
    return 0 if all(out["met"].values()) else 1


def met(r: dict) -> dict:
    """Each goal: met or not."""
    return {"0 refused": r["refused"] == 0, "0 errors": r["errors"] == 0, "0 wrong answers": r["wrong"] == 0,
            "/recommend p95 ≤ 1 s": r["latency"]["recommend"]["p95_ms"] <= GOALS["recommend_p95_ms"],
            "≥ 60 requests/s": r["requests_per_s"] >= GOALS["requests_per_s"],
            "RSS growth ≤ 10%": r["rss_growth"] <= GOALS["rss_growth"]}


def load_markdown(r: dict) -> str:
    lat = r["latency"]
    ratio = lat["recommend"]["p95_ms"] / lat["all"]["mean_ms"]
    lines = [
        f"Measured by `{r['command']}` on {r['date']}; machine: {r['machine']} (`nproc` {r['nproc']}); "
        f"load average (1, 5, 15 min) {r['load_average_before']} when the crowd started and "
        f"{r['load_average_after']} when it ended. The cores are shared: other jobs ran beside this "
        "one whenever the load average is above what the app and the crowd's own process account for "
        "(about 2), and timings are noisier for it.", "",
        f"The app (`{r['checkpoint']}`) in its own process on 127.0.0.1, settings "
        + ", ".join(f"`{k}={v}`" for k, v in r["settings"].items())
        + f"; {r['users']} gradio_client users (one session each, in one client process on the same "
        f"cores) after {r['warmup_calls_per_user']} warm-up calls each, then {r['calls_per_user']} calls "
        "each, all at once: `/recommend` with hostile intentions (none, 5,000 characters, emoji, HTML, "
        "the page's examples, new words) and one `/sweep` in every five.", "",
        "| goal | measured | met |", "|---|---|---|",
        f"| 0 refused | {r['refused']} of {r['sent']} | {_yes(r['met']['0 refused'])} |",
        f"| 0 errors | {r['errors']} | {_yes(r['met']['0 errors'])} |",
        f"| 0 wrong answers (10 items, none from the history, finite scores) | {r['wrong']} | "
        f"{_yes(r['met']['0 wrong answers'])} |",
        f"| `/recommend` p95 ≤ 1 s | {lat['recommend']['p95_ms']:.0f} ms | {_yes(r['met']['/recommend p95 ≤ 1 s'])} |",
        f"| ≥ 60 requests a second | {r['requests_per_s']} ({r['sent']} in {r['wall_s']} s) | "
        f"{_yes(r['met']['≥ 60 requests/s'])} |",
        f"| RSS growth ≤ 10% | {r['rss_growth'] * 100:+.1f}% ({r['rss_mb']['after_warmup']} → "
        f"{r['rss_mb']['end']} MB, max {r['rss_max_mb']} MB) | {_yes(r['met']['RSS growth ≤ 10%'])} |",
        "", f"CPU time per request: {r['cpu_ms_per_request']['server']} ms in the app's process, "
        f"{r['cpu_ms_per_request']['users']} ms in the users' (gradio_client) process. Each user waits "
        f"for its answer before its next call, so the mean latency is users / throughput (Little's law): "
        f"{r['users']} / {r['requests_per_s']} = {r['users'] / r['requests_per_s']:.2f} s (measured: "
        f"{lat['all']['mean_ms'] / 1000:.2f} s). With this run's ratio of `/recommend`'s p95 to the mean "
        f"({ratio:.2f}), a p95 of 1 s asks for {r['users'] * ratio:.0f} requests a second, at most "
        f"{2000 / (r['users'] * ratio):.1f} ms of CPU per request for the app and the users together on "
        "2 idle cores.",
        "", "| endpoint | answered | p50 | p95 | max |", "|---|---|---|---|---|"]
    for k, v in lat.items():
        lines.append(f"| {k} | {v['n']} | {v['p50_ms']:.0f} ms | {v['p95_ms']:.0f} ms | "
                     f"{v['max_ms'] or 0:.0f} ms |")
    if r["messages"]:
        lines += ["", "First messages: " + "; ".join(f"{k}: {m[0]}" for k, m in r["messages"].items() if m)]
    return "\n".join(lines) + "\n"


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


if __name__ == "__main__":
    sys.exit(main())
