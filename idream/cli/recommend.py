"""`python -m idream recommend`: the ranked catalog for a history and/or an intention."""

from __future__ import annotations

import json

from idream.cli.common import add_text_flags, text_model


def add_parser(sub) -> None:
    """The recommend subcommand."""
    r = sub.add_parser("recommend", help="rank the catalog for a history and/or an intention")
    r.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="checkpoint folder to load (required)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--history", nargs="*", default=[], metavar="ITEM",
                   help="item ids or exact titles, oldest first")
    g.add_argument("--user", metavar="ID", help="use this user's items before their test item")
    r.add_argument("--intention", default=None, metavar="TEXT",
                   help='what the user wants, in words, e.g. "a light comedy" (default: none)')
    r.add_argument("--rho", type=float, default=None,
                   help="intention strength (default: the checkpoint's)")
    r.add_argument("--w", type=float, default=None,
                   help="history guidance weight (default: the checkpoint's)")
    r.add_argument("--steps", type=int, default=1, metavar="N",
                   help="denoising steps (default: %(default)s)")
    r.add_argument("--seed", type=int, default=0, metavar="N",
                   help="random seed of the sampling noise (default: %(default)s)")
    r.add_argument("--k", type=int, default=10, metavar="N",
                   help="how many items to list (default: %(default)s)")
    r.add_argument("--json", action="store_true", help="print the answer as JSON, not a table")
    r.add_argument("--exact", action="store_true",
                   help="score every item even where the catalog is large enough for the approximate "
                        "index (default: the index above its size threshold, exact below)")
    add_text_flags(r, model_help="must be the checkpoint's text model (default: the checkpoint's)")


def run(a) -> int:
    from idream.serving.recommender import Recommender

    rec = Recommender.load(a.checkpoint, text_model=text_model(a), descriptions=a.descriptions,
                           exact=a.exact)
    history = list(a.history)
    if a.user is not None:
        history = rec.user_history(a.user)
        history = [rec.dataset.item_meta(i)["item_id"] for i in history]
    out = rec.recommend(history, a.intention, rho=a.rho, w=a.w, steps=a.steps, k=a.k, seed=a.seed)
    if a.json:
        print(json.dumps(out.to_dict(), ensure_ascii=False))
    else:
        print(f"{'rank':>4}  {'item_id':>8}  {'score':>9}  title")
        for row in out.items:
            print(f"{row['rank']:>4}  {row['item_id']!s:>8}  {row['score']:>9.3f}  {row['title']}")
    return 0
