"""The crowd path of the API: batched answers, each request on its own, a bounded backlog.

Fast: idream.serving.batch answers a mixed batch as each request alone would be answered (or refused);
demo.batcher answers a held-up batch of valid and invalid requests in one go without one bad
request failing the others, and refuses past its bound with "try again in N s"; a short crowd
(scripts/crowd.py: hostile intentions, sweeps) over HTTP gets 0 refusals, 0 errors and right
answers while another session sends requests that must be refused. Slow: a 2-minute soak
(scripts/soak.py) against the app in its own process. Speed is measured by
`python scripts/bench_app.py load` and scripts/soak.py, not asserted here.
"""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402

from demo.batcher import Batcher, Busy  # noqa: E402
from demo.service import EMPTY_HINT, InputProblem, get_service  # noqa: E402
from demo.testing import serve  # noqa: E402
from idream.serving.batch import Ask, IntentionCache, answer_many, by_length  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LONG = ("a heist film in a rainy city " * 200)[:5000]
HTML = '<script>alert("x")</script><b>a film</b>'


@pytest.fixture(scope="module")
def served(checkpoint):
    return serve(checkpoint)


@pytest.fixture(scope="module")
def service(served, checkpoint):
    return get_service(checkpoint)


@pytest.fixture(scope="module")
def scripts():
    from conftest import load_script

    return {name: load_script(ROOT / "scripts" / f"{name}.py", register=True) for name in ("crowd", "soak")}


def _ids(service, n, start=0):
    return [m["item_id"] for m in service.metas[start:start + n]]


def _same(rows, ref):
    return ([r["item_id"] for r in rows] == [r["item_id"] for r in ref]
            and all(abs(a["score"] - b["score"]) <= 1e-3 for a, b in zip(rows, ref)))


def test_a_mixed_batch_answers_each_request_as_alone(service):
    rec = service.rec
    ids = _ids(service, 12)
    asks = [Ask(ids[:3], "a dark, tense crime thriller", 0.5, 1.0, 1, 10, 3),
            Ask([], "", seed=1),  # nothing to answer
            Ask(ids[3:7], None, seed=2, k=5),
            Ask(["No Such Film 1234"], "x"),  # unknown item
            Ask(ids[7:9], LONG, sweep=True, seed=4),
            Ask(ids[:2], "x", rho=1e9),  # outside the model's range
            Ask(ids[9:12], "🎬🍿" * 30, 0.3, steps=4, seed=5),
            Ask(ids[:4], HTML, None, steps=4, seed=6, k=20)]
    out = answer_many(rec, asks, IntentionCache(rec))
    assert len(out) == len(asks)
    for a, o in zip(asks, out):
        try:
            ref = (rec.sweep_rho(a.history, a.intention, w=a.w, steps=a.steps, k=a.k, seed=a.seed) if a.sweep
                   else rec.recommend(a.history, a.intention, a.rho, a.w, a.steps, a.k, a.seed))
        except ValueError as e:  # refused alone: refused in the batch, with the same message
            assert isinstance(o, type(e)) and str(o) == str(e), (a, o, e)
            continue
        assert not isinstance(o, Exception), (a, o)
        if a.sweep:
            assert o["rho"] == ref["rho"] and all(_same(x, y) for x, y in zip(o["items"], ref["items"]))
            assert o["intention_similarity"] == pytest.approx(ref["intention_similarity"], abs=1e-3)
        else:
            assert _same(o.items, ref.items), a
    assert sum(isinstance(o, Exception) for o in out) == 3


def test_intentions_are_embedded_once_and_by_length(service):
    cache = IntentionCache(service.rec, size=3)
    texts = ["something funny", LONG[:2000], "something funny", "a quiet drama"]
    first = cache.raw(texts)
    assert (cache.hits, cache.misses) == (1, 3)
    again = cache.raw(["a quiet drama", "something funny"])
    assert (cache.hits, cache.misses) == (3, 3)
    assert again[1] == pytest.approx(first[0], abs=1e-5)
    assert again[0] == pytest.approx(service.rec.text.raw(["a quiet drama"])[0], abs=1e-4)
    cache.raw(["one", "two", "three"])  # the least recently used go
    assert len(cache._vectors) == 3
    groups = by_length(["ab", "a" * 2000, "abc", "a" * 1500, "b" * 40])
    assert sorted(len(t) for g in groups for t in g) == [2, 3, 40, 1500, 2000]
    assert all(max(map(len, g)) <= 2 * min(map(len, g)) + 32 for g in groups) and len(groups) == 3


def _held(batcher, submit):
    """Submit while the worker cannot take anything: all of them land in one batch."""
    with batcher._cv:  # a re-entrant lock: submit takes it again in this thread
        return submit()


def test_one_bad_request_never_fails_its_batch_mates(service):
    s = service
    labels = s.labels
    b = Batcher(s, max_batch=64, max_waiting=64)
    try:
        good = [("recommend", (labels[:3], "a dark, tense crime thriller", 0.5, 0.0, 1, 10, 1)),
                ("recommend", (labels[5:9], "", None, None, 1, 7, 2)),
                ("sweep", (labels[2:4], LONG, None, 1, 5, 3)),
                ("recommend", ([], HTML, 0.5, None, 1, 10, 4))]
        bad = [("recommend", ([], "   ", None, None, 1, 10, 0)),  # nothing to answer
               ("recommend", (["No Such Film 1234"], "", None, None, 1, 10, 0)),
               ("sweep", ([], "", None, 1, 5, 0)),
               ("recommend", (labels[:2], "x", "not a number", None, 1, 10, 0))]
        jobs = good[:2] + bad[:2] + good[2:] + bad[2:]
        before = b.batches
        futures = _held(b, lambda: [b.submit(kind, *args) for kind, args in jobs])
        outcomes = [f.exception(60) or f.result() for f in futures]
        assert b.batches == before + 1  # one batch for all of them
        for (kind, args), out in zip(jobs, outcomes):
            if (kind, args) in bad:
                assert isinstance(out, InputProblem) and str(out), (args, out)
                continue
            q = s.check(*args) if kind == "recommend" else s.check(args[0], args[1], None, *args[2:])
            if kind == "recommend":
                assert _same(out["items"], s.recommend(q).items) and out["notices"] == q.notices
            else:
                ref = s.sweep(q)
                assert all(_same(x, y) for x, y in zip(out["items"], ref["items"]))
        assert EMPTY_HINT.format(kinds=s.kinds) in str(outcomes[2])
        assert "No Such Film 1234" in str(outcomes[3])
    finally:
        b.stop()


def test_past_the_bound_a_request_is_told_when_to_try_again(service):
    b = Batcher(service, max_batch=64, max_waiting=3)
    try:
        args = (service.labels[:3], "", None, None, 1, 5, 0)

        def flood():
            futures = [b.submit("recommend", *args) for _ in range(3)]
            with pytest.raises(Busy) as busy:
                b.submit("recommend", *args)
            return futures, str(busy.value)

        futures, msg = _held(b, flood)
        assert re.search(r"busy.*3 requests are waiting.*try again in \d+ s", msg), msg
        assert all(len(f.result(60)["items"]) == 5 for f in futures)
        assert len(b.submit("recommend", *args).result(60)["items"]) == 5  # room again
    finally:
        b.stop()


def test_a_short_crowd_gets_right_answers_beside_bad_requests(served, service, scripts):
    crowd = scripts["crowd"]
    seqs = [[int(i) for i in seq] for seq in service.rec.dataset.sequences.values()]
    users = crowd.Crowd(served[1], service.labels, [m["item_id"] for m in service.metas], seqs, users=4)
    tally = crowd.Tally()
    refusals = []

    def bad_user():  # another session sending what cannot be answered, at the same time
        c = Client(served[1], verbose=False, ssl_verify=False)
        for _ in range(4):
            try:
                c.predict([], "  ", None, None, 1, 10, 0, api_name="/recommend")
                refusals.append("answered")
            except Exception as e:  # noqa: BLE001 - the message is what is checked
                refusals.append(str(e))

    t = threading.Thread(target=bad_user)
    t.start()
    users.run(5, tally, seed=3)
    t.join(120)
    kinds = [r[2] for r in tally.records]
    assert len(kinds) == 20 and kinds.count("sweep") == 4
    assert tally.count("ok") == 20, tally.messages
    assert len(refusals) == 4 and all(EMPTY_HINT.format(kinds=service.kinds) in m for m in refusals), refusals


def test_the_soak_plot_is_an_svg_with_both_panels(scripts):
    soak = scripts["soak"]
    r = {"rss_mb": [[0, 900.0], [30, 910.5], [60, 911.0]], "window_s": 30, "wall_s": 60,
         "windows": [{"start_s": 0, "p50_ms": 200.0, "p95_ms": 500.0},
                     {"start_s": 30, "p50_ms": None, "p95_ms": None}]}
    root = ET.fromstring(soak.svg(r))
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 3  # RSS, p95, p50
    assert len(lines[0].get("points").split()) == 3 and len(lines[1].get("points").split()) == 1


@pytest.mark.slow
def test_two_minute_soak(checkpoint, scripts, tmp_path):
    """20 users for 2 minutes against the app in its own process: no error, refusal or wrong
    answer, RSS flat after the first sixth; the files are written (p95 is reported, not asserted)."""
    soak = scripts["soak"]
    rc = soak.main(["--checkpoint", str(checkpoint), "--minutes", "2", "--users", "20", "--window", "10",
                    "--out", str(tmp_path)])
    import json

    r = json.loads((tmp_path / "soak.json").read_text())
    assert r["error"] == r["refused"] == r["wrong"] == 0, r["messages"]
    assert r["answered"] > 100 and r["rss_growth_last_five_sixths"] <= soak.MAX_RSS_GROWTH, r["rss_mb"]
    assert len(r["windows"]) >= 12 and (tmp_path / "soak.svg").exists() and (tmp_path / "soak.md").exists()
    assert rc in (0, 1)  # 1 only where the p95 check failed, which timing noise on shared cores can do
    assert rc == 0 or not r["checks"][next(k for k in r["checks"] if k.startswith("p95"))]
