"""The load test: the app in its own process on 127.0.0.1, 20 concurrent gradio_client users
(one session each) × 25 mixed requests (/recommend, /sweep, /add_item, /explore), bounded in
count and time. Zero errors; every answer checked against its own inputs (the same answer as the
query asked alone, no history item, no other session's new item, own new items present); the
server's RSS may grow at most 10% after the users' warm-up round. What each further session
costs is measured and reported, not bounded (Gradio keeps every session's last outputs). The
harness is scripts/reliability.py, which also writes the figures for the README.

Slow (minutes on two cores): `python -m pytest -m slow tests/test_load.py`.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("gradio")
pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parents[1]
USERS, REQUESTS = 20, 25


@pytest.fixture(scope="module")
def reliability():
    spec = importlib.util.spec_from_file_location("reliability", ROOT / "scripts" / "reliability.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["reliability"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_concurrent_users_no_errors_no_cross_talk_no_leak(reliability, checkpoint):
    r = reliability.run_load(checkpoint, users=USERS, requests=REQUESTS, warmup_requests=5, deadline_s=900,
                             log=lambda s: None)
    print(json.dumps({k: r[k] for k in ("answered", "errors", "wall_s", "latency", "rss_mb",
                                        "rss_growth_after_warmup", "checks")}, indent=1))
    assert r["errors"] == 0, r["error_samples"]
    assert r["warmup"]["errors"] == 0, r["warmup"]["error_samples"]
    assert r["new_sessions"]["errors"] == 0, r["new_sessions"]["error_samples"]
    assert r["answered"] == r["planned"] == USERS * REQUESTS
    assert set(r["by_endpoint"]) == {"recommend", "sweep", "add_item", "explore"}
    checks = r["checks"]
    for name in ("same answer as the query alone", "no history item in results",
                 "no other session's new item", "session holds exactly its own new items",
                 "catalog size counts only own new items", "own new items on the map"):
        assert checks.get(name, 0) > 0, name
    assert r["latency"]["all"]["max_ms"] < reliability.REQUEST_TIMEOUT_S * 1000
    assert r["rss_growth_after_warmup"] <= reliability.MAX_RSS_GROWTH, r["rss_mb"]
