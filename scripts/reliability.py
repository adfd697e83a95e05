"""Reliability, measured: generated hostile inputs, injected file faults, and concurrent users.

    python scripts/reliability.py [--checkpoint checkpoints/ml-100k] [--users 20] [--requests 25]
                                  [--scale 3] [--skip-properties] [--skip-load] [--out results]

1. Runs tests/test_hostile_inputs.py and tests/test_corrupt_files.py with --scale times their
   default number of generated cases, and counts the cases per target and the faults injected.
2. Starts the app (`demo.app.build_app`, as `python app.py` does) in its own process on
   127.0.0.1, waits for its warm-up, then drives it with concurrent gradio_client users, each its
   own session, each making a fixed mix of /recommend, /sweep, /add_item (a new item in the
   session) and /explore requests, bounded in count and time. Every answer is checked against
   its own inputs: /recommend and /sweep must equal the answer the same query got when asked
   alone, no result holds the user's history, and a session's new items appear in that
   session's /explore answers (table, map, catalog count) and in no other session's.
   Reports errors, p50/p95 latency, and the server process's RSS at start, after a warm-up
   round and at the end (growth after warm-up must stay under 10%).
Writes results/reliability.json and results/reliability.md (what the README's Reliability
section reports). tests/test_load.py runs part 2 on a tiny checkpoint.

`python scripts/reliability.py serve --checkpoint DIR --port N` is the server process itself;
`python scripts/reliability.py render [FOLDER]` rewrites reliability.md from reliability.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

INTENTIONS = ["", "something light and funny from the 90s", "a dark, tense crime thriller",
              "a romantic comedy for a date night", "an animated film the whole family can watch",
              "mind-bending science fiction", "a classic western with gunfights"]
REQUEST_TIMEOUT_S = 120.0  # one answer; none by then counts as an error (a hung worker)
MAX_RSS_GROWTH = 0.10
NEW_TAG = re.compile(r"LT-u(\d+)-(\d+)")  # the marker in every new item's title


# -- the server process ------------------------------------------------------------------------

def serve_main(checkpoint: str, port: int, ready_timeout: float) -> int:
    """Build the app as app.py does, serve it on 127.0.0.1:port, print READY once warm."""
    from demo.app import build_app, launch_kwargs
    from demo.service import get_service

    demo = build_app(checkpoint)
    demo.launch(**launch_kwargs(), server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                quiet=True, ssr_mode=False)
    get_service(checkpoint).wait_ready(ready_timeout)  # warm-up and the background UMAP refit
    print(f"READY http://127.0.0.1:{port}/", flush=True)
    threading.Event().wait()  # until terminated
    return 0


class Server:
    """The app in a child process on a free loopback port; rss() reads its resident memory."""

    def __init__(self, checkpoint: str | Path, start_timeout: float = 600, env: dict | None = None):
        from demo.testing import free_port

        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        env = dict(os.environ, IDREAM_CHECKPOINT=str(checkpoint), GRADIO_ANALYTICS_ENABLED="False", **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "serve", "--checkpoint", str(checkpoint),
             "--port", str(self.port), "--ready-timeout", str(start_timeout)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.url = None
        t0 = time.perf_counter()
        line = self._read_line(start_timeout)
        if not line.startswith("READY"):
            self.stop()
            self.log.seek(0)
            tail = self.log.read()[-3000:].decode(errors="replace")
            raise RuntimeError(f"the app did not start: {line!r}\n{tail}")
        self.url = line.split()[1]
        self.start_s = time.perf_counter() - t0

    def _read_line(self, timeout: float) -> str:
        out = []
        reader = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return out[0].strip() if out else "timed out"

    def rss(self) -> int:
        """The server process's resident memory in bytes (Linux /proc: no psutil needed)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise ProcessLookupError(self.proc.pid)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def errors_logged(self) -> list[str]:
        self.log.seek(0)
        text = self.log.read().decode("utf-8", "replace")
        return [line for line in text.splitlines() if "Traceback" in line or "ERROR" in line]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# -- the load ----------------------------------------------------------------------------------

@dataclass
class Catalog:
    """The served catalog as the driver needs it: labels (the history dropdown's choices)."""

    labels: list[str]
    item_ids: list
    sequences: list[list[int]]  # per user, catalog rows oldest first

    @classmethod
    def for_checkpoint(cls, checkpoint: str | Path) -> "Catalog":
        from idream.serving.checkpoint import read_config
        from idream.data.datasets import load_dataset

        ds = load_dataset(read_config(Path(checkpoint)).data.dataset)
        labels, seen = [], set()
        for m in ds.all_item_meta():  # the rule of demo.service.Service: "Title (year)", [#id] if taken
            label = f"{m['title']} ({m['year']})" if m["year"] else m["title"]
            if label in seen:
                label = f"{label} [#{m['item_id']}]"
            seen.add(label)
            labels.append(label)
        seqs = [[int(i) for i in s] for s in ds.sequences.values()]
        return cls(labels, [m["item_id"] for m in ds.all_item_meta()], seqs)


@dataclass
class Query:
    kind: str  # recommend | sweep
    history: list[int]  # catalog rows
    intention: str
    rho: float
    w: float
    steps: int
    k: int
    seed: int

    def args(self, cat: Catalog) -> list:
        labels = [cat.labels[i] for i in self.history]
        if self.kind == "recommend":
            return [labels, self.intention, self.rho, self.w, self.steps, self.k, self.seed]
        return [labels, self.intention, self.w, self.steps, self.k, self.seed]


def query_pool(cat: Catalog, n: int, seed: int) -> list[Query]:
    rng = random.Random(seed)
    pool = []
    for j in range(n):
        seq = rng.choice([s for s in cat.sequences if len(s) > 2])
        cut = rng.randint(2, len(seq))
        hist = list(dict.fromkeys(seq[max(0, cut - rng.randint(1, 12)):cut]))
        kind = "sweep" if j % 4 == 3 else "recommend"
        intention = rng.choice(INTENTIONS[1:] if kind == "sweep" else INTENTIONS)
        if rng.random() < 0.15:
            hist = []
            intention = intention or INTENTIONS[1]
        pool.append(Query(kind, hist, intention, rng.choice([0.0, 1.0, 2.5]), rng.choice([0.0, 1.0]),
                          rng.choice([1, 1, 1, 5]) if kind == "recommend" else rng.choice([1, 3]),
                          rng.choice([5, 10, 20]), rng.randint(0, 10**6)))
    return pool


@dataclass
class Stats:
    latencies: dict = field(default_factory=lambda: {})
    errors: list = field(default_factory=list)
    checks: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, endpoint: str, seconds: float) -> None:
        with self.lock:
            self.latencies.setdefault(endpoint, []).append(seconds)

    def error(self, msg: str) -> None:
        with self.lock:
            self.errors.append(msg[:500])

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        with self.lock:
            self.checks[name] += 1
        if not ok:
            self.error(f"check failed: {name}: {detail}")


def _rows_key(rows: list[dict]) -> list:
    return [(r["item_id"], round(float(r["score"]), 3)) for r in rows]


def _same_rows(a: list[dict], b: list[dict]) -> bool:
    if [r["item_id"] for r in a] != [r["item_id"] for r in b]:
        return False
    return all(abs(float(x["score"]) - float(y["score"])) <= 2e-3 for x, y in zip(a, b))


class User:
    """One browser session (its own gradio_client Client) with its own new items."""

    def __init__(self, url: str, uid: int, cat: Catalog, stats: Stats):
        from gradio_client import Client

        self.client = Client(url, verbose=False)
        self.uid, self.cat, self.stats = uid, cat, stats
        self.titles: list[str] = []  # this session's new items, in order
        self.added = 0

    def call(self, endpoint: str, *args):
        t = time.perf_counter()
        job = self.client.submit(*args, api_name=f"/{endpoint}")
        try:
            return job.result(timeout=REQUEST_TIMEOUT_S)
        finally:
            self.stats.record(endpoint, time.perf_counter() - t)

    def foreign_tags(self, payload) -> set:
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        return {m for m in NEW_TAG.findall(text) if int(m[0]) != self.uid}

    def ask(self, q: Query, reference: dict | None) -> None:
        s, cat = self.stats, self.cat
        out = self.call(q.kind, *q.args(cat))
        hist_ids = {cat.item_ids[i] for i in q.history}
        lists = [out["items"]] if q.kind == "recommend" else out["items"]
        for rows in lists:
            s.check("no history item in results", not ({r["item_id"] for r in rows} & hist_ids))
            s.check("finite scores", all(isinstance(r["score"], (int, float)) and abs(r["score"]) < 1e30
                                          for r in rows))
            s.check("k rows", len(rows) == q.k, f"{len(rows)} != {q.k}")
        s.check("no other session's new item", not NEW_TAG.search(json.dumps(out)), q.kind)
        if reference is not None:
            ref = [reference["items"]] if q.kind == "recommend" else reference["items"]
            s.check("same answer as the query alone", all(_same_rows(a, b) for a, b in zip(lists, ref))
                    and len(lists) == len(ref), f"{q.kind} {q.args(cat)[1:]}")

    def add_item(self) -> None:
        self.added += 1
        j = self.added
        word = random.Random(self.uid * 100 + j).choice(["Heist", "Voyage", "Ghost"])
        title = f"LT-u{self.uid}-{j} {word}"
        out = self.call("add_item", title, f"A film made up for the load test, number {j}.", ["Comedy"], 2024)
        table, status = out[0], out[1]
        if "Added" in status:
            self.titles.append(title)
        else:
            self.stats.error(f"add_item refused: {status[:200]}")
        got = [row[0] for row in table["data"] if any(row)]
        self.stats.check("session holds exactly its own new items", got == self.titles,
                         f"{got} != {self.titles}")

    def explore(self, q: Query) -> None:
        s, cat = self.stats, self.cat
        table, plot, status = self.call("explore", [cat.labels[i] for i in q.history], q.intention,
                                        q.rho, q.w, q.steps, q.k, q.seed)
        expected = len(cat.labels) + len(self.titles) - len(q.history)
        s.check("catalog size counts only own new items", f"of {expected} items" in status,
                f"{status[:200]} (expected {expected})")
        s.check("no other session's new item", not self.foreign_tags(table) and not self.foreign_tags(plot),
                "explore")
        plot_text = json.dumps(plot)
        s.check("own new items on the map", all(t in plot_text for t in self.titles))
        new_rows = [row[1] for row in table["data"] if str(row[1]).endswith(" [new]")]
        s.check("new rows are own items", all(r.removesuffix(" [new]") in self.titles for r in new_rows))


def plan(uid: int, n: int, pool: list[Query], seed: int) -> list[tuple]:
    """A user's n requests: about 50% recommend, 20% sweep, 20% explore, 10% new item."""
    rng = random.Random(seed * 1000 + uid)
    n_add = max(1, n // 10)
    n_explore = max(1, n // 5)
    n_sweep = max(1, n // 5)
    steps = ([("add_item", None)] * n_add
             + [("explore", rng.choice([q for q in pool if q.kind == "recommend"])) for _ in range(n_explore)]
             + [("sweep", rng.choice([q for q in pool if q.kind == "sweep"])) for _ in range(n_sweep)])
    steps += [("recommend", rng.choice([q for q in pool if q.kind == "recommend"]))
              for _ in range(n - len(steps))]
    rng.shuffle(steps)
    return steps[:n]


def run_users(url: str, cat: Catalog, users: int, requests: int, pool: list[Query], references: dict,
              stats: Stats, seed: int, deadline_s: float, sessions: list | None = None) -> dict:
    """users sessions at once, each making `requests` requests; returns counts and wall time.

    sessions: User objects to go on with (new ones are opened when it is None or empty, and
    appended to it)."""
    if sessions:
        clients = sessions
        for user in clients:
            user.stats = stats
    else:
        clients = [None] * users

        def connect(u):
            clients[u] = User(url, u, cat, stats)

        with ThreadPoolExecutor(users) as ex:
            list(ex.map(connect, range(users)))
        if sessions is not None:
            sessions.extend(clients)
    t_end = time.perf_counter() + deadline_s
    done = Counter()

    def work(u):
        user = clients[u]
        for j, (kind, q) in enumerate(plan(u, requests, pool, seed)):
            if time.perf_counter() > t_end:
                stats.error(f"user {u}: deadline reached before request {j}")
                return
            try:
                if kind == "add_item":
                    user.add_item()
                elif kind == "explore":
                    user.explore(q)
                else:
                    user.ask(q, references.get(id(q)))
                with stats.lock:
                    done[kind] += 1
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                stats.error(f"user {u} {kind}: {type(e).__name__}: {str(e)[:300]}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(users) as ex:
        list(ex.map(work, range(users)))
    return {"requests": dict(done), "answered": sum(done.values()),
            "wall_s": round(time.perf_counter() - t0, 1)}


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))] if xs else float("nan")


def run_load(checkpoint: str | Path, users: int = 20, requests: int = 25, warmup_requests: int = 5,
             seed: int = 0, deadline_s: float = 900, log=print) -> dict:
    """Start the app, warm it up, drive it with `users` × `requests`, and measure."""
    from demo.app import MODEL_CONCURRENCY as model_concurrency  # the server reads the same env

    cat = Catalog.for_checkpoint(checkpoint)
    pool = query_pool(cat, 48, seed)
    log(f"starting the app on {checkpoint} ...")
    server = Server(checkpoint)
    rss = {"after_start": server.rss()}
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.wait(0.5):
            try:
                samples.append(server.rss())
            except Exception:  # noqa: BLE001 - the process may be gone at the end
                return

    try:
        from gradio_client import Client

        ref_client = Client(server.url, verbose=False)
        dropdown = next(c for c in ref_client.config["components"] if c["props"].get("elem_id") == "history")
        choices = [c[0] if isinstance(c, (list, tuple)) else c for c in dropdown["props"]["choices"]]
        if choices != cat.labels:
            raise RuntimeError("the driver's catalog labels differ from the app's history choices")
        log(f"app ready in {server.start_s:.1f} s at {server.url}; answering the {len(pool)} queries alone")
        references = {}
        for q in pool:  # the reference answers: each query asked alone, one at a time
            out = ref_client.submit(*q.args(cat), api_name=f"/{q.kind}").result(timeout=REQUEST_TIMEOUT_S)
            references[id(q)] = out
        log(f"warm-up: {users} users × {warmup_requests} requests")
        warm_stats, sessions = Stats(), []
        warm = run_users(server.url, cat, users, warmup_requests, pool, references, warm_stats, seed + 1,
                         deadline_s, sessions=sessions)
        rss["after_warmup"] = server.rss()
        log(f"load: the same {users} users × {requests} requests")
        stats = Stats()
        threading.Thread(target=sample, daemon=True).start()
        load = run_users(server.url, cat, users, requests, pool, references, stats, seed + 2, deadline_s,
                         sessions=sessions)
        rss["end"] = server.rss()
        stop.set()
        rss["max_during_load"] = max(samples + [rss["end"]])
        # what each further visitor costs: Gradio keeps every session's last inputs and outputs
        # (the map is ~1 MB of JSON) until its session store is full or an hour after it closes
        log(f"{users} new sessions × {warmup_requests} requests")
        fresh_stats = Stats()
        fresh = run_users(server.url, cat, users, warmup_requests, pool, references, fresh_stats, seed + 3,
                          deadline_s)
        rss["after_new_sessions"] = server.rss()
        server_errors = server.errors_logged()
    finally:
        stop.set()
        server.stop()
    lat = {k: {"n": len(v), "p50_ms": round(percentile(v, 50) * 1000, 1),
               "p95_ms": round(percentile(v, 95) * 1000, 1), "max_ms": round(max(v) * 1000, 1)}
           for k, v in sorted(stats.latencies.items())}
    everything = [x for v in stats.latencies.values() for x in v]
    lat["all"] = {"n": len(everything), "p50_ms": round(percentile(everything, 50) * 1000, 1),
                  "p95_ms": round(percentile(everything, 95) * 1000, 1),
                  "max_ms": round(max(everything) * 1000, 1) if everything else None}
    growth = rss["end"] / rss["after_warmup"] - 1
    return {
        "checkpoint": str(checkpoint), "users": users, "requests_per_user": requests,
        "planned": users * requests, "answered": load["answered"], "by_endpoint": load["requests"],
        "wall_s": load["wall_s"], "throughput_rps": round(load["answered"] / max(load["wall_s"], 1e-9), 1),
        "errors": len(stats.errors), "error_samples": stats.errors[:20],
        "warmup": {"users": users, "requests_per_user": warmup_requests, "answered": warm["answered"],
                   "errors": len(warm_stats.errors), "error_samples": warm_stats.errors[:5]},
        "new_sessions": {"users": users, "requests_per_user": warmup_requests, "answered": fresh["answered"],
                         "errors": len(fresh_stats.errors), "error_samples": fresh_stats.errors[:5],
                         "rss_mb_per_session": round((rss["after_new_sessions"] - rss["end"]) / users / 2**20,
                                                     2)},
        "checks": dict(stats.checks), "checks_total": sum(stats.checks.values()),
        "latency": lat, "app_start_s": round(server.start_s, 1), "model_concurrency": model_concurrency,
        "rss_mb": {k: round(v / 2**20, 1) for k, v in rss.items()},
        "rss_growth_after_warmup": round(growth, 4), "rss_growth_limit": MAX_RSS_GROWTH,
        "server_log_errors": server_errors[:10],
        "request_timeout_s": REQUEST_TIMEOUT_S, "deadline_s": deadline_s,
        "queries_asked_alone": len(pool),
    }


# -- the generated inputs and injected faults ---------------------------------------------------

def run_properties(scale: float, checkpoint: str | None, log=print) -> dict:
    """The two property-test files at `scale` × their default number of cases; counts collected."""
    with tempfile.TemporaryDirectory() as tmp:
        counts, junit = Path(tmp) / "counts.jsonl", Path(tmp) / "junit.xml"
        env = dict(os.environ, IDREAM_HYPOTHESIS_SCALE=str(scale), IDREAM_RELIABILITY_LOG=str(counts))
        if checkpoint:
            env["IDREAM_TEST_CHECKPOINT"] = str(checkpoint)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_hostile_inputs.py",
               "tests/test_corrupt_files.py", f"--junitxml={junit}"]
        log("running " + " ".join(cmd[2:]) + f" (scale {scale})")
        t = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        cases, faults = Counter(), Counter()
        for line in counts.read_text().splitlines() if counts.exists() else []:
            rec = json.loads(line)
            cases.update(rec.get("cases", {}))
            faults.update(rec.get("faults", {}))
        suite = ET.parse(junit).getroot().find("testsuite") if junit.exists() else None
        keys = ("tests", "failures", "errors", "skipped")
        tests = {k: int(suite.get(k, 0)) for k in keys} if suite is not None else {}
    return {"command": "pytest " + " ".join(cmd[6:-1]), "scale": scale, "exit_code": p.returncode,
            "tests": tests, "wall_s": round(wall, 1),
            "cases": dict(cases), "cases_total": sum(cases.values()),
            "faults": dict(faults), "faults_total": sum(faults.values()),
            "failures": [ln for ln in p.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))][:20]}


# -- the report ---------------------------------------------------------------------------------

def markdown(r: dict) -> str:
    """The README's Reliability section (a block under its "## Reliability" heading)."""
    v = r["versions"]
    lines = [f"Measured by `{r['command'].strip()}` on {r['date']}; machine: {r['machine']}; Python "
             f"{v['python']}, torch {v['torch']}, gradio {v['gradio']}; load average "
             f"{r.get('load_average_at_start', ['?'])[0]} at the start (other jobs share the cores when it "
             "is above 0.5). The load test alone: "
             "`python -m pytest -m slow tests/test_load.py` (a tiny checkpoint, the same harness).", ""]
    p = r.get("properties")
    if p:
        t = p["tests"]
        lines += ["### Inputs: generated cases", "",
                  f"Every case ended in a result with finite scores that leaves the history out, or in a "
                  f"clear error (ValueError with a message; exit code 2 and one `error:` line; a readable "
                  f"notice or gradio error message): {t.get('tests', '?')} tests, {t.get('failures', '?')} "
                  f"failures, {t.get('errors', '?')} errors ({p['wall_s']} s, hypothesis scale "
                  f"{p['scale']}).", "",
                  "| target | cases |", "|---|---|"]
        lines += [f"| {k} | {v:,} |" for k, v in sorted(p["cases"].items())]
        lines += [f"| **total** | **{p['cases_total']:,}** |", "",
                  "### Files: faults injected", "",
                  "Each broken checkpoint file was refused with a message that names the file and what to "
                  "do; each broken cache was rebuilt; no write left a half file; nothing was unpickled.", "",
                  "| fault | injected |", "|---|---|"]
        lines += [f"| {k} | {v:,} |" for k, v in sorted(p["faults"].items())]
        lines += [f"| **total** | **{p['faults_total']:,}** |", ""]
        if p["failures"]:
            lines += ["Failures:", "", *[f"- `{f}`" for f in p["failures"]], ""]
    ld = r.get("load")
    if ld:
        lat, rss = ld["latency"], ld["rss_mb"]
        lines += ["### Load", "",
                  f"The app (`{ld['checkpoint']}`) in its own process on 127.0.0.1, {ld['users']} concurrent "
                  f"gradio_client users (one session each) × {ld['requests_per_user']} requests = "
                  f"{ld['planned']} requests after a warm-up round of {ld['warmup']['users']} × "
                  f"{ld['warmup']['requests_per_user']}: answered {ld['answered']}, "
                  f"**errors {ld['errors']}**, "
                  f"in {ld['wall_s']} s ({ld['throughput_rps']} requests/s).", "",
                  f"Latency is per request as the client sees it, the wait in the app's queue included "
                  f"({ld.get('model_concurrency', 2)} model calls at a time, as the app is configured; "
                  f"{ld['users']} users asking at once).", "",
                  "| endpoint | requests | p50 | p95 | max |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['n']} | {v['p50_ms']:.0f} ms | {v['p95_ms']:.0f} ms | {v['max_ms']:.0f} ms |"
                  for k, v in lat.items()]
        ns = ld["new_sessions"]
        lines += ["", f"Server RSS: {rss['after_start']} MB after start, {rss['after_warmup']} MB after "
                  "warm-up, "
                  f"{rss['end']} MB at the end (max {rss['max_during_load']} MB during the load): "
                  f"{ld['rss_growth_after_warmup'] * 100:+.1f}% after warm-up (limit "
                  f"+{ld['rss_growth_limit'] * 100:.0f}%). Then {ns['users']} new sessions × "
                  f"{ns['requests_per_user']} requests ({ns['errors']} errors): "
                  f"{rss['after_new_sessions']} MB, "
                  f"about {ns['rss_mb_per_session']} MB per new session (Gradio keeps each session's last "
                  "inputs and outputs, the map included, until its session store is full or an hour after "
                  "the session closes).", "",
                  f"Checks on the answers ({ld['checks_total']:,} in all, each against the request's own "
                  f"inputs; /recommend and /sweep compared with the same {ld['queries_asked_alone']} queries "
                  "asked alone):", "", "| check | times |", "|---|---|"]
        lines += [f"| {k} | {v:,} |" for k, v in sorted(ld["checks"].items())]
        lines += [""]
        if ld["error_samples"]:
            lines += ["Errors:", "", *[f"- {e}" for e in ld["error_samples"]], ""]
    lost = r["lost"]
    nothing = "Nothing: no failed case, no unhandled fault, no error under load."
    lines += ["### Lost", "", lost or nothing, ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["render"]:  # results/reliability.md again from results/reliability.json
        folder = ROOT / (argv[1] if len(argv) > 1 else "results")
        report = json.loads((folder / "reliability.json").read_text())
        (folder / "reliability.md").write_text(markdown(report))
        return 0
    if argv[:1] == ["serve"]:
        sp = argparse.ArgumentParser(prog="reliability.py serve")
        sp.add_argument("--checkpoint", required=True)
        sp.add_argument("--port", type=int, required=True)
        sp.add_argument("--ready-timeout", type=float, default=600)
        a = sp.parse_args(argv[1:])
        return serve_main(a.checkpoint, a.port, a.ready_timeout)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_ckpt = "checkpoints/ml-100k" if (ROOT / "checkpoints/ml-100k/config.json").exists() else None
    p.add_argument("--checkpoint", default=default_ckpt,
                   help="served in the load test (default: checkpoints/ml-100k, else a tiny one is trained)")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--requests", type=int, default=25)
    p.add_argument("--warmup-requests", type=int, default=5)
    p.add_argument("--scale", type=float, default=3.0, help="× the tests' default number of generated cases")
    p.add_argument("--skip-properties", action="store_true")
    p.add_argument("--skip-load", action="store_true")
    p.add_argument("--out", default="results")
    a = p.parse_args(argv)

    import gradio
    import torch

    from benchmarks.results import machine

    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    checkpoint = a.checkpoint
    if checkpoint is None:
        from demo.testing import tiny_checkpoint

        checkpoint = str(tiny_checkpoint(Path(tempfile.gettempdir()) / "idream-reliability-tiny"))
        log(f"no checkpoints/ml-100k: trained a tiny checkpoint in {checkpoint}")
    report = {"command": " ".join(["python scripts/reliability.py", *argv]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": machine(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
              "versions": {"python": platform.python_version(), "torch": torch.__version__,
                           "gradio": gradio.__version__}}
    if not a.skip_properties:
        report["properties"] = run_properties(a.scale, checkpoint, log)
    if not a.skip_load:
        report["load"] = run_load(checkpoint, a.users, a.requests, a.warmup_requests, log=log)
    lost = []
    pr, ld = report.get("properties"), report.get("load")
    if pr and (pr["exit_code"] or pr["tests"].get("failures") or pr["tests"].get("errors")):
        lost.append(f"property tests: exit code {pr['exit_code']}, {pr['tests']}")
    if ld and (ld["errors"] or ld["warmup"]["errors"] or ld["new_sessions"]["errors"]
               or ld["answered"] < ld["planned"]):
        lost.append(f"load: {ld['errors']} errors ({ld['warmup']['errors']} in the warm-up, "
                    f"{ld['new_sessions']['errors']} in the new sessions), "
                    f"{ld['planned'] - ld['answered']} requests unanswered")
    if ld and ld["rss_growth_after_warmup"] > MAX_RSS_GROWTH:
        lost.append(f"memory grew {ld['rss_growth_after_warmup'] * 100:.1f}% after warm-up")
    report["lost"] = "; ".join(lost)
    out = ROOT / a.out if not Path(a.out).is_absolute() else Path(a.out)
    from idream.serving.checkpoint import atomic_write

    atomic_write(out / "reliability.json",
                 lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n"))
    atomic_write(out / "reliability.md", lambda tmp: Path(tmp).write_text(markdown(report)))
    log(markdown(report))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
