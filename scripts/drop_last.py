"""Write a copy of a dataset with each user's last N interactions removed (a shifted split).

The chronological split then tests on positions that no earlier choice was made on: with N = 2
on ml-100k, the test target is each user's third-to-last item and validation the fourth.
The folder holds MovieLens-derived data: keep it out of the repository.

    python scripts/drop_last.py --dataset ml-100k --n 2 --out /tmp/ml-100k-minus2
    python -m benchmarks quality --dataset /tmp/ml-100k-minus2 --seeds 0 ...
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from idream.data.datasets import load_dataset  # noqa: E402


def drop_last(dataset: str, n: int, out: Path) -> int:
    """Write interactions.csv (user_id, item_id, position) and items.csv; returns the rows kept."""
    ds = load_dataset(dataset)
    ids = ds.items["item_id"].tolist()
    rows = [(u, ids[i], p) for u, s in ds.sequences.items() for p, i in enumerate(list(s)[:-n] if n else s)]
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["user_id", "item_id", "position"]).to_csv(out / "interactions.csv", index=False)
    pd.DataFrame({"item_id": ds.items["item_id"], "title": ds.items["title"], "year": ds.items["year"],
                  "genres": ["|".join(g) for g in ds.items["genres"]],
                  "description": ds.items["description"]}).to_csv(out / "items.csv", index=False)
    return len(rows)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--n", type=int, default=2, help="interactions to drop from the end of each user")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    if a.n < 0:
        p.error("--n must be 0 or more")
    print(f"{drop_last(a.dataset, a.n, a.out)} interactions written to {a.out}")


if __name__ == "__main__":
    main()
