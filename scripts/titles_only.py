"""Write a catalog's titles-only twin: the same users, interactions and item ids, the items with a
title and nothing else (no year, genres or description). For measuring what intentions do when
the text model has only titles to go on (benchmarks/text.py --labels takes the genres from the
original to score it).

    python scripts/titles_only.py --dataset ml-100k --out /tmp/ml-100k-titles
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_titles_only(spec: str, out: Path) -> Path:
    from idream.data.datasets import load_dataset

    ds = load_dataset(spec)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"item_id": ds.items["item_id"], "title": ds.items["title"]}).to_csv(out / "items.csv", index=False)
    ids = ds.items["item_id"].tolist()
    rows = [(u, ids[i], pos) for u, seq in ds.sequences.items() for pos, i in enumerate(seq)]
    pd.DataFrame(rows, columns=["user_id", "item_id", "position"]).to_csv(out / "interactions.csv", index=False)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-100k", help="ml-100k or a dataset folder")
    ap.add_argument("--out", required=True, help="folder to write items.csv and interactions.csv into")
    a = ap.parse_args()
    print(write_titles_only(a.dataset, Path(a.out)))
