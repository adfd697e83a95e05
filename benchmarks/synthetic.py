"""A synthetic dataset of any size in the generic folder format (items.csv, interactions.csv,
dataset.json), by default shaped like MovieLens-20M: 138,000 users, 27,000 films with titles,
years and MovieLens genres, 20,000,000 interactions. It exists to measure what loading and
training cost at that scale (results/streaming-ml20m-shaped.md) without the real data.

What a model can learn from it:
- popularity: within its genre cluster, each item's weight follows a Zipf law of a random rank;
- sequence: every item has a successor (a popular item of its own cluster) that often comes next;
- drift: a user walks among a few favourite genre clusters, switching now and then.
A user never meets the same item twice, as in MovieLens. Everything follows from the seed: the
catalog from one generator, each block of users from its own, so the files are the same byte for
byte on every run. Interactions are written a block of users at a time (never 20M rows in memory);
inside a block the rows are in time order, so a loader must sort them by user itself.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.free_intentions import GENRES

ML20M = {"users": 138_000, "items": 27_000, "interactions": 20_000_000}  # the defaults of `bench synthetic`
P_SUCCESSOR = 0.35  # the next item is the last one's successor
P_SWITCH = 0.08  # the user moves to another of their favourite clusters
ZIPF = 1.0  # exponent of the popularity law within a cluster
MIN_LEN = 20  # MovieLens keeps users with at least 20 ratings
BLOCK_CELLS = 1 << 27  # users per block x items: the block's "already met" table, in bytes

_ADJ = ("Silent", "Crimson", "Lost", "Golden", "Broken", "Hidden", "Last", "Wild", "Dark", "Bright",
        "Frozen", "Burning", "Distant", "Secret", "Savage", "Gentle", "Endless", "Falling", "Iron",
        "Midnight", "Electric", "Hollow", "Restless", "Velvet", "Forgotten", "Shattered", "Quiet",
        "Northern", "Scarlet", "Wandering", "Bitter", "Lucky", "Sudden", "Rising", "Little", "Grand")
_NOUN = ("Harbor", "Kingdom", "Letter", "Garden", "River", "Empire", "Promise", "Stranger", "Winter",
         "Machine", "Orchard", "Mirror", "Highway", "Island", "Frontier", "Symphony", "Shadow",
         "Horizon", "Circus", "Witness", "Voyage", "Dynasty", "Lantern", "Fortress", "Carnival",
         "Tide", "Engine", "Canyon", "Station", "Heart", "Storm", "Bridge", "Signal", "Desert")
_FORM = ("The {a} {n}", "{a} {n}", "A {a} {n}", "{n} of the {a}", "The {n}", "Return of the {a} {n}",
         "{a} {n} II", "{a} {n} III", "Beyond the {n}", "The {a} {n} Affair")


def catalog(n_items: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """The items (item_id, title, year, genres) and what the walk needs: each item's cluster,
    successor, and the clusters' items with their cumulative popularity."""
    rng = np.random.default_rng([seed, 0])
    G = len(GENRES)
    share = rng.dirichlet(np.full(G, 2.0))  # some genres are far bigger than others
    cluster = rng.choice(G, n_items, p=share)
    weight = 1.0 / (rng.permutation(n_items) + 1.0) ** ZIPF  # Zipf over a random rank
    order = np.lexsort((-weight, cluster))  # by cluster, most popular first
    starts = np.searchsorted(cluster[order], np.arange(G + 1))
    cum = np.empty(n_items)
    for g in range(G):  # within cluster g the cumulative weights run from g to g + 1
        w = weight[order[starts[g]:starts[g + 1]]]
        if len(w):
            cum[starts[g]:starts[g + 1]] = g + np.cumsum(w) / w.sum()
    cum[-1] = np.inf  # no draw falls off the end
    successor = np.empty(n_items, dtype=np.int64)
    for g in range(G):  # a successor among the cluster's 200 most popular items, never itself
        members = order[starts[g]:starts[g + 1]]
        if len(members) == 1:
            successor[members] = members
            continue
        top = members[:200]
        pick = top[rng.integers(len(top), size=len(members))]
        clash = pick == members
        pick[clash] = members[(np.flatnonzero(clash) + 1) % len(members)]
        successor[members] = pick
    extra = rng.integers(0, 3, n_items)  # up to two more genres beside the cluster's own
    other = rng.integers(0, G, (n_items, 2))
    genres = ["|".join(sorted({GENRES[cluster[i]], *(GENRES[g] for g in other[i, :extra[i]])}))
              for i in range(n_items)]
    adj, noun = rng.integers(len(_ADJ), size=n_items), rng.integers(len(_NOUN), size=n_items)
    form = rng.integers(len(_FORM), size=n_items)
    titles = [_FORM[f].format(a=_ADJ[a], n=_NOUN[n]) for f, a, n in zip(form, adj, noun)]
    year = np.clip(np.round(2015 - rng.gamma(2.0, 9.0, n_items)), 1915, 2015).astype(int)
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1), "title": titles, "year": year,
                          "genres": genres})
    walk = {"cluster": cluster, "successor": successor, "order": order, "cum": cum,
            "share": share}
    return items, walk


def user_lengths(n_users: int, n_items: int, n_interactions: int, seed: int) -> np.ndarray:
    """Interactions per user: a floor (MIN_LEN or less where the data is tiny) plus a long,
    lognormal tail, summing to n_interactions exactly and never above half the catalog."""
    cap = max(1, n_items // 2)
    if n_interactions > n_users * cap:
        raise ValueError(f"{n_interactions} interactions do not fit {n_users} users who each meet "
                         f"at most half of {n_items} items")
    rng = np.random.default_rng([seed, 1])
    floor = int(min(MIN_LEN, cap, max(1, n_interactions // n_users // 2)))
    tail = rng.lognormal(0.0, 1.2, n_users)
    n = np.minimum(floor + np.floor(tail / tail.sum() * (n_interactions - floor * n_users)), cap)
    n = n.astype(np.int64)
    while (diff := n_interactions - int(n.sum())) != 0:  # hand out (or take back) what rounding left
        room = np.flatnonzero(n < cap) if diff > 0 else np.flatnonzero(n > 1)
        pick = rng.choice(room, min(abs(diff), len(room)), replace=False)
        n[pick] += 1 if diff > 0 else -1
    return n


def walk_block(users: np.ndarray, lengths: np.ndarray, walk: dict, n_items: int, seed: int,
               block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every interaction of a block of users, -> (user, item index, timestamp), in time order."""
    rng = np.random.default_rng([seed, 2, block])
    B, G = len(users), len(walk["share"])
    favourite = np.stack([rng.choice(G, B, p=walk["share"]) for _ in range(3)], 1)  # (B, 3)
    current = favourite[:, 0].copy()
    seen = np.zeros((B, n_items), dtype=bool)
    items = np.full((B, int(lengths.max())), -1, dtype=np.int32)  # (B, longest)
    last = np.full(B, -1)
    for t in range(items.shape[1]):
        act = np.flatnonzero(lengths > t)
        switch = rng.random(len(act)) < P_SWITCH
        current[act[switch]] = favourite[act[switch], rng.integers(0, 3, int(switch.sum()))]
        pick = walk["order"][np.searchsorted(walk["cum"], current[act] + rng.random(len(act)))]
        follow = (last[act] >= 0) & (rng.random(len(act)) < P_SUCCESSOR)
        pick[follow] = walk["successor"][last[act[follow]]]
        for attempt in range(3):  # an item met before is drawn again from the cluster, then
            again = np.flatnonzero(seen[act, pick])
            if not len(again):
                break
            u = act[again]
            pick[again] = walk["order"][np.searchsorted(walk["cum"], current[u] + rng.random(len(u)))]
        while len(again := np.flatnonzero(seen[act, pick])):  # from anywhere (a user meets at most
            pick[again] = rng.integers(0, n_items, len(again))  # half the catalog: this ends)
        seen[act, pick] = True
        items[act, t] = pick
        last[act] = pick
    keep = items >= 0  # row by row: each user's items in the order met
    u, i = np.broadcast_to(users[:, None], items.shape)[keep], items[keep]
    del items, seen
    start = rng.integers(789_652_009, 1_427_784_002, B)  # MovieLens-20M's first and last second
    clock = np.cumsum(rng.exponential(3600.0, len(i)) + 1)  # seconds between interactions
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # each user's first row
    ts = (np.repeat(start - clock[first], lengths) + clock).astype(np.int64)
    by_time = np.argsort(ts, kind="stable")
    return u[by_time], i[by_time], ts[by_time]


def generate(out: Path, users: int = ML20M["users"], items: int = ML20M["items"],
             interactions: int = ML20M["interactions"], seed: int = 0, log=print) -> dict:
    """Write the folder; returns what was written."""
    if min(users, items, interactions) < 1:
        raise ValueError("users, items and interactions must be at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cat, walk = catalog(items, seed)
    cat.to_csv(out / "items.csv", index=False)
    lengths = user_lengths(users, items, interactions, seed)
    made = {"users": users, "items": items, "interactions": int(lengths.sum()), "seed": seed}
    (out / "dataset.json").write_text(json.dumps({"item_kind": "film", "item_kind_plural": "films",
                                                  "synthetic": made}))
    block = max(1, BLOCK_CELLS // items)
    path = out / "interactions.csv"
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write("user_id,item_id,timestamp\n")
        for b, lo in enumerate(range(0, users, block)):
            ids = np.arange(lo, min(lo + block, users)) + 1
            u, i, ts = walk_block(ids, lengths[lo:lo + block], walk, items, seed, b)
            pd.DataFrame({"user_id": u, "item_id": i + 1, "timestamp": ts}).to_csv(f, header=False, index=False)
            log(f"users {lo + len(ids):,}/{users:,} written ({time.perf_counter() - t0:.0f} s)")
    tmp.replace(path)
    return {"out": str(out), **made, "seconds": round(time.perf_counter() - t0, 1)}
