"""Draw the dev/test halves of the free-phrased intentions, once, reproducibly.

Reads free_phrased_source.jsonl (hand-written rows: id, text, genres, decade) and writes
free_phrased.jsonl, the same rows in id order with a "half" field. Run from anywhere:

    python benchmarks/intentions/make_halves.py

The draw is stratified: each row belongs to the stratum of its rarest genre (rarest over the
whole set), the rows are shuffled once with a fixed seed, and within each stratum, taken from
the rarest to the most common, the rows alternate between the halves, the first going to
whichever half is smaller so far (dev on a tie). Every genre with at least two rows in its own
stratum therefore lands in both halves, and the halves differ in size by at most one.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

SEED = 20261202
HERE = Path(__file__).resolve().parent
SOURCE = HERE / "free_phrased_source.jsonl"
TARGET = HERE / "free_phrased.jsonl"
FIELDS = ("id", "text", "genres", "decade")


def read_source(path: Path = SOURCE) -> list[dict]:
    """The hand-written rows, in file order."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                rows.append({k: row[k] for k in FIELDS})
    return rows


def assign_halves(rows: Iterable[Mapping]) -> dict[str, str]:
    """id -> "dev" | "test", a function of the rows' ids, texts and genres only."""
    rows = sorted(rows, key=lambda r: (r["id"], r["text"]))
    order = list(rows)
    random.Random(SEED).shuffle(order)
    freq = Counter(g for r in rows for g in r["genres"])

    def stratum(row: Mapping) -> str:
        return min(row["genres"], key=lambda g: (freq[g], g))

    sizes = {"dev": 0, "test": 0}
    halves: dict[str, str] = {}
    for genre in sorted({stratum(r) for r in rows}, key=lambda g: (freq[g], g)):
        members = [r for r in order if stratum(r) == genre]
        first = "dev" if sizes["dev"] <= sizes["test"] else "test"
        second = "test" if first == "dev" else "dev"
        for k, row in enumerate(members):
            half = first if k % 2 == 0 else second
            halves[row["id"]] = half
            sizes[half] += 1
    return halves


def main() -> None:
    rows = read_source()
    halves = assign_halves(rows)
    with open(TARGET, "w", encoding="utf-8") as f:
        for row in sorted(rows, key=lambda r: r["id"]):
            f.write(json.dumps({**row, "half": halves[row["id"]]}, ensure_ascii=False) + "\n")
    counts = Counter(halves.values())
    print(f"wrote {len(rows)} rows to {TARGET.name}: dev {counts['dev']}, test {counts['test']}")


if __name__ == "__main__":
    main()
