"""idream.serving.request: one set of limits and one checker for the library (refuse) and the demo (clip).

A clipped request must be one the library accepts as it is, and a value the library refuses is
clipped to exactly the bound it was refused at (where the demo offers the model's whole range).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idream.serving.request import (MAX_GUIDANCE, MAX_INTENTION_CHARS, MAX_K, SEED_RANGE, EmptyRequest, Limits,
                            check_request, check_rhos)
from idream.core.steer import STEER_RANGE

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "ml-100k"
T = 50
WIDE = (-MAX_GUIDANCE, MAX_GUIDANCE)
STEERED = Limits(steps=(1, T), k=(1, None), rho=STEER_RANGE, w=WIDE, default_rho=0.4, default_w=0.0)
OTHER = Limits(steps=(1, T), k=(1, None), rho=STEER_RANGE, w=WIDE, default_rho=0.7, default_w=1.0)
ANY = st.one_of(st.none(), st.floats(), st.integers(-10**30, 10**30), st.text(max_size=6), st.booleans(),
                st.sampled_from(["", "1.5", "-0", "1e400", "nan", 1e308, -1e308, MAX_GUIDANCE * 2,
                                 10**400, -(10**400)]))


def offered(limits: Limits, available: int) -> Limits:
    """What the demo clips to (Recommender.limits(offered=True) for a model with these limits)."""
    return limits.within(rho=(0.0, 0.8), w=(0.0, 10.0), k_max=min(MAX_K, available))


def as_args(q) -> tuple:
    return q.intention, q.rho, q.w, q.steps, q.k, q.seed


@settings(max_examples=300, deadline=None)
@given(limits=st.sampled_from([STEERED, OTHER]), available=st.integers(-3, 500),
       has_history=st.booleans(), intention=st.one_of(st.none(), st.text(max_size=30)),
       rho=ANY, w=ANY, steps=ANY, k=ANY, seed=ANY)
def test_a_clipped_request_is_one_the_library_accepts(limits, available, has_history, intention,
                                                      rho, w, steps, k, seed):
    narrow = offered(limits, available)
    try:
        q = check_request(narrow, has_history, intention, rho, w, steps, k, seed, clip=True)
    except ValueError as e:  # only what no clipping can mend: no number, or nothing asked
        assert isinstance(e, EmptyRequest) or "must be a" in str(e), str(e)
        return
    for within in (narrow, limits):  # the demo's own limits and the library's wider ones
        again = check_request(within, has_history, *as_args(q))
        assert as_args(again) == as_args(q) and again.notices == []
    assert 0 <= q.seed < SEED_RANGE and 1 <= q.k <= max(1, min(MAX_K, available))


@pytest.mark.parametrize("limits", [STEERED, OTHER], ids=["default", "other"])
@pytest.mark.parametrize("name, value, bound", [
    ("steps", 0, 1), ("steps", T + 1, T), ("steps", 10**9, T), ("k", 0, 1), ("k", -7, 1),
    ("rho", MAX_GUIDANCE * 1.5, None), ("rho", -MAX_GUIDANCE * 1.5, None),
    ("w", MAX_GUIDANCE + 1, MAX_GUIDANCE), ("w", -1e300, -MAX_GUIDANCE),
])
def test_refused_values_are_clipped_to_the_bound_they_were_refused_at(limits, name, value, bound):
    """With the library's own limits, clip mode lands on the very bound refuse mode names."""
    if name == "rho":  # the model's own range
        bound = limits.rho[1] if value > 0 else limits.rho[0]
    call = dict(intention=None, rho=None, w=None, steps=1, k=10, seed=0)
    call[name] = value
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        check_request(limits, True, **call)
    q = check_request(limits, True, **call, clip=True)
    assert getattr(q, name) == bound
    assert len(q.notices) == 1 and f"using {bound:g}" in q.notices[0]


def test_defaults_and_what_each_way_does_with_none():
    q = check_request(OTHER, True, None, None, None, 1, 10, None)
    assert (q.rho, q.w, q.seed) == (OTHER.default_rho, OTHER.default_w, None)  # None: fresh noise
    with pytest.raises(ValueError, match="^steps must be a whole number"):
        check_request(OTHER, True, None, None, None, None, 10, 0)
    q = check_request(OTHER, True, "", "", "", "", "", "", clip=True)
    assert as_args(q) == (None, OTHER.default_rho, OTHER.default_w, 1, 10, 0) and q.notices == []


def test_the_intention_is_read_the_same_way_in_both():
    long = "  a slow\x07 drama " + "x" * (2 * MAX_INTENTION_CHARS)
    plain = check_request(STEERED, False, long, None, None, 1, 10, 0)
    clipped = check_request(STEERED, False, long, None, None, 1, 10, 0, clip=True)
    assert plain.intention == clipped.intention and len(plain.intention) == MAX_INTENTION_CHARS
    assert plain.intention.startswith("a slow drama") and plain.notices == []
    assert clipped.notices == [f"The intention was cut to its first {MAX_INTENTION_CHARS:,} characters."]
    for clip in (False, True):
        with pytest.raises(EmptyRequest, match="^give a history, an intention, or both$"):
            check_request(STEERED, False, " \x00\u200b ", None, None, 1, 10, 0, clip=clip)


def test_limits_within_never_widen():
    narrow = OTHER.within(rho=(-500.0, 0.8), w=(0.0, 500.0), k_max=0)
    assert narrow.rho == (0.0, 0.8) and narrow.w == (0.0, MAX_GUIDANCE) and narrow.k == (1, 1)
    assert narrow.within(k_max=40).k == (1, 1) and OTHER.within().k == (1, None)


def test_sweep_rhos_share_the_range_of_rho():
    assert check_rhos(STEERED, range(2)) == [0.0, 1.0]
    for rhos in ([0.5, 1.01], [], "x", [math.nan]):
        with pytest.raises(ValueError, match=r"^rhos must .* between 0 and 1$"):
            check_rhos(STEERED, rhos)


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped checkpoint")
def test_the_recommender_offers_ranges_within_its_limits():
    from idream import Recommender

    rec = Recommender.load(SHIPPED)
    hard, soft = rec.limits(), rec.limits(offered=True, available=7)
    assert hard.steps == soft.steps == (1, rec.T) and soft.k == (1, 7) and hard.k == (1, None)
    assert soft.rho == rec.rho_range and soft.w == rec.w_range
    for name in ("rho", "w"):
        (lo, hi), (a, b) = getattr(hard, name), getattr(soft, name)
        assert lo <= a <= b <= hi
    assert rec.limits(offered=True).k == (1, MAX_K)
    with pytest.raises(ValueError, match=r"^rho must be between 0 .* and 1"):
        rec.check_request(True, rho=1.5)
    assert rec.check_request(True, rho=1.5, clip=True).rho == soft.rho[1]  # the slider's top
