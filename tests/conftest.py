"""Shared fixtures: a synthetic catalog with a planted next-item rule, and tiny configs."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GENRES = ["Comedy", "Drama", "Horror", "Action", "Romance", "Sci-Fi"]
ML1M = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-1m"


def make_synthetic(folder: Path, n_items: int = 40, n_users: int = 120, length: int = 12,
                   seed: int = 0) -> Path:
    """Users walk the catalog: after item i comes item (i + 1) mod N (the planted rule). Its items
    are films, as its dataset.json says, so its texts are the film wording the tests were tuned on."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text('{"item_kind": "film"}')
    with open(folder / "items.csv", "w") as f:
        f.write("item_id,title,year,genres\n")
        for i in range(n_items):
            g = "|".join(sorted({GENRES[i % len(GENRES)], GENRES[(i * 7) % len(GENRES)]}))
            f.write(f"{100 + i},Synthetic Film {i},{1950 + (i * 3) % 60},{g}\n")
    with open(folder / "interactions.csv", "w") as f:
        f.write("user_id,item_id,timestamp\n")
        for u in range(n_users):
            start = int(rng.integers(n_items))
            for j in range(length):
                f.write(f"u{u},{100 + (start + j) % n_items},{1000 * u + j}\n")
    return folder


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synthetic"))


# A books catalog: titles, years and genres that say nothing of films; the last has no facts.
BOOKS = [("The Hobbit", 1937, "Fantasy|Adventure"), ("Dune", 1965, "Sci-Fi"),
         ("Gone Girl", 2012, "Thriller|Mystery"), ("Persuasion", 1817, "Romance|Drama"),
         ("Carrie", 1974, "Horror"), ("Catch-22", 1961, "War|Comedy"),
         ("Lonesome Dove", 1985, "Western"), ("Untitled Notebook", "", "")]


def make_books(folder: Path, n_users: int = 30, length: int = 6) -> Path:
    """A small folder whose dataset.json says its items are books; users read on in catalog order."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text('{"item_kind": "book"}')
    rows = [f"{i},{title},{year},{genres}" for i, (title, year, genres) in enumerate(BOOKS, 1)]
    (folder / "items.csv").write_text("\n".join(["item_id,title,year,genres", *rows]) + "\n")
    reads = [f"r{u},{(u + j) % len(BOOKS) + 1},{j}" for u in range(n_users) for j in range(length)]
    (folder / "interactions.csv").write_text("\n".join(["user_id,item_id,position", *reads]) + "\n")
    return folder


@pytest.fixture(scope="session")
def books_dir(tmp_path_factory) -> Path:
    return make_books(tmp_path_factory.mktemp("books"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """The app tests' checkpoint: IDREAM_TEST_CHECKPOINT, or a tiny one trained once per session."""
    from demo.testing import tiny_checkpoint

    env = os.environ.get("IDREAM_TEST_CHECKPOINT")
    return Path(env) if env else tiny_checkpoint(tmp_path_factory.getbasetemp() / "demo-checkpoint")


def load_script(path: Path, register: bool = False):
    """A script (not a package module) imported from its file; register: put it in sys.modules
    under its name (dataclasses defined in it look their module up)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def report_to_reliability_log(file: str, key: str, counts: dict) -> None:
    """Append one test module's counts to IDREAM_RELIABILITY_LOG (set by scripts/reliability.py)."""
    import json

    log = os.environ.get("IDREAM_RELIABILITY_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"file": file, key: dict(counts)}) + "\n")
