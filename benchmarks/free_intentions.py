"""Loader for the free-phrased intention benchmark (benchmarks/intentions/free_phrased.jsonl).

Evaluation code only: the idream library and its training never read this set. Choices are made
on the "dev" half; "test" is read once, to report.
"""

from __future__ import annotations

import json
from pathlib import Path

GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)
HALVES: tuple[str, ...] = ("dev", "test")
FIELDS: tuple[str, ...] = ("id", "text", "genres", "decade", "half")
PATH = Path(__file__).resolve().parent / "intentions" / "free_phrased.jsonl"


def normalise(text: str) -> str:
    """Case- and whitespace-folded text, the form in which texts must be unique."""
    return " ".join(str(text).lower().split())


def _check_row(row: object, where: str) -> dict:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in FIELDS if k not in row]
    extra = sorted(set(row) - set(FIELDS))
    if missing or extra:
        raise ValueError(f"{where}: fields must be exactly {list(FIELDS)}"
                         f" (missing {missing}, unexpected {extra})")
    if not isinstance(row["id"], str) or not row["id"].strip():
        raise ValueError(f"{where}: id must be a non-empty string, got {row['id']!r}")
    if not isinstance(row["text"], str) or not row["text"].strip():
        raise ValueError(f"{where}: text must be a non-empty string, got {row['text']!r}")
    genres = row["genres"]
    if not isinstance(genres, list) or not genres:
        raise ValueError(f"{where}: genres must be a non-empty list, got {genres!r}")
    unknown = [g for g in genres if g not in GENRES]
    if unknown:
        raise ValueError(f"{where}: unknown genre(s) {unknown}; known: {', '.join(GENRES)}")
    if len(set(genres)) != len(genres):
        raise ValueError(f"{where}: repeated genre in {genres}")
    decade = row["decade"]
    if decade is not None and (isinstance(decade, bool) or not isinstance(decade, int)
                               or decade % 10 or not 1920 <= decade <= 2000):
        raise ValueError(f"{where}: decade must be null or a multiple of 10 from 1920 to 2000,"
                         f" got {decade!r}")
    if row["half"] not in HALVES:
        raise ValueError(f"{where}: half must be one of {list(HALVES)}, got {row['half']!r}")
    return row


def load(half: str | None = None, path: str | Path | None = None) -> list[dict]:
    """The validated rows (all, or one half), in file order; ValueError names the bad line."""
    if half is not None and half not in HALVES:
        raise ValueError(f"half must be None or one of {list(HALVES)}, got {half!r}")
    path = Path(PATH if path is None else path)
    rows: list[dict] = []
    ids: dict[str, int] = {}
    texts: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{lineno}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
            row = _check_row(raw, where)
            if row["id"] in ids:
                raise ValueError(f"{where}: duplicate id {row['id']!r}"
                                 f" (first on line {ids[row['id']]})")
            key = normalise(row["text"])
            if key in texts:
                raise ValueError(f"{where}: duplicate text {row['text']!r}"
                                 f" (first on line {texts[key]})")
            ids[row["id"]] = texts[key] = lineno
            rows.append(row)
    return [r for r in rows if half is None or r["half"] == half]
