"""A crowd of gradio_client users for the app: the request mix, the users and the answer checks
shared by `scripts/bench_app.py load` (a burst), `scripts/soak.py` (hours) and their tests.

Each user is one session (its own Client) sending one request at a time: /recommend with
hostile intentions (none, 5,000 characters, emoji, HTML, the page's examples, words of its own)
and one /sweep in every five. An answer is right when it holds k rows, none from the history,
with finite scores (each list of a sweep too). A refusal ("busy, try again", or Gradio's "Queue
is full") is counted apart from an error; a wrong answer is an error.
"""

from __future__ import annotations

import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

EXAMPLES = ["something light and funny from the 90s", "a dark, tense crime thriller",
            "a romantic comedy for a date night", "an animated film the whole family can watch",
            "mind-bending science fiction", "a classic western with gunfights"]
WORDS = ["quiet", "loud", "space", "love", "war", "river", "city", "night", "dog", "robot", "jazz",
         "island", "winter", "heist", "ghost", "court", "school", "train", "ocean", "king"]
EMOJI = "🎬🍿😂👻🚀❤️🤠🐉"
HTML = '<script>alert("x")</script><b>a film</b> with <img src=x onerror=alert(1)> &amp; more'
K = 10
TIMEOUT_S = 120.0  # one answer; none by then is an error (a hung worker)


def intention(rng: random.Random) -> str:
    """One hostile or ordinary intention: 20% none, 10% 5,000 characters (one of ten pages, pasted
    again and again), 10% emoji (one of five), 10% HTML, 30% the page's six examples, 20% a few
    words no one typed before (each one new to the server)."""
    x = rng.random()
    if x < 0.2:
        return ""
    if x < 0.3:
        page = random.Random(rng.randrange(10))
        return " ".join(page.choice(WORDS) for _ in range(900))[:5000]
    if x < 0.4:
        return EMOJI * rng.choice([1, 2, 5, 10, 30])
    if x < 0.5:
        return HTML
    if x < 0.8:
        return rng.choice(EXAMPLES)
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8))) + f" {rng.randint(0, 10**9)}"


@dataclass
class Call:
    kind: str  # recommend | sweep
    history: list[str]  # catalog labels, oldest first
    args: list


def calls(labels: list[str], sequences: list[list[int]], uid: int, n: int, seed: int = 0):
    """A user's requests, drawn fresh (endless when n is None): every fifth one a /sweep."""
    rng = random.Random(seed * 1_000_003 + uid)
    j = 0
    while n is None or j < n:
        seq = rng.choice(sequences)
        cut = rng.randint(1, len(seq))
        hist = [labels[i] for i in dict.fromkeys(seq[max(0, cut - rng.randint(1, 10)):cut])]
        text = intention(rng)
        seed_ = rng.randint(0, 10**6)
        if j % 5 == 4:
            yield Call("sweep", hist, [hist, text or EXAMPLES[0], None, 1, K, seed_])
        else:
            yield Call("recommend", hist, [hist, text, None, None, 1, K, seed_])
        j += 1


def right(call: Call, out, item_of_label: dict) -> str:
    """'' when the answer is right, else what is wrong with it."""
    hist = {item_of_label[h] for h in call.history}
    lists = [out["items"]] if call.kind == "recommend" else out["items"]
    if not lists:
        return "no lists"
    for rows in lists:
        if len(rows) != K:
            return f"{len(rows)} rows, not {K}"
        if any(r["item_id"] in hist for r in rows):
            return "a history item in the results"
        if not all(isinstance(r["score"], (int, float)) and math.isfinite(r["score"]) for r in rows):
            return "a score that is not finite"
    return ""


@dataclass
class Tally:
    """Every request's outcome: (start time, seconds, endpoint, outcome), outcome one of
    ok / refused / error / wrong; the first messages of each kind kept."""

    records: list = field(default_factory=list)
    messages: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, t0: float, seconds: float, kind: str, outcome: str, message: str = "") -> None:
        with self.lock:
            self.records.append((t0, seconds, kind, outcome))
            if message and len(self.messages.setdefault(outcome, [])) < 5:
                self.messages[outcome].append(message[:300])

    def count(self, outcome: str, since: float = -math.inf) -> int:
        return sum(1 for r in self.records if r[3] == outcome and r[0] >= since)


def refusal(e: Exception) -> bool:
    msg = str(e)
    return "busy" in msg.lower() or "queue is full" in msg.lower()


class Crowd:
    """`users` sessions on one app; `run` sends each user's requests one after another."""

    def __init__(self, url: str, labels: list[str], item_ids: list, sequences: list[list[int]], users: int):
        from gradio_client import Client

        self.labels, self.sequences = labels, [s for s in sequences if s]
        self.item_of_label = dict(zip(labels, item_ids))
        # ssl_verify=False on this plain-http loopback address only spares gradio_client loading the
        # CA bundle into two new httpx clients per call (~45 ms of CPU each call, 10× the rest of
        # the client's work): on the server's own cores that would measure the client, not the app
        with ThreadPoolExecutor(min(users, 16)) as ex:  # connecting reads the page's config
            self.clients = list(ex.map(lambda _: Client(url, verbose=False, ssl_verify=False), range(users)))

    def one(self, client, call: Call, tally: Tally) -> None:
        t0 = time.perf_counter()
        try:
            out = client.submit(*call.args, api_name=f"/{call.kind}").result(timeout=TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            outcome = "refused" if refusal(e) else "error"
            tally.add(t0, time.perf_counter() - t0, call.kind, outcome, f"{type(e).__name__}: {e}")
            return
        seconds = time.perf_counter() - t0
        wrong = right(call, out, self.item_of_label)
        tally.add(t0, seconds, call.kind, "wrong" if wrong else "ok", wrong)

    def run(self, calls_per_user: int | None, tally: Tally, seed: int = 0, until: float | None = None) -> float:
        """Every user's calls (or calls until `until`, a perf_counter time); the wall seconds."""
        def user(u):
            for call in calls(self.labels, self.sequences, u, calls_per_user, seed):
                if until is not None and time.perf_counter() >= until:
                    return
                self.one(self.clients[u], call, tally)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(self.clients)) as ex:
            list(ex.map(user, range(len(self.clients))))
        return time.perf_counter() - t0


def percentile(xs: list[float], p: float) -> float:
    """The nearest-rank p-th percentile (NaN for none)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))] if xs else math.nan
