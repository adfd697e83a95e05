"""Checks of a config's values as JSON gives them, for the config dataclasses' own validation:
JSON does not keep Python's line between bool, int and float, and a hand edit can put anything
anywhere. Each check returns why a value cannot be used, naming its field, or None."""

from __future__ import annotations

import math


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    """A finite int or float (not a bool, not NaN or ±inf)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def number_problem(where: str, v, lo: float | None = None, hi: float | None = None, *,
                   integer: bool = False) -> str | None:
    """Why `where` = v is not a finite number (an integer if asked) with lo ≤ v ≤ hi, or None."""
    if (is_int(v) if integer else is_number(v)) and (lo is None or v >= lo) and (hi is None or v <= hi):
        return None
    kind = "an integer" if integer else "a number"
    if lo is not None and hi is not None:
        kind += f" between {lo:g} and {hi:g}"
    elif lo is not None:
        kind += f" of at least {lo:g}"
    elif hi is not None:
        kind += f" of at most {hi:g}"
    return f"{where} = {v!r} is not {kind}"


def string_problem(where: str, v, choices=None) -> str | None:
    """Why `where` = v is not a string (one of choices, when given), or None."""
    if not isinstance(v, str):
        return f"{where} = {v!r} is not a string"
    if choices is not None and v not in choices:
        return f"{where} = {v!r} is not one of {', '.join(choices)}"
    return None


def first(*problems: str | None) -> str | None:
    """The first problem found (checks are cheap: all run, the first is told)."""
    return next((p for p in problems if p), None)
