"""A request's inputs, checked once: the limits a model answers within, and one checker that
refuses what lies outside them (the library's way) or clips it there with a notice (a UI's way).

`Recommender.limits` builds the limits of one model and `Recommender.check_request` checks a
request against them; the command line, the Python API and the demo all go through it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from idream.core.steer import STEER_RANGE
from idream.errors import InputError

MAX_INTENTION_CHARS = 2000
MAX_TITLE_CHARS = 200  # a new item's title
MAX_DESCRIPTION_CHARS = 2000  # a new item's description: MiniLM reads ~256 words, the rest is lost
MAX_GUIDANCE = 100.0  # |w|, |ρ| beyond this only overflow the oracle
OFFERED_GUIDANCE = (0.0, 10.0)  # the w offered to people: the slider
MAX_K = 100  # the most items a clipped request asks for
SEED_RANGE = 2**31  # a clipped request's seed is folded into 0 … 2³¹ − 1
DEFAULT_STEPS, DEFAULT_K, DEFAULT_SEED = 1, 10, 0
LABELS = {"rho": "ρ", "k": "top-K"}  # how clip mode names an argument in notices and errors
REQUIRED = object()  # no default: None is refused


def clean_text(s) -> str:
    """Printable text: undecodable bytes (surrogates from argv) replaced, control chars dropped."""
    s = str(s).encode("utf-8", "replace").decode("utf-8")
    return "".join(ch for ch in s if ch.isprintable() or ch in " \t\n").strip()


def outside_steer_range(got: str = "") -> InputError:
    """The refusal of a ρ outside STEER_RANGE."""
    lo, hi = STEER_RANGE
    return InputError(f"rho must be between {lo:g} (the history alone) and {hi:g} (the intention "
                      f"alone) for this model{got}")


class EmptyRequest(InputError):
    """Neither a history nor an intention: nothing to answer."""

    def __init__(self):
        super().__init__("give a history, an intention, or both")


class NewItemError(InputError):
    """A new item the model cannot place as given: no title, a description too long to be read,
    or new items given as a history."""


def check_new_item(title, description) -> tuple[str, str, str | None]:
    """A new item's title and description, cleaned, and a notice when it has no description (it
    is placed by its title and genres alone, less well); NewItemError for what cannot be embedded
    as written."""
    title, description = clean_text(title or ""), clean_text(description or "")
    if not title:
        raise NewItemError("a new item needs a title (and ideally a sentence or two describing it)")
    if len(title) > MAX_TITLE_CHARS:
        raise NewItemError(f"a new item's title holds at most {MAX_TITLE_CHARS} characters, got "
                           f"{len(title):,}: put the rest in its description")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise NewItemError(f"a new item's description holds at most {MAX_DESCRIPTION_CHARS:,} "
                           f"characters, got {len(description):,}: the text model reads only about "
                           "the first 256 words, so say what it is about in a few sentences")
    notice = None if description else (f"{title!r} has no description: only its title, year and "
                                       "genres tell the text model what it is")
    return title, description, notice


def is_new_item(ref) -> bool:
    """A session's new item given where a catalog item is expected: the item itself
    (`Recommender.embed_new_item`) or the id its result rows carry ("new:1")."""
    if isinstance(ref, dict):
        return "z" in ref and "meta" in ref
    return isinstance(ref, str) and ref.strip().lower().startswith("new:")


def refuse_new_items_in_history(history: list) -> None:
    """NewItemError when the history holds new items: the model reads a history through what it
    learned of each catalog item, and a new item has nothing learned."""
    new = sum(is_new_item(r) for r in history)
    if not new:
        return
    what = "a history made only of new items" if new == len(history) else "a history with new items in it"
    raise NewItemError(f"{what} cannot be answered: the model reads a history through what it "
                       "learned of catalog items, and a new item has nothing learned; give catalog "
                       "items as the history (new items are ranked beside them), or say in the "
                       "intention what you want")


@dataclass(frozen=True)
class Limits:
    """The ranges one model answers within, and the guidance it uses when none is given."""

    steps: tuple[int, int]  # (1, T)
    k: tuple[int, int | None]  # None: no cap (an answer holds the items that are left)
    rho: tuple[float, float]
    w: tuple[float, float]
    default_rho: float
    default_w: float

    def within(self, rho: tuple | None = None, w: tuple | None = None, k_max: int | None = None) -> "Limits":
        """These limits narrowed (to a UI's sliders), never widened: each range is intersected."""
        def meet(a, b):
            return a if b is None else (max(a[0], b[0]), min(a[1], b[1]))

        k_lo, k_hi = self.k
        if k_max is not None:
            k_hi = max(k_lo, k_max if k_hi is None else min(k_hi, k_max))
        return replace(self, rho=meet(self.rho, rho), w=meet(self.w, w), k=(k_lo, k_hi))


@dataclass
class Request:
    """A checked request: the intention as the model reads it and numbers within the limits."""

    intention: str | None
    rho: float
    w: float
    steps: int
    k: int
    seed: int | None  # None: fresh noise on every call
    notices: list[str] = field(default_factory=list)  # what clip mode changed, in words


def _got(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "…"


def _shown(x) -> str:
    """A number as a notice writes it (an int too large for a float: its first digits)."""
    try:
        return f"{x:g}"
    except OverflowError:
        return _got(x)


def _number(name: str, v) -> float:
    """A finite float; ValueError naming `name` otherwise."""
    try:
        x = float(v)
    except (TypeError, ValueError, OverflowError):
        x = math.nan
    if not math.isfinite(x):
        raise InputError(f"{name} must be a number, got {_got(v)}")
    return x


def _whole(name: str, v) -> int:
    """An int from an int or a finite number (truncated); ValueError naming `name` otherwise."""
    if isinstance(v, (int, np.integer)):
        return int(v)
    try:
        x = float(v)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{name} must be a whole number, got {_got(v)}") from None
    if not math.isfinite(x):
        raise InputError(f"{name} must be a finite whole number, got {_got(v)}")
    return int(x)


def check_request(limits: Limits, has_history: bool, intention, rho, w, steps, k, seed,
                  clip: bool = False) -> Request:
    """The one check of a request's inputs.

    clip False (the library's way): ValueError naming the first argument outside its range; rho,
    w None mean the model's defaults, seed None fresh noise. clip True (a UI's way): values out of
    range are clipped to it with a notice, None or "" mean the defaults (seed 0), and the seed is
    folded into 0 … 2³¹ − 1. Both ways cut the intention to MAX_INTENTION_CHARS (clip mode says so)
    and raise ValueError for what is not a number and EmptyRequest when there is nothing to answer.
    A clipped request is always one the library's way accepts as it is.
    """
    notices: list[str] = []
    intention = clean_text(intention or "")
    if len(intention) > MAX_INTENTION_CHARS:
        intention = intention[:MAX_INTENTION_CHARS]
        if clip:
            notices.append(f"The intention was cut to its first {MAX_INTENTION_CHARS:,} characters.")
    if not has_history and not intention:
        raise EmptyRequest()

    def given(name, v, default, parse, bounds):
        """v parsed and within bounds (lo, hi or None); None (or "" in clip mode) stands for
        `default`, which is checked like any value (REQUIRED: refused; None: kept)."""
        label = LABELS.get(name, name) if clip else name
        if (v is None or (clip and isinstance(v, str) and v == "")) and default is not REQUIRED:
            if default is None:
                return None
            v = default
        x = parse(label, v)
        lo, hi = bounds
        if lo <= x and (hi is None or x <= hi):
            return x
        if clip:
            kept = max(x, lo) if hi is None else min(max(x, lo), hi)
            where = f"below {lo:g}" if hi is None else f"outside {lo:g}…{hi:g}"
            notices.append(f"{label} = {_shown(x)} is {where}; using {kept:g}.")
            return kept
        if name == "rho":  # ρ turns toward the intention: its range has a meaning at both ends
            raise outside_steer_range(f", got {_got(v)}")
        if hi is None:
            raise InputError(f"{name} must be at least {lo:g}, got {_got(v)}")
        raise InputError(f"{name} must be between {lo:g} and {hi:g}, got {_got(v)}")

    steps = given("steps", steps, DEFAULT_STEPS if clip else REQUIRED, _whole, limits.steps)
    k = given("k", k, DEFAULT_K if clip else REQUIRED, _whole, limits.k)
    rho = given("rho", rho, limits.default_rho, _number, limits.rho)
    w = given("w", w, limits.default_w, _number, limits.w)
    seed = given("seed", seed, DEFAULT_SEED if clip else None, _whole, (-math.inf, None))
    if clip:
        seed %= SEED_RANGE
    return Request(intention or None, rho, w, steps, k, seed, notices)


def check_rhos(limits: Limits, rhos) -> list[float]:
    """The ρ values of a sweep as floats, each within the model's range; ValueError otherwise."""
    try:
        rhos = [float(r) for r in rhos]
    except (TypeError, ValueError, OverflowError):
        rhos = []
    lo, hi = limits.rho
    if not rhos or not all(math.isfinite(r) and lo <= r <= hi for r in rhos):
        raise InputError(f"rhos must be a non-empty list of numbers between {lo:g} and {hi:g}")
    return rhos
