"""Concurrent sessions, two forms.

Short (default suite, seconds): the app served in this process on 127.0.0.1; four gradio_client
sessions, two of which add a new item, send a handful of /recommend, /sweep and /explore
requests with different histories, intentions and seeds all at once. Every answer must equal
the answer the same request got alone, and no session may see another's new item.

Long (slow, minutes on two cores: `python -m pytest -m slow tests/test_load.py`): the app in its
own process, 20 concurrent gradio_client users (one session each) × 25 mixed requests
(/recommend, /sweep, /add_item, /explore), bounded in count and time. Zero errors; every answer
checked against its own inputs (the same answer as the query asked alone, no history item, no
other session's new item, own new items present); the server's RSS may grow at most 10% after
the users' warm-up round. What each further session costs is measured and reported, not bounded
(Gradio keeps every session's last outputs). The harness is scripts/reliability.py, which also
writes the figures for the README.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("gradio")

ROOT = Path(__file__).resolve().parents[1]
USERS, REQUESTS = 20, 25
ANSWER_TIMEOUT = 120  # seconds for one answer: none by then is a hung worker


@pytest.fixture(scope="module")
def reliability():
    from conftest import load_script
    return load_script(ROOT / "scripts" / "reliability.py", register=True)


# -- the short form ------------------------------------------------------------------------------

SESSIONS = 4
NEW_TITLE = "Crosstalk Probe s{} Heist"  # the new item of session s (sessions 0 and 1 add one)
PROBE = re.compile(r"Crosstalk Probe s(\d)")


def short_requests(labels: list[str]) -> list[tuple]:
    """(session, endpoint, args): distinct histories, intentions, guidance and seeds."""
    L = labels
    return [
        (0, "recommend", [[L[0], L[1]], "", 1.0, 0.0, 1, 10, 0]),
        (1, "recommend", [[L[2]], "a dark, tense crime thriller", 0.75, 0.0, 1, 10, 1]),
        (2, "recommend", [[], "an animated film the whole family can watch", 1.0, 1.0, 4, 20, 2]),
        (3, "recommend", [[L[6], L[7], L[0]], "mind-bending science fiction", 1.0, 0.0, 1, 5, 3]),
        (0, "sweep", [[L[1]], "a romantic comedy for a date night", 0.0, 1, 5, 4]),
        (1, "sweep", [[L[7], L[2]], "a classic western with gunfights", 1.0, 3, 5, 5]),
        (0, "explore", [[L[3], L[4]], "something light and funny from the 90s", 1.0, 0.0, 1, 8, 6]),
        (1, "explore", [[L[5]], "", 1.0, 0.0, 2, 8, 7]),
        (2, "explore", [[L[8], L[9], L[10]], "a dark, tense crime thriller", 0.6, 0.0, 1, 8, 8]),
        (3, "explore", [[], "a romantic comedy for a date night", 1.0, 0.0, 1, 8, 9]),
    ]


def comparable(endpoint: str, out):
    """What must not change with load: ranked ids and scores; for /explore the table and the
    status without its timing (the map's coordinates may move once the UMAP refit lands)."""
    if endpoint == "recommend":
        return [(r["item_id"], round(r["score"], 4)) for r in out["items"]], out["notices"]
    if endpoint == "sweep":
        return [[(r["item_id"], round(r["score"], 4)) for r in rows] for rows in out["items"]], out["notices"]
    table, _plot, status = out
    return table["data"], re.sub(r" in \d+ ms", "", status)


def sessions_seen(payload) -> set[int]:
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return {int(s) for s in PROBE.findall(text)}


def test_concurrent_sessions_get_their_own_answers(checkpoint):
    from gradio_client import Client

    from demo.service import get_service
    from demo.testing import serve

    url = serve(checkpoint)[1]
    service = get_service(checkpoint)
    clients = [Client(url, verbose=False) for _ in range(SESSIONS)]
    for s in (0, 1):
        table, status = clients[s].predict(NEW_TITLE.format(s), "A made-up film to catch cross-talk.",
                                           ["Comedy"], 2024, api_name="/add_item")[:2]
        assert "Added" in status and [row[0] for row in table["data"] if any(row)] == [NEW_TITLE.format(s)]
    requests = short_requests(service.labels)

    def ask(req):
        s, endpoint, args = req
        return clients[s].submit(*args, api_name=f"/{endpoint}").result(timeout=ANSWER_TIMEOUT)

    alone = [ask(req) for req in requests]  # one at a time
    keys = [comparable(e, out) for (_, e, _), out in zip(requests, alone)]
    # every request has its own answer, so an answer delivered to the wrong request would show
    assert len({json.dumps(k, sort_keys=True, default=str) for k in keys}) == len(requests)
    with ThreadPoolExecutor(2 * len(requests)) as ex:  # each request twice, all at once
        together = list(ex.map(ask, requests * 2))
    for n, ((s, endpoint, args), out) in enumerate(zip(requests * 2, together)):
        assert comparable(endpoint, out) == keys[n % len(requests)], (s, endpoint, args[1:])
        own = {s} if s in (0, 1) and endpoint == "explore" else set()
        assert sessions_seen(out) <= own, (s, endpoint, sessions_seen(out))
        if endpoint == "explore":
            _, plot, status = out
            n_new = 1 if s in (0, 1) else 0
            assert f"of {service.n_items + n_new - len(args[0])} items" in status, status
            assert sessions_seen(plot) == own  # a session's new item is on its own map only
        else:
            hist = {service.metas[service.labels.index(label)]["item_id"] for label in args[0]}
            lists = [out["items"]] if endpoint == "recommend" else out["items"]
            assert all(len(rows) == args[-2] and not {r["item_id"] for r in rows} & hist for rows in lists)


# -- the long form -------------------------------------------------------------------------------

@pytest.mark.slow
def test_concurrent_users_no_errors_no_cross_talk_no_leak(reliability, checkpoint):
    pytest.importorskip("psutil")
    r = reliability.run_load(checkpoint, users=USERS, requests=REQUESTS, warmup_requests=5, deadline_s=900,
                             log=lambda s: None)
    print(json.dumps({k: r[k] for k in ("answered", "errors", "wall_s", "latency", "rss_mb",
                                        "rss_growth_after_warmup", "checks")}, indent=1))
    assert r["errors"] == 0, r["error_samples"]
    assert r["warmup"]["errors"] == 0, r["warmup"]["error_samples"]
    assert r["new_sessions"]["errors"] == 0, r["new_sessions"]["error_samples"]
    assert r["answered"] == r["planned"] == USERS * REQUESTS
    # each user's mix (reliability.plan): a tenth new items, a fifth /explore, a fifth /sweep
    n_add, n_explore, n_sweep = max(1, REQUESTS // 10), max(1, REQUESTS // 5), max(1, REQUESTS // 5)
    by = r["by_endpoint"]
    assert by == {"add_item": USERS * n_add, "explore": USERS * n_explore, "sweep": USERS * n_sweep,
                  "recommend": USERS * (REQUESTS - n_add - n_explore - n_sweep)}, by
    # every answer was checked (a check that failed is an error, counted above)
    checks = r["checks"]
    asked = by["recommend"] + by["sweep"]
    assert checks["same answer as the query alone"] == asked, checks
    assert checks["no history item in results"] == by["recommend"] + 11 * by["sweep"], checks
    assert checks["no other session's new item"] == asked + by["explore"], checks
    assert checks["session holds exactly its own new items"] == by["add_item"], checks
    for name in ("catalog size counts only own new items", "own new items on the map"):
        assert checks[name] == by["explore"], (name, checks)
    assert r["latency"]["all"]["n"] == r["answered"]
    assert r["latency"]["all"]["max_ms"] < reliability.REQUEST_TIMEOUT_S * 1000
    assert r["rss_growth_after_warmup"] <= reliability.MAX_RSS_GROWTH, r["rss_mb"]
