"""`python -m demo.precompute --checkpoint DIR`: fit the catalog's UMAP maps once, save them."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    p = argparse.ArgumentParser(prog="python -m demo.precompute", description=__doc__)
    p.add_argument("--checkpoint", default=os.environ.get("IDREAM_CHECKPOINT", "checkpoints/ml-100k"))
    a = p.parse_args(argv)

    from idream.serving.checkpoint import CheckpointError
    from idream.serving.recommender import Recommender

    from . import projection

    try:
        rec = Recommender.load(a.checkpoint)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    vectors = projection.space_vectors(rec)
    t0 = time.perf_counter()
    coords, _ = projection.compute_coords(vectors)
    seconds = time.perf_counter() - t0
    path = projection.write_coords(a.checkpoint, coords, projection.fingerprint(vectors), seconds)
    print(json.dumps({"written": str(path), "items": len(coords["raw"]), "seconds": round(seconds, 1),
                      "params": projection.PARAMS}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
