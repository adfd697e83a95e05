"""Finding catalog rows from what a person gives: a dataset id, a title (with or without its year,
any case), "Title [#id]" for one of several same titles, or a user whose history to take."""

from __future__ import annotations

import difflib
import re

import numpy as np

from idream.data.datasets import Dataset
from idream.errors import InputError


class UnknownItemError(InputError):
    """An item id or title that is not in the catalog."""


class CatalogLookup:
    """Item and user look-ups over one dataset; the title index and rows read are kept."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self._titles: dict[str, int] | None = None
        self._metas: dict[int, dict] = {}  # catalog rows' metadata, as read

    def resolve(self, ref, suggest: bool = True) -> int:
        """Catalog row of an item given by dataset id or exact title (case-insensitive).

        suggest: name the closest titles in the error (a fuzzy search, ~10 ms per unknown item).
        """
        ds = self.dataset
        if isinstance(ref, (int, np.integer)) or (isinstance(ref, str) and ds.has_item(ref)):
            if ds.has_item(ref):
                return ds.item_index(ref)
            raise UnknownItemError(f"unknown item id {ref!r}")
        title = str(ref).strip()
        # "Title [#id]" names one of several same titles (searched in the tail only: the pattern
        # is quadratic on long inputs such as "[#[#[#…")
        m = re.search(r"\[#([^\]]+)\]$", title[-80:])
        if m and ds.has_item(m.group(1)):
            return ds.item_index(m.group(1))
        index = self.titles()
        if title.lower() in index:
            return index[title.lower()]
        if not suggest:
            raise UnknownItemError(f"unknown item {title[:200]!r}")
        close = difflib.get_close_matches(title, list(ds.items["title"]), n=3, cutoff=0.5)
        hint = f"; closest titles: {', '.join(repr(c) for c in close)}" if close else ""
        raise UnknownItemError(f"unknown item {title[:200]!r}{hint}")

    def titles(self) -> dict[str, int]:
        """Lower-cased "title" and "title (year)" → the first row that has it."""
        if self._titles is None:
            titles, items = {}, self.dataset.items
            for i, t in enumerate(items["title"]):
                titles.setdefault(str(t).lower(), i)
                year = items["year"].iloc[i]
                if year is not None and not (isinstance(year, float) and np.isnan(year)):
                    try:
                        titles.setdefault(f"{str(t).lower()} ({int(year)})", i)
                    except (TypeError, ValueError):
                        pass
            self._titles = titles
        return self._titles

    def user_history(self, user_id) -> list[int]:
        """A user's items before their test item (the last interaction), oldest first."""
        if not self.dataset.has_user(user_id):
            raise UnknownItemError(f"unknown user id {user_id!r}")
        return [int(i) for i in self.dataset.user_sequence(user_id)[:-1]]

    def meta(self, i: int) -> dict:
        """dataset.item_meta(i), kept once read: a crowd's answers read the same rows again and again
        (a pandas row read costs more than ranking it). Only rows that were shown are kept."""
        meta = self._metas.get(i)
        if meta is None:
            meta = self._metas[i] = self.dataset.item_meta(i)
        return meta
