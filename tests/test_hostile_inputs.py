"""Hostile inputs, generated: `Recommender.recommend` / `sweep_rho`, the command line and the
app's /recommend (and /sweep, /explore, /add_item) API. Every call ends in a result with finite
scores that leaves the history out, or in a clear error: a ValueError with a message in Python,
exit code 2 with one `error:` line on the command line, a readable notice or gradio error
message over HTTP. Never a traceback, a NaN score or a hung worker.

In Python the tests know which inputs are valid (an independent reading of the documented
rules: catalog ids and titles, numbers within their ranges): a valid call must answer, an
invalid one must raise a one-line ValueError naming what is wrong; generated cases mix valid
calls, valid calls with one hostile argument, and fully hostile ones, and each property checks
that both answers and refusals made up a real share of its run.

The library and CLI cases use a tiny hash:32 checkpoint on the synthetic catalog; the API cases
the demo's tiny ml-100k checkpoint (IDREAM_TEST_CHECKPOINT overrides it). IDREAM_HYPOTHESIS_SCALE
multiplies the number of generated cases per test; IDREAM_RELIABILITY_LOG (scripts/reliability.py)
collects how many ran per target.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from idream.serving.recommender import Recommender, UnknownItemError
from idream.core.steer import STEER_RANGE
from idream.serving.request import MAX_GUIDANCE, clean_text
from tests.conftest import report_to_reliability_log

ROOT = Path(__file__).resolve().parents[1]
CASES: Counter = Counter()  # target -> generated cases run (for the reliability report)
N_SYNTH = 40  # the synthetic catalog (tests/conftest.py): ids 100..139, "Synthetic Film i"
SYNTH_IDS = list(range(100, 100 + N_SYNTH))
T_SYNTH = 100
# every way the catalog names an item: its title and "title (year)", any case (conftest's years)
SYNTH_NAMES = {**{f"synthetic film {i}": 100 + i for i in range(N_SYNTH)},
               **{f"synthetic film {i} ({1950 + (i * 3) % 60})": 100 + i for i in range(N_SYNTH)}}
INTENTIONS = ["a scary horror movie", "something funny", "a romantic drama for a quiet evening",
              "fast action with car chases", "Sci-Fi"]


def examples(default: int) -> int:
    """default × IDREAM_HYPOTHESIS_SCALE (scripts/reliability.py runs more cases than CI)."""
    return max(1, round(default * float(os.environ.get("IDREAM_HYPOTHESIS_SCALE") or 1)))


def hypothesis_settings(default: int):
    return settings(max_examples=examples(default), deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


@pytest.fixture(scope="module", autouse=True)
def _report_cases():
    yield
    report_to_reliability_log("test_hostile_inputs", "cases", CASES)


@pytest.fixture(scope="session")
def synth_ckpt(tmp_path_factory, synthetic_dir, cache_dir) -> Path:
    from test_corrupt_files import synthetic_checkpoint

    return synthetic_checkpoint(tmp_path_factory.getbasetemp() / "hardening-synthetic", synthetic_dir,
                                cache_dir)


@pytest.fixture(scope="session")
def rec(synth_ckpt) -> Recommender:
    return Recommender.load(synth_ckpt)


# -- strategies ------------------------------------------------------------------------------

SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, -0.0, MAX_GUIDANCE,
                  -MAX_GUIDANCE, MAX_GUIDANCE + 1e-9, 5e-324]
WEIRD_TEXT = st.sampled_from([
    "", " ", "\x00", "\x07\x1b[31mred\x1b[0m", "\u202e\u200b", "😀🎬🍿" * 50, "x" * 100_000,
    "Synthetic Film 3" * 5000, "\udcff\udcfe invalid utf-8", "[#" * 50_000, "Toy Story [#1]",
    "\n".join(["line"] * 1000), "'; DROP TABLE items; --", "%s%n%x", "{0}{1}",
])
ANY_TEXT = st.one_of(st.text(max_size=60), WEIRD_TEXT,
                     st.text(st.characters(categories=["Cc", "Cs", "Co", "So"]), max_size=40))
ANY_NUMBER = st.one_of(st.none(), st.floats(), st.sampled_from(SPECIAL_FLOATS),
                       st.integers(-10**30, 10**30), st.text(max_size=6), st.booleans())
KNOWN_REF = st.one_of(st.sampled_from(SYNTH_IDS), st.sampled_from(SYNTH_IDS).map(str),
                      st.integers(0, N_SYNTH - 1).map(lambda i: f"Synthetic Film {i}"),
                      st.integers(0, N_SYNTH - 1).map(lambda i: f"  SYNTHETIC film {i} "))
ANY_REF = st.one_of(KNOWN_REF, ANY_TEXT, st.none(), st.floats(), st.integers(-10**20, 10**20),
                    st.lists(st.integers(), max_size=2))


def check_rows(rows: list[dict], history_ids: set, k: int, n_catalog: int, known=None) -> None:
    """A well-formed ranking: ranks 1..n, finite descending scores, no history item, no repeats,
    and (given `known`) only catalog item ids."""
    n = min(k, n_catalog - len(history_ids))
    assert len(rows) == n
    if known is not None:
        assert {r["item_id"] for r in rows} <= set(known), [r["item_id"] for r in rows]
    assert [r["rank"] for r in rows] == list(range(1, n + 1))
    scores = [r["score"] for r in rows]
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores), scores
    assert scores == sorted(scores, reverse=True)
    ids = [r["item_id"] for r in rows]
    assert len(set(ids)) == len(ids) and not set(ids) & history_ids
    for r in rows:
        if "intention_similarity" in r:
            assert math.isfinite(r["intention_similarity"])


def clear_error(e: ValueError) -> None:
    msg = str(e)
    assert msg.strip() and "Traceback" not in msg and len(msg) < 2000, msg[:300]
    assert len(msg.splitlines()) == 1, msg[:300]  # one line (reprs escape what the input held)


# -- which calls are valid: the documented rules, read independently of the library -----------

def expected_item(ref) -> int | None:
    """The catalog id a history entry names: an id (int, or str with spaces around), a title or
    "title (year)" in any case, or "anything [#id]"; None when it names nothing."""
    if isinstance(ref, bool):  # not an id, whatever Python says about bool and int
        return None
    if isinstance(ref, int):
        return ref if ref in SYNTH_IDS else None
    if not isinstance(ref, str):
        return None
    s = ref.strip()
    if s.isascii() and s.isdigit() and int(s) in SYNTH_IDS:
        return int(s)
    if s.lower() in SYNTH_NAMES:
        return SYNTH_NAMES[s.lower()]
    _, tag, tail = s.rpartition("[#")
    if tag and tail.endswith("]") and tail[:-1].strip().isdigit() and int(tail[:-1]) in SYNTH_IDS:
        return int(tail[:-1])
    return None


def expected_history(history) -> list | None:
    """The ids a history names, oldest first without repeats; None when one entry is unknown."""
    if history is None:
        return []
    refs = [history] if isinstance(history, (str, bytes, int)) else list(history)
    ids = [expected_item(r) for r in refs]
    return None if None in ids else list(dict.fromkeys(ids))


def has_text(intention) -> bool:
    """An intention counts when it has a visible character (an undecodable one reads as '?')."""
    return any(0xD800 <= ord(c) <= 0xDFFF or (c.isprintable() and not c.isspace())
               for c in str(intention or ""))


def as_whole(v) -> int | None:
    """An int from an int, a finite float or a numeric string (truncated); None otherwise."""
    if isinstance(v, int):
        return int(v)
    try:
        x = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return int(x) if math.isfinite(x) else None


def number_within(v, lo: float, hi: float) -> bool:
    """None (the default), or a finite number in [lo, hi] as float() reads it."""
    if v is None:
        return True
    try:
        x = float(v)
    except (TypeError, ValueError, OverflowError):
        return False
    return math.isfinite(x) and lo <= x <= hi


def guidance_ok(v) -> bool:
    return number_within(v, -MAX_GUIDANCE, MAX_GUIDANCE)


def rho_ok(v) -> bool:
    """ρ turns the oracle from the history (0) to the intention (1): nothing outside."""
    return number_within(v, *STEER_RANGE)


def rhos_ok(rhos) -> bool:
    try:
        xs = [float(r) for r in rhos]
    except (TypeError, ValueError, OverflowError):
        return False
    return bool(xs) and all(rho_ok(x) for x in xs)


# what each problem's message says (the message names at least one of the call's problems)
PROBLEM_MESSAGE = {"history": r"^unknown item", "empty": r"^give a history, an intention, or both$",
                   "steps": r"^steps must", "k": r"^k must", "seed": r"^seed must", "rho": r"^rho must",
                   "w": r"^w must", "rhos": r"^rhos must"}


def problems(history, intention, steps, k, seed, w, rho=None, rhos=None, sweep=False) -> list[str]:
    """Everything wrong with a recommend (or sweep_rho) call; [] when it must be answered."""
    found = []
    hist = expected_history(history)
    if hist is None:
        found.append("history")
    elif not hist and not has_text(intention):
        found.append("empty")
    s = as_whole(steps)
    if s is None or not 1 <= s <= T_SYNTH:
        found.append("steps")
    kk = as_whole(k)
    if kk is None or kk < 1:
        found.append("k")
    if seed is not None and as_whole(seed) is None:
        found.append("seed")
    if not guidance_ok(w):
        found.append("w")
    if sweep and rhos is not None and not rhos_ok(rhos):  # None: the model's own positions
        found.append("rhos")
    if not sweep and not rho_ok(rho):
        found.append("rho")
    return found


def check_refusal(e: ValueError, found: list[str]) -> None:
    clear_error(e)
    msg = str(e)
    assert any(re.search(PROBLEM_MESSAGE[p], msg) for p in found), (found, msg[:300])


def call_recommend(rec, **kw) -> str:
    """One recommend call judged against `problems`: "answered" or "refused" (a failed assertion
    if a valid call is refused, an invalid one answered, or an answer or error is malformed)."""
    CASES["Recommender.recommend"] += 1
    found = problems(**kw)
    try:
        out = rec.recommend(**kw)
    except ValueError as e:  # UnknownItemError is one
        assert found, f"a valid call was refused: {str(e)[:300]}"
        check_refusal(e, found)
        return "refused"
    assert not found, f"an invalid call ({', '.join(found)}) was answered"
    hist = expected_history(kw["history"])
    assert [rec.dataset.item_meta(i)["item_id"] for i in out.history] == hist
    check_rows(out.items, set(hist), as_whole(kw["k"]), N_SYNTH, SYNTH_IDS)
    assert np.isfinite(out.oracle).all() and out.oracle.shape == (rec.transform.dim,)
    assert (out.intention is not None) == has_text(kw["intention"])
    assert all(("intention_similarity" in r) == has_text(kw["intention"]) for r in out.items)
    return "answered"


# -- the library -----------------------------------------------------------------------------

VALID_GUIDANCE = st.one_of(st.none(), st.floats(-MAX_GUIDANCE, MAX_GUIDANCE))
VALID_RHO = st.one_of(st.none(), st.floats(*STEER_RANGE))
HOSTILE_ARGS = {
    "history": st.one_of(st.lists(ANY_REF, max_size=12), st.none(), ANY_TEXT, st.integers()),
    "intention": st.one_of(st.none(), ANY_TEXT), "rho": ANY_NUMBER, "w": ANY_NUMBER,
    "steps": st.one_of(st.integers(-3, 6), st.sampled_from([0, T_SYNTH + 1, 10**9, -10**9]), ANY_NUMBER),
    "k": st.one_of(st.integers(-3, 50), st.sampled_from([0, -1, N_SYNTH + 1, 10**12]), ANY_NUMBER),
    "seed": st.one_of(st.integers(-2**200, 2**200), ANY_NUMBER),
}
VALID_ARGS = {  # real ids and titles, a normal intention, numbers within their ranges
    "history": st.lists(KNOWN_REF, min_size=1, max_size=8),
    "intention": st.one_of(st.none(), st.sampled_from(INTENTIONS)), "rho": VALID_RHO,
    "w": VALID_GUIDANCE, "steps": st.integers(1, 6), "k": st.integers(1, 50),
    "seed": st.one_of(st.none(), st.integers(-2**70, 2**70)),
}


def mixed_calls(valid: dict, hostile: dict) -> st.SearchStrategy:
    """A valid call, a valid call with one argument hostile, or a call hostile throughout."""
    ok = st.fixed_dictionaries(valid)
    one_bad = st.tuples(ok, st.one_of([st.tuples(st.just(name), s) for name, s in hostile.items()]))
    return st.one_of(ok, one_bad.map(lambda t: {**t[0], t[1][0]: t[1][1]}), st.fixed_dictionaries(hostile))


def assert_both_outcomes(outcomes: Counter) -> None:
    """The property run was not all refusals (nor all answers): a tenth or more of each."""
    n = sum(outcomes.values())
    assert outcomes["answered"] >= max(1, n // 10) and outcomes["refused"] >= max(1, n // 10), outcomes


def test_recommend_any_input(rec):
    outcomes: Counter = Counter()

    @hypothesis_settings(150)
    @given(call=mixed_calls(VALID_ARGS, HOSTILE_ARGS))
    @example(call=dict(history=[100], intention=None, rho=None, w=None, steps=T_SYNTH, k=N_SYNTH, seed=0))
    @example(call=dict(history="not a film", intention=None, rho=None, w=None, steps=1, k=5, seed=0))
    def prop(call):
        outcomes[call_recommend(rec, **call)] += 1

    prop()
    assert_both_outcomes(outcomes)


VALID_CALLS = [  # (call, the ids of its history)
    (dict(history=[100, 101, 102]), [100, 101, 102]),
    (dict(history=["Synthetic Film 5", "synthetic film 6 (1968)", "  SYNTHETIC FILM 7 "]), [105, 106, 107]),
    (dict(history=["110", " 111 ", "Anything at all [#112]", 110]), [110, 111, 112]),
    (dict(history=101, intention="a scary horror movie", rho=0.7, w=1.0, steps=5, k=3, seed=7), [101]),
    (dict(history="Synthetic Film 0", k=10**6), [100]),
    (dict(history=[], intention="something funny", k=39, seed=None), []),
    (dict(history=None, intention="  Sci-Fi \x07", rho=1.0, w=MAX_GUIDANCE), []),
    (dict(history=[120], steps=T_SYNTH, k=2.9, seed=2**200, rho=0.0, w=0.0), [120]),
    (dict(history=SYNTH_IDS[:-1], intention="a romantic drama"), SYNTH_IDS[:-1]),
]


@pytest.mark.parametrize("case", range(len(VALID_CALLS)))
def test_known_valid_calls_are_answered(rec, case):
    """Fixed valid calls through the property's judge: each must be answered, with the history
    the test expects (so the judge's idea of valid is not vacuous)."""
    call, ids = VALID_CALLS[case]
    call = dict(dict(intention=None, rho=None, w=None, steps=1, k=10, seed=0), **call)
    assert problems(**call) == []
    assert expected_history(call["history"]) == ids
    assert call_recommend(rec, **call) == "answered"
    out = rec.recommend(**call)
    assert len(out.items) == min(as_whole(call["k"]), N_SYNTH - len(ids)) > 0


INVALID_CALLS = [  # (call, the problem the message must name)
    (dict(history=[100, "No Such Film"]), "history"),
    (dict(history=[100.0]), "history"),
    (dict(history=[None]), "history"),
    (dict(history=[99]), "history"),
    (dict(history=[], intention=" \x00\u200b "), "empty"),
    (dict(history=[100], steps=0), "steps"),
    (dict(history=[100], steps=T_SYNTH + 1), "steps"),
    (dict(history=[100], steps="x"), "steps"),
    (dict(history=[100], k=0), "k"),
    (dict(history=[100], k=math.inf), "k"),
    (dict(history=[100], seed=math.nan), "seed"),
    (dict(history=[100], rho=MAX_GUIDANCE * 1.01), "rho"),
    (dict(history=[100], w="lots"), "w"),
]


@pytest.mark.parametrize("case", range(len(INVALID_CALLS)), ids=[p for _, p in INVALID_CALLS])
def test_known_invalid_calls_name_the_problem(rec, case):
    call, problem = INVALID_CALLS[case]
    call = dict(dict(intention=None, rho=None, w=None, steps=1, k=10, seed=0), **call)
    assert problems(**call) == [problem]
    assert call_recommend(rec, **call) == "refused"
    with pytest.raises(ValueError, match=PROBLEM_MESSAGE[problem]):
        rec.recommend(**call)


@hypothesis_settings(80)
@given(history=st.lists(KNOWN_REF, max_size=15), intention=st.one_of(st.none(), st.text(max_size=200)),
       rho=VALID_RHO, w=VALID_GUIDANCE, steps=st.integers(1, 8), k=st.integers(1, 10**6),
       seed=st.one_of(st.none(), st.integers(-2**70, 2**70)))
def test_recommend_valid_input_always_answers(rec, history, intention, rho, w, steps, k, seed):
    """Inputs within the documented ranges are never refused (except "give something")."""
    CASES["Recommender.recommend"] += 1
    has_intention = bool(clean_text(intention or ""))
    if not history and not has_intention:
        with pytest.raises(ValueError, match="give a history, an intention, or both"):
            rec.recommend(history, intention)
        return
    out = rec.recommend(history, intention, rho=rho, w=w, steps=steps, k=k, seed=seed)
    ids = {rec.dataset.item_meta(rec.resolve_item(h))["item_id"] for h in history}
    check_rows(out.items, ids, k, N_SYNTH)
    if seed is not None:  # a seed fixes the answer
        again = rec.recommend(history, intention, rho=rho, w=w, steps=steps, k=k, seed=seed)
        assert [r["item_id"] for r in again.items] == [r["item_id"] for r in out.items]


SWEEP_HOSTILE = {
    "history": st.lists(ANY_REF, max_size=6), "intention": st.one_of(st.none(), ANY_TEXT),
    "rhos": st.one_of(st.lists(st.one_of(st.floats(-150, 150), st.sampled_from(SPECIAL_FLOATS)), max_size=12),
                      st.none(), ANY_TEXT, st.just(range(11))),
    "w": ANY_NUMBER, "steps": st.one_of(st.integers(-2, 5), ANY_NUMBER),
    "k": st.one_of(st.integers(-2, 45), ANY_NUMBER), "seed": ANY_NUMBER,
}
SWEEP_VALID = {
    "history": st.lists(KNOWN_REF, min_size=1, max_size=6),
    "intention": st.one_of(st.none(), st.sampled_from(INTENTIONS)),
    "rhos": st.one_of(st.lists(st.floats(*STEER_RANGE), min_size=1, max_size=12),
                      st.just(range(2))),
    "w": VALID_GUIDANCE, "steps": st.integers(1, 5), "k": st.integers(1, 45),
    "seed": st.one_of(st.none(), st.integers(-2**70, 2**70)),
}


def call_sweep(rec, history, intention, rhos, w, steps, k, seed) -> str:
    CASES["Recommender.sweep_rho"] += 1
    found = problems(history, intention, steps, k, seed, w, rhos=rhos, sweep=True)
    try:
        out = rec.sweep_rho(history, intention, rhos=rhos, w=w, steps=steps, k=k, seed=seed)
    except ValueError as e:
        assert found, f"a valid sweep was refused: {str(e)[:300]}"
        check_refusal(e, found)
        return "refused"
    assert not found, f"an invalid sweep ({', '.join(found)}) was answered"
    hist = set(expected_history(history))
    asked = rec.rho_positions() if rhos is None else [float(r) for r in rhos]
    assert out["rho"] == asked and len(out["items"]) == len(out["rho"]) > 0
    for rows in out["items"]:
        check_rows(rows, hist, as_whole(k), N_SYNTH, SYNTH_IDS)
    assert np.isfinite(out["oracles"]).all() and out["oracles"].shape == (len(out["rho"]), rec.transform.dim)
    for key in ("intention_similarity", "history_similarity"):
        assert len(out[key]) == len(out["rho"])
        assert all(v is None or (math.isfinite(v) and -1.0001 <= v <= 1.0001) for v in out[key])
    assert all(v is not None for v in out["intention_similarity"]) == has_text(intention)
    assert all(v is not None for v in out["history_similarity"]) == bool(hist)
    return "answered"


def test_sweep_rho_any_input(rec):
    outcomes: Counter = Counter()

    @hypothesis_settings(60)
    @given(call=mixed_calls(SWEEP_VALID, SWEEP_HOSTILE))
    def prop(call):
        outcomes[call_sweep(rec, **call)] += 1

    prop()
    assert_both_outcomes(outcomes)


def test_very_long_histories(rec):
    """10,000-item histories: duplicates collapse, the answer leaves them all out, and an unknown
    item is named whatever its length (without quadratic work on it)."""
    CASES["Recommender.recommend"] += 4
    long = [SYNTH_IDS[i % 30] for i in range(10_000)]
    out = rec.recommend(long, "a scary film", k=50)
    check_rows(out.items, set(SYNTH_IDS[:30]), 50, N_SYNTH)
    assert len(out.items) == 10 and len(out.history) == 30
    titles = [f"Synthetic Film {i % 30}" for i in range(10_000)]
    assert [r["item_id"] for r in rec.recommend(titles, k=5).items] == \
        [r["item_id"] for r in rec.recommend([SYNTH_IDS[i % 30] for i in range(10_000)], k=5).items]
    with pytest.raises(UnknownItemError, match="unknown item") as err:
        rec.recommend(long + ["[#" * 50_000], k=5)
    assert len(str(err.value)) < 500
    with pytest.raises(UnknownItemError):
        rec.recommend([f"no such film {i}" for i in range(10_000)])
    full = rec.recommend(SYNTH_IDS, k=5)  # the whole catalog seen: nothing left to rank
    assert full.items == []


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_oracle_is_an_error_not_a_nan_score(rec, monkeypatch, bad):
    """Should the network ever overflow, the caller gets a ValueError, never NaN scores."""
    import idream.serving.answers as module  # where the oracle is sampled

    real = module.sample
    monkeypatch.setattr(module, "sample", lambda *a, **kw: real(*a, **kw) * bad)
    CASES["Recommender.recommend"] += 2
    with pytest.raises(ValueError, match="not finite"):
        rec.recommend([100], k=3)
    with pytest.raises(ValueError, match="not finite"):
        rec.sweep_rho([100], "funny", rhos=[0.0, 1.0], k=3)


# -- the command line ------------------------------------------------------------------------

def cli(argv: list, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m idream recommend ...` with arguments given as bytes (so that strings holding
    surrogates reach argv as the invalid UTF-8 they stand for)."""
    args = [sys.executable.encode(), b"-m", b"idream", b"recommend",
            *(a if isinstance(a, bytes) else os.fsencode(a) for a in argv)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run(args, capture_output=True, timeout=timeout, env=env, cwd=ROOT)


def check_cli(p: subprocess.CompletedProcess, history_ids: set | None = None) -> dict | None:
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err and "Traceback" not in out, err[-2000:]
    assert p.returncode in (0, 2), (p.returncode, err[-2000:])
    if p.returncode == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "error: " in lines[0] and len(lines[0]) < 2000, err[-2000:]
        return None
    result = json.loads(out)
    scores = [r["score"] for r in result["items"]]
    assert all(math.isfinite(s) for s in scores)
    if history_ids is not None:
        assert not {r["item_id"] for r in result["items"]} & history_ids
    return result


# argv holds bytes: no NUL, and surrogates only as surrogateescape's \udc80-\udcff (undecodable bytes)
ARGV_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
CLI_TEXT = st.one_of(st.text(ARGV_CHARS, max_size=40),
                     st.binary(max_size=20).filter(lambda b: b"\x00" not in b).map(os.fsdecode),
                     st.sampled_from(["\udcff\udcfe", "caf\udce9", "😀🍿", "\x07\x1b[2J", "-x", "--k",
                                      "x" * 100_000, "[#" * 20_000, " "]))
CLI_NUMBER = st.one_of(st.sampled_from(["nan", "inf", "-inf", "1e309", "-1e309", "0", "-1", "1.5", "x", "",
                                        "99999999999999999999999", "1e3", "0x10", "½", "\udcff"]),
                       st.integers(-10**6, 10**6).map(str), st.floats(-200, 200).map(repr))
CLI_REF = st.one_of(st.sampled_from(SYNTH_IDS).map(str),
                    st.integers(0, N_SYNTH - 1).map(lambda i: f"Synthetic Film {i}"), CLI_TEXT)


NEGATIVE_NUMBER = re.compile(r"-\d+|-\d*\.\d+")  # what argparse reads as a value, not a flag
INT_FLAGS = {"--steps", "--k", "--seed"}


def cli_verdict(history: list, intention, options: dict) -> str | None:
    """What `recommend` must do with these arguments: "answer" (exit 0), "refuse" (exit 2), or
    None where argparse's reading of a word that starts with '-' is not worth predicting."""
    if any(str(a).startswith("-") and not NEGATIVE_NUMBER.fullmatch(str(a))
           for a in [*history, *([intention] if intention is not None else [])]):
        return None
    values = {}
    for flag, value in options.items():
        if value.startswith("-") and not NEGATIVE_NUMBER.fullmatch(value):
            return "refuse"  # taken for a flag: the option misses its value
        try:
            values[flag] = (int if flag in INT_FLAGS else float)(value)  # argparse's type=
        except (ValueError, OverflowError):
            return "refuse"
    found = problems(history, intention, values.get("--steps", 1), values.get("--k", 10),
                     values.get("--seed", 0), values.get("--w"), values.get("--rho"))
    return "refuse" if found else "answer"


@hypothesis_settings(8)
@given(history=st.lists(CLI_REF, max_size=5), intention=st.one_of(st.none(), CLI_TEXT),
       options=st.dictionaries(st.sampled_from(["--rho", "--w", "--steps", "--k", "--seed"]), CLI_NUMBER,
                               max_size=3))
@example(history=["100"], intention="caf\udce9 \udcff scary", options={})
@example(history=["\udcff\udcfe"], intention=None, options={"--k": "0"})
def test_cli_any_input(synth_ckpt, history, intention, options):
    CASES["python -m idream recommend"] += 1
    argv = ["--checkpoint", str(synth_ckpt), "--json"]
    if history:
        argv += ["--history", *history]
    if intention is not None:
        argv += ["--intention", intention]
    for flag, value in options.items():
        argv += [flag, value]
    known = {int(h) for h in history if h.isdigit() and int(h) in SYNTH_IDS}
    p = cli(argv)
    check_cli(p, known)
    verdict = cli_verdict(history, intention, options)
    if verdict is not None:  # a valid call is answered, an invalid one refused
        assert p.returncode == (0 if verdict == "answer" else 2), (verdict, p.stderr[-500:])


def test_cli_verdict_reads_arguments_as_argparse_does():
    assert cli_verdict(["100"], None, {"--k": "5"}) == "answer"
    assert cli_verdict(["100"], None, {"--k": "1.5"}) == "refuse"  # type=int
    assert cli_verdict(["100"], None, {"--rho": "-inf"}) == "refuse"  # taken for a flag
    assert cli_verdict(["100"], None, {"--w": "-0.5"}) == "answer"  # a negative number, not a flag
    assert cli_verdict(["100"], None, {"--rho": "-0.5"}) == "refuse"  # ρ runs from 0 to 1
    assert cli_verdict(["100"], None, {"--rho": "nan"}) == "refuse"  # the library's rule
    assert cli_verdict([], None, {}) == "refuse"
    assert cli_verdict(["-x"], None, {}) is None


CLI_ERRORS = [
    (["--history", "100", "--k", "0"], "k must be at least 1"),
    (["--history", "100", "--steps", str(T_SYNTH + 1)], "steps must be between 1 and 100"),
    (["--history", "100", "--rho", "nan"], "rho must be a number"),
    (["--history", "100", "--w", "1e309"], "w must be a number"),
    (["--history", "100", "--seed", "1.5"], "invalid int value"),
    (["--history", b"\xff\xfe\xfd"], "unknown item"),
    (["--history", "100", "--intention", b"\xff\xfe intention", "--k", "-3"], "k must be at least 1"),
    (["--user", b"\xc3\x28"], "unknown user"),
    (["--history", "100", "--tem", "hash:64"], "--tem hash:32"),
    ([], "give a history, an intention, or both"),
]


@pytest.fixture(scope="module")
def cli_errors(synth_ckpt) -> list:
    """All CLI_ERRORS cases, run side by side (each is a fresh process of a few seconds)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as ex:
        return list(ex.map(lambda c: cli(["--checkpoint", str(synth_ckpt), *c[0]]), CLI_ERRORS))


@pytest.mark.parametrize("case", range(len(CLI_ERRORS)), ids=[w for _, w in CLI_ERRORS])
def test_cli_errors_are_one_line(cli_errors, case):
    CASES["python -m idream recommend"] += 1
    p = cli_errors[case]
    assert p.returncode == 2 and check_cli(p) is None
    assert CLI_ERRORS[case][1] in p.stderr.decode("utf-8", "replace")


def test_cli_invalid_utf8_intention_answers(synth_ckpt):
    CASES["python -m idream recommend"] += 1
    p = cli(["--checkpoint", str(synth_ckpt), "--history", "100", "101", "--intention",
             b"\xff\xfe scary \xe2\x28\xa1 film \x07", "--json"])
    assert p.returncode == 0 and check_cli(p, {100, 101})["items"]


BAD_PATHS = ["missing", "file", "empty-folder", "garbage-config", "config-is-a-folder"]


@pytest.fixture(scope="module")
def cli_bad_paths(tmp_path_factory) -> list:
    from concurrent.futures import ThreadPoolExecutor

    base = tmp_path_factory.mktemp("bad-checkpoints")
    paths = []
    for where in BAD_PATHS:
        path = base / where
        if where == "file":
            path.write_text("not a folder")
        elif where == "empty-folder":
            path.mkdir()
        elif where == "garbage-config":
            path.mkdir()
            (path / "config.json").write_bytes(b"\xff\x00{")
        elif where == "config-is-a-folder":
            (path / "config.json").mkdir(parents=True)
        paths.append(path)
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as ex:
        return list(ex.map(lambda path: cli(["--checkpoint", str(path), "--history", "1"]), paths))


@pytest.mark.parametrize("case", range(len(BAD_PATHS)), ids=BAD_PATHS)
def test_cli_bad_checkpoint_paths(cli_bad_paths, case):
    CASES["python -m idream recommend"] += 1
    p = cli_bad_paths[case]
    assert p.returncode == 2 and check_cli(p) is None


# -- the app's API over HTTP -----------------------------------------------------------------

@pytest.fixture(scope="session")
def served(checkpoint):
    pytest.importorskip("gradio")
    from demo.testing import serve

    return serve(checkpoint)


@pytest.fixture(scope="session")
def service(served, checkpoint):
    from demo.service import get_service

    return get_service(checkpoint)


class Api:
    """A gradio_client Client with a short repr (hypothesis prints the test's arguments)."""

    def __init__(self, url: str):
        from gradio_client import Client

        self.url = url
        self.client = Client(url, verbose=False)

    def submit(self, *args, api_name: str):
        return self.client.submit(*args, api_name=api_name)

    def __repr__(self) -> str:
        return f"Api({self.url!r})"


@pytest.fixture(scope="session")
def client(served) -> Api:
    return Api(served[1])


def raw_call(url: str, api_name: str, body: str) -> tuple[str, str]:
    """POST a hand-written JSON body (NaN, Infinity, lone surrogates: what gradio_client cannot
    send) to /gradio_api/call/<name>; returns the final server-sent event and its data."""
    import httpx

    base = f"{url.rstrip('/')}/gradio_api/call/{api_name}"
    r = httpx.post(base, content=body.encode(), headers={"Content-Type": "application/json"},
                   timeout=API_TIMEOUT)
    if r.status_code != 200:
        return "http", f"{r.status_code} {r.text[:500]}"
    event, data = "", ""
    with httpx.stream("GET", f"{base}/{r.json()['event_id']}", timeout=API_TIMEOUT) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = line.split(":", 1)[1].strip()
                if event in ("complete", "error"):
                    break
    return event, data


API_TIMEOUT = 120  # seconds: no answer by then counts as a hung worker


def api(client, api_name: str, *args):
    """One call; returns (result, None) or (None, error message). A timeout fails the test."""
    from gradio_client.exceptions import AppError

    job = client.submit(*args, api_name=api_name)
    try:
        return job.result(timeout=API_TIMEOUT), None
    except AppError as e:
        return None, str(e)
    except TimeoutError:
        pytest.fail(f"{api_name} did not answer within {API_TIMEOUT} s: a hung worker")


def readable(msg: str) -> None:
    assert msg and msg.strip() and "Traceback" not in msg and 'File "' not in msg, msg[:500]
    assert "Something went wrong on the server" not in msg, msg[:500]  # an unexpected exception
    assert len(msg) < 5000, msg[:300]


def sendable(s: str) -> str:
    """gradio_client sends UTF-8 JSON: lone surrogates cannot travel (see test_api_raw_json_values)."""
    return s.encode("utf-8", "replace").decode("utf-8")


API_TEXT = ANY_TEXT.map(sendable)


def api_history(service) -> st.SearchStrategy:
    labels = service.labels
    ids = [m["item_id"] for m in service.metas]
    ref = st.one_of(st.sampled_from(labels), st.sampled_from(ids), st.sampled_from(ids).map(str),
                    API_TEXT, st.none(), st.floats(allow_nan=False, allow_infinity=False),
                    st.integers(-10**20, 10**20),
                    st.lists(st.integers(), max_size=2),
                    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
    return st.one_of(st.lists(ref, max_size=12), ref)


def rows_of(service, history) -> set:
    rows, _ = service.resolve(history)
    return {service.metas[i]["item_id"] for i in rows}


JSON_NUMBER = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False),
                        st.sampled_from([1e308, -1e308, 0, -1, 10**30, -(10**30), 1000, 1001, 101, 5e-324]),
                        st.integers(-10**6, 10**6), st.text(max_size=6), st.booleans(),
                        st.lists(st.integers(), max_size=2))


API_INTENTIONS = ["something light and funny from the 90s", "a dark, tense crime thriller",
                  "an animated film the whole family can watch"]


def draw_valid_api_call(data, service, sweep: bool = False) -> dict:
    """What the widgets send: distinct catalog labels (no more than the model reads), a normal
    intention or none, ρ and w within the sliders, a few steps, k up to 50, a seed."""
    L = service.rec.history_len
    call = {"history": data.draw(st.lists(st.sampled_from(service.labels), min_size=1, max_size=L,
                                          unique=True), label="history"),
            "intention": data.draw(st.one_of(st.none(), st.sampled_from(API_INTENTIONS)), label="intention")}
    for name in (("w",) if sweep else ("rho", "w")):  # within the sliders: ρ's is the model's own
        lo, hi = service.rec.rho_range if name == "rho" else (0, 10)
        call[name] = data.draw(st.one_of(st.none(), st.floats(lo, hi)), label=name)
    call["steps"] = data.draw(st.integers(1, 4), label="steps")
    call["k"] = data.draw(st.integers(1, 50), label="k")
    call["seed"] = data.draw(st.one_of(st.none(), st.integers(0, 10**6)), label="seed")
    return call


def label_ids(service, labels) -> set:
    """The item ids of catalog labels, looked up in the catalog listing itself."""
    where = {label: i for i, label in enumerate(service.labels)}
    return {service.metas[where[label]]["item_id"] for label in labels}


def test_api_recommend_any_input(client, service):
    outcomes: Counter = Counter()
    known = [m["item_id"] for m in service.metas]

    @hypothesis_settings(40)
    @given(data=st.data())
    def prop(data):
        CASES["/recommend API"] += 1
        if data.draw(st.booleans(), label="valid"):  # must be answered in full, without a notice
            call = draw_valid_api_call(data, service)
            out, err = api(client, "/recommend", *call.values())
            assert err is None, err
            assert out["notices"] == [], out["notices"]
            check_rows(out["items"], label_ids(service, call["history"]), call["k"], service.n_items, known)
            outcomes["answered"] += 1
            return
        history = data.draw(api_history(service), label="history")
        intention = data.draw(st.one_of(st.none(), API_TEXT, JSON_NUMBER), label="intention")
        rho, w, steps, k, seed = (data.draw(JSON_NUMBER, label=n) for n in ("rho", "w", "steps", "k", "seed"))
        out, err = api(client, "/recommend", history, intention, rho, w, steps, k, seed)
        if err is not None:
            readable(err)
            outcomes["refused"] += 1
            return
        assert isinstance(out["notices"], list) and all(isinstance(n, str) for n in out["notices"])
        for n in out["notices"]:
            readable(n)
        hist = rows_of(service, history)
        assert 0 < len(out["items"]) <= 100
        check_rows(out["items"], hist, len(out["items"]), service.n_items, known)
        outcomes["answered"] += 1

    prop()
    n = sum(outcomes.values())
    assert outcomes["answered"] >= max(1, n // 10), outcomes


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e999", '"\\udcff"', "[[[]]]", "{}"])
def test_api_raw_json_values(served, bad):
    """Values gradio_client cannot send (NaN and Infinity tokens, lone surrogates), written into
    the request body by hand: an answer with finite scores or a readable error, per field."""
    for i in range(7):
        CASES["/recommend API"] += 1
        args = ['["Toy Story (1995)"]', '"something funny"', "1.0", "0.0", "1", "5", "0"]
        args[i] = bad
        event, data = raw_call(served[1], "recommend", '{"data": [' + ", ".join(args) + "]}")
        assert event in ("complete", "error", "http"), (event, data)
        if event == "complete":
            out = json.loads(data)[0]
            assert all(math.isfinite(r["score"]) for r in out["items"])
        else:
            assert "Traceback" not in data and 'File "' not in data, data[:500]
            assert "Something went wrong on the server" not in data, data[:500]


def test_api_very_long_inputs(client, service):
    """A 10,000-item history of labels, 10,000 unknown titles, a 100,000-character intention."""
    CASES["/recommend API"] += 3
    rng = np.random.default_rng(0)
    labels = [service.labels[i] for i in rng.integers(0, service.n_items, 10_000)]
    out, err = api(client, "/recommend", labels, "x" * 100_000, 1.0, 0.0, 1, 10, 0)
    assert err is None
    check_rows(out["items"], rows_of(service, labels), len(out["items"]), service.n_items)
    assert any("cut to its first" in n for n in out["notices"])
    unknown = [f"No Such Film {i} " + "[#" * 100 for i in range(10_000)]
    out, err = api(client, "/recommend", unknown + ["Toy Story (1995)"], "", None, None, 1, 5, 0)
    assert err is None and len(out["items"]) == 5
    assert len(out["notices"]) <= 7 and any("more items not in the catalog" in n for n in out["notices"])
    _, err = api(client, "/recommend", unknown, "", None, None, 1, 5, 0)
    readable(err)


def test_api_sweep_any_input(client, service):
    outcomes: Counter = Counter()
    known = [m["item_id"] for m in service.metas]

    @hypothesis_settings(12)
    @given(data=st.data())
    def prop(data):
        CASES["/sweep API"] += 1
        if data.draw(st.booleans(), label="valid"):
            call = draw_valid_api_call(data, service, sweep=True)
            out, err = api(client, "/sweep", *call.values())
            assert err is None, err
            assert out["notices"] == [] and out["rho"] == service.rec.rho_positions(), out["notices"]
            for rows in out["items"]:
                check_rows(rows, label_ids(service, call["history"]), call["k"], service.n_items, known)
            outcomes["answered"] += 1
            return
        history = data.draw(api_history(service), label="history")
        intention = data.draw(st.one_of(st.none(), API_TEXT, JSON_NUMBER), label="intention")
        w, steps, k, seed = (data.draw(JSON_NUMBER, label=n) for n in ("w", "steps", "k", "seed"))
        out, err = api(client, "/sweep", history, intention, w, steps, k, seed)
        if err is not None:
            readable(err)
            outcomes["refused"] += 1
            return
        hist = rows_of(service, history)
        assert len(out["items"]) == len(service.rec.rho_positions())
        for rows in out["items"]:
            check_rows(rows, hist, len(rows), service.n_items, known)
        outcomes["answered"] += 1

    prop()
    n = sum(outcomes.values())
    assert outcomes["answered"] >= max(1, n // 10), outcomes


@hypothesis_settings(8)
@given(data=st.data())
def test_explore_and_add_item_any_ui_value(client, service, data):
    """The UI events with anything the widgets can send (any text; numbers within the sliders):
    a table and a readable status, never an error."""
    history = data.draw(st.lists(st.sampled_from(service.labels), max_size=12), label="history")
    intention = data.draw(st.one_of(st.none(), API_TEXT), label="intention")
    rho = data.draw(st.floats(*service.rec.rho_range), label="rho")
    w = data.draw(st.floats(0, 10), label="w")
    steps = data.draw(st.integers(1, min(service.rec.T, 30)), label="steps")
    k = data.draw(st.integers(1, 50), label="k")
    seed = data.draw(st.one_of(st.none(), st.integers(-10**12, 10**12), st.floats(-1e300, 1e300)),
                     label="seed")
    CASES["/explore API"] += 1
    out, err = api(client, "/explore", history, intention, rho, w, steps, k, seed)
    assert err is None, err
    table, _plot, status = out
    readable(status)
    if history or clean_text(intention or ""):
        assert len(table["data"]) == k and f"Top-{k} of " in status, status  # k ≤ 50: never clipped
    else:
        from demo.service import EMPTY_HINT
        EMPTY_HINT = EMPTY_HINT.format(kinds=service.kinds)

        assert EMPTY_HINT in status
    CASES["/add_item API"] += 1
    title = data.draw(API_TEXT, label="title")
    desc = data.draw(st.one_of(API_TEXT, st.none()), label="description")
    year = data.draw(st.one_of(st.none(), st.floats(-1e300, 1e300), st.integers(-10**6, 10**6)), label="year")
    genres = data.draw(st.lists(st.sampled_from(service.genres), max_size=3, unique=True), label="genres")
    out, err = api(client, "/add_item", title, desc, genres, year)
    assert err is None, err
    readable(out[1])


@pytest.mark.parametrize("api_name, args", [
    ("/explore", [["not a label"], "", 1.0, 0.0, 1, 5, 0]),
    ("/explore", [["Toy Story (1995)"], "", None, None, None, None, None]),
    ("/explore", [["Toy Story (1995)"], "", 1e308, -1e308, 10**9, -5, 1e308]),
    ("/explore", [12, 5, "x", "y", [], {}, "z"]),
    ("/add_item", [None, None, ["Not a genre"], "year"]),
    ("/add_item", [["list"], {"a": 1}, 5, [1]]),
    ("/search_titles", [12]),
    ("/search_titles", ["(" * 100_000]),
    ("/search_titles", [None]),
    ("/add_to_history", [{"a": 1}]),
    ("/add_to_history", [["Toy Story (1995)", 3, None]]),
    ("/add_first_match", [12, ["a list"]]),
    ("/add_first_match", [["Toy Story (1995)"], "\x00 .* ("]),
    ("/history_table", [["Toy Story (1995)", "", None, 5, "No Such Film"]]),
])
def test_ui_events_with_values_no_widget_sends(client, api_name, args):
    """Out-of-range slider values or unknown dropdown choices sent to a UI event by hand: the
    widgets' own checks in Gradio refuse them with an error message, not a traceback or a hang."""
    CASES[f"{api_name} API"] += 1
    out, err = api(client, api_name, *args)
    if err is not None:
        assert "Traceback" not in err and 'File "' not in err, err[:500]
