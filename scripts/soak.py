"""The app for hours: a crowd sending mixed requests without pause against one app process.

    python scripts/soak.py [--minutes 60] [--users 20] [--window 30] [--checkpoint checkpoints/ml-100k]

Serves the app in its own process on 127.0.0.1 (as `python app.py` builds it), lets --users
gradio_client users (scripts/crowd.py: hostile intentions, one /sweep in five) make two warm-up
calls each, then send requests one after another for --minutes. Every --window seconds it notes
the server's RSS and the window's requests, p50 / p95 latency and failures. Checks: no error,
refusal or wrong answer; RSS flat after warm-up (at most +5% from the end of the first sixth of
the run to its end); p95 of the last sixth at most 20% above the first sixth's. Writes
results/soak.{json,md} and results/soak.svg (RSS and latency over time).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from crowd import Crowd, Tally, percentile  # noqa: E402

MAX_RSS_GROWTH = 0.05  # over the last 5/6 of the run
MAX_P95_RISE = 0.20  # last sixth against the first


def soak(checkpoint: str, minutes: float, users: int, window_s: float, log=print) -> dict:
    """Run the soak; the report (series and checks) as a dict."""
    from reliability import Catalog, Server

    cat = Catalog.for_checkpoint(checkpoint)
    server = Server(checkpoint)
    rss_series, stop = [], threading.Event()
    try:
        log(f"app ready in {server.start_s:.0f} s; {users} users warm up")
        crowd = Crowd(server.url, cat.labels, cat.item_ids, cat.sequences, users)
        crowd.run(2, Tally(), seed=1)
        t0 = time.perf_counter()

        def watch():
            while True:
                rss_series.append((time.perf_counter() - t0, server.rss()))
                if stop.wait(window_s):
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        load_before = os.getloadavg()
        log(f"soak: {users} users for {minutes:g} min")
        tally = Tally()
        crowd.run(None, tally, seed=2, until=t0 + minutes * 60)
        wall = time.perf_counter() - t0
        stop.set()
        watcher.join(5)
        rss_series.append((wall, server.rss()))
        load_after = os.getloadavg()
        server_errors = server.errors_logged()
    finally:
        stop.set()
        server.stop()
    return report(tally, t0, rss_series, wall, window_s, minutes, users, load_before, load_after, server_errors)


def windows(tally: Tally, t0: float, wall: float, window_s: float) -> list[dict]:
    """Per window of the run: requests, answered, failures, p50 / p95 of the answered ones."""
    out = []
    n = max(1, round(wall / window_s))  # a last sliver of a window (the users' last answers) joins none
    for w in range(n):
        lo, hi = t0 + w * window_s, t0 + min((w + 1) * window_s, wall)
        recs = [r for r in tally.records if lo <= r[0] < hi]
        ok = [r[1] for r in recs if r[3] == "ok"]
        out.append({"start_s": round(w * window_s, 1), "requests": len(recs), "answered": len(ok),
                    "failed": len(recs) - len(ok), "requests_per_s": round(len(recs) / max(hi - lo, 1e-9), 1),
                    "p50_ms": _ms(percentile(ok, 50)), "p95_ms": _ms(percentile(ok, 95))})
    return out


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000, 1)


def report(tally, t0, rss_series, wall, window_s, minutes, users, load_before, load_after, server_errors) -> dict:
    """The soak's numbers and checks; times in the records are perf_counter, t0 the run's start."""
    sixth = wall / 6
    first = [r[1] for r in tally.records if r[0] - t0 < sixth and r[3] == "ok"]
    last = [r[1] for r in tally.records if r[0] - t0 >= wall - sixth and r[3] == "ok"]
    p95_first, p95_last = percentile(first, 95), percentile(last, 95)
    rss_at_sixth = next(v for t, v in rss_series if t >= sixth) if any(t >= sixth for t, _ in rss_series) \
        else rss_series[-1][1]
    rss_end = rss_series[-1][1]
    growth = rss_end / rss_at_sixth - 1
    rise = p95_last / p95_first - 1
    failed = {k: tally.count(k) for k in ("error", "refused", "wrong")}
    return {
        "minutes": minutes, "users": users, "window_s": window_s, "wall_s": round(wall, 1),
        "requests": len(tally.records), "answered": tally.count("ok"), **failed,
        "messages": tally.messages, "requests_per_s": round(len(tally.records) / wall, 1),
        "rss_mb": [[round(t, 1), round(v / 2**20, 1)] for t, v in rss_series],
        "rss_growth_last_five_sixths": round(growth, 4),
        "p95_ms_first_sixth": round(p95_first * 1000, 1), "p95_ms_last_sixth": round(p95_last * 1000, 1),
        "p95_rise": round(rise, 4), "windows": windows(tally, t0, wall, window_s),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "server_log_errors": server_errors[:10],
        "checks": {"no errors, refusals or wrong answers": not any(failed.values()),
                   f"RSS growth over the last 5/6 ≤ {MAX_RSS_GROWTH:.0%}": growth <= MAX_RSS_GROWTH,
                   f"p95 of the last sixth ≤ {1 + MAX_P95_RISE:g} × the first sixth's": rise <= MAX_P95_RISE},
    }


def svg(r: dict, width: int = 760, height: int = 220) -> str:
    """Two panels, one above the other: the server's RSS (MB) and the windows' p50 / p95 (ms)
    over the run's minutes. Plain SVG: no plotting library needed to look at it."""
    panels = [("server RSS (MB)", [("RSS", "#d9480f", [(t / 60, v) for t, v in r["rss_mb"]])]),
              ("latency per window (ms)", [
                  ("p95", "#1c7ed6", [((w["start_s"] + r["window_s"] / 2) / 60, w["p95_ms"]) for w in r["windows"]
                                      if w["p95_ms"] is not None]),
                  ("p50", "#37b24d", [((w["start_s"] + r["window_s"] / 2) / 60, w["p50_ms"]) for w in r["windows"]
                                      if w["p50_ms"] is not None])])]
    x_max = max(r["wall_s"] / 60, 1e-9)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{2 * height + 20}" '
             'font-family="sans-serif" font-size="11">', '<rect width="100%" height="100%" fill="white"/>']
    for k, (title, series) in enumerate(panels):
        top, left, w, h = k * (height + 10) + 25, 60, width - 80, height - 55
        ys = [y for _, _, pts in series for _, y in pts] or [0, 1]
        y_lo, y_hi = min(0, min(ys)), max(ys) * 1.1 or 1
        sx = lambda x: left + w * x / x_max  # noqa: E731
        sy = lambda y: top + h - h * (y - y_lo) / (y_hi - y_lo)  # noqa: E731
        parts.append(f'<text x="{left}" y="{top - 8}" font-size="13">{title}</text>')
        parts.append(f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>')
        for i in range(5):  # y grid and labels
            y = y_lo + (y_hi - y_lo) * i / 4
            parts.append(f'<line x1="{left}" x2="{left + w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#eee"/>')
            parts.append(f'<text x="{left - 5}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:.0f}</text>')
        for i in range(6):  # x labels in minutes
            x = x_max * i / 5
            parts.append(f'<text x="{sx(x):.1f}" y="{top + h + 14}" text-anchor="middle">{x:.1f}</text>')
        parts.append(f'<text x="{left + w / 2}" y="{top + h + 28}" text-anchor="middle">minutes</text>')
        for j, (name, color, pts) in enumerate(series):
            if pts:
                path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
                parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
            parts.append(f'<text x="{left + w - 60 * (j + 1) + 10}" y="{top - 8}" fill="{color}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def markdown(r: dict) -> str:
    checks = "\n".join(f"| {k} | {'yes' if v else '**no**'} |" for k, v in r["checks"].items())
    rss = r["rss_mb"]
    return (
        f"Measured by `{r['command']}` on {r['date']}; machine: {r['machine']} (`nproc` {r['nproc']}); "
        f"load average (1, 5, 15 min) {r['load_average_before']} when the soak started and "
        f"{r['load_average_after']} when it ended. The cores are shared with other jobs whenever "
        "the load average is above about 2 (the app and the users' process), so latency over time "
        "also follows what else ran.\n\n"
        f"The app (`{r['checkpoint']}`) in one process on 127.0.0.1; {r['users']} gradio_client users "
        f"(one session each) sending requests one after another for {r['minutes']:g} min "
        "(`/recommend` with hostile intentions, one `/sweep` in five), after two warm-up calls each.\n\n"
        f"{r['requests']:,} requests in {r['wall_s']:.0f} s ({r['requests_per_s']} a second): "
        f"{r['answered']:,} answered right, {r['error']} errors, {r['refused']} refused, {r['wrong']} wrong. "
        f"RSS {rss[0][1]} MB at the start, {rss[-1][1]} MB at the end, "
        f"{r['rss_growth_last_five_sixths'] * 100:+.1f}% over the last five sixths; p95 "
        f"{r['p95_ms_first_sixth']:.0f} ms in the first sixth, {r['p95_ms_last_sixth']:.0f} ms in the "
        f"last ({r['p95_rise'] * 100:+.0f}%).\n\n"
        "| check | met |\n|---|---|\n" + checks + "\n\n"
        "![RSS and latency over the soak](soak.svg)\n\n"
        f"Series every {r['window_s']:g} s in soak.json (`rss_mb`, `windows`).\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=os.environ.get("IDREAM_CHECKPOINT", "checkpoints/ml-100k"))
    p.add_argument("--minutes", type=float, default=60)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--window", type=float, default=30, help="seconds between RSS and latency points")
    p.add_argument("--out", default="results", help="writes soak.json, soak.md and soak.svg here")
    a = p.parse_args(argv)
    from benchmarks.results import machine

    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    r = {"command": "python scripts/soak.py " + " ".join(sys.argv[1:] if argv is None else argv),
         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "checkpoint": a.checkpoint,
         "machine": machine(), "nproc": os.cpu_count(),
         **soak(a.checkpoint, a.minutes, a.users, a.window, log)}
    folder = Path(a.out) if Path(a.out).is_absolute() else ROOT / a.out
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "soak.json").write_text(json.dumps(r, indent=2, ensure_ascii=False) + "\n")
    (folder / "soak.svg").write_text(svg(r))
    (folder / "soak.md").write_text(markdown(r))
    print(markdown(r))
    return 0 if all(r["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
