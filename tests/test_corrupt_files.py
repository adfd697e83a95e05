"""Broken files: truncated or foreign weights, edited config.json, a transform of the wrong shape,
corrupt or stale embedding caches, a checkpoint from another text model. Each ends in a
CheckpointError that says what is wrong and what to do, or (caches) in a silent rebuild; nothing
is ever unpickled, and every write is atomic.

A tiny checkpoint (hash:32 text model, the synthetic catalog) is trained once per session.
IDREAM_HYPOTHESIS_SCALE multiplies the number of generated config.json edits;
IDREAM_RELIABILITY_LOG (set by scripts/reliability.py) collects how many faults were injected.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import pickle
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from idream.serving.checkpoint import CheckpointError, atomic_write, save_checkpoint
from idream.serving.recommender import load_checkpoint
from idream.serving.recommender import Recommender
from idream.text.backends import HashingBackend
from idream.text.cache import embed_texts
from tests.conftest import report_to_reliability_log

ROOT = Path(__file__).resolve().parents[1]
FAULTS: Counter = Counter()  # kind of fault -> how many were injected (for the reliability report)
TRAINED_FILES = ("model.safetensors", "transform.safetensors", "items.safetensors")


def examples(default: int) -> int:
    """default × IDREAM_HYPOTHESIS_SCALE (scripts/reliability.py runs more cases than CI)."""
    return max(1, round(default * float(os.environ.get("IDREAM_HYPOTHESIS_SCALE") or 1)))


@pytest.fixture(scope="module", autouse=True)
def _report_faults():
    yield
    report_to_reliability_log("test_corrupt_files", "faults", FAULTS)


def synthetic_checkpoint(folder: Path, dataset: Path, cache_dir: Path) -> Path:
    """A seconds-long training on the synthetic catalog with the hash:32 text model, saved once."""
    if not (folder / "config.json").exists():
        from idream.training.train import TrainConfig, train

        cfg = TrainConfig(dataset=str(dataset), text_model="hash:32", width=32, depth=1, heads=2,
                          epochs=2, lr=3e-3, T=100, history_len=5, intention_pool=2,
                          w_grid=(0.0,), max_minutes=1.0)
        rec, _, E = train(cfg, cache_dir=cache_dir, progress=False, log_fn=lambda s: None)
        save_checkpoint(rec, folder, E)
    return folder


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory, synthetic_dir, cache_dir) -> Path:
    return synthetic_checkpoint(tmp_path_factory.getbasetemp() / "hardening-synthetic",
                                synthetic_dir, cache_dir)


@pytest.fixture
def copy(ckpt, tmp_path) -> Path:
    out = tmp_path / "ck"
    shutil.copytree(ckpt, out)
    return out


def refused(path, kind: str, *, match: str = "", **kw) -> str:
    """Loading must fail with a CheckpointError whose message names a way out."""
    FAULTS[kind] += 1
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, **kw)
    msg = str(err.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    assert any(w in msg for w in ("retrain", "restore", "copy", "pass --", "upgrade", "point")), msg
    if match:
        assert match in msg, msg
    return msg


def recommends(rec: Recommender) -> None:
    out = rec.recommend([100, 101], intention="a scary horror film", k=5)
    assert len(out.items) == 5 and all(np.isfinite(r["score"]) for r in out.items)


# -- weights and vectors ---------------------------------------------------------------------

@pytest.mark.parametrize("name", TRAINED_FILES)
@pytest.mark.parametrize("keep", [0.0, 8, 0.5, -1])
def test_truncated_safetensors(copy, name, keep):
    f = copy / name
    data = f.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    f.write_bytes(data[:n])
    refused(copy, "truncated file", match=name)


@pytest.mark.parametrize("payload", ["random", "json", "pickle", "torch-zip", "folder"])
def test_foreign_model_file_is_refused_and_never_unpickled(copy, tmp_path, payload):
    """A pickle planted as model.safetensors must not run: the marker file is never created."""
    marker = tmp_path / "pickle-ran"

    class Planted:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    f = copy / "model.safetensors"
    f.unlink()
    if payload == "random":
        f.write_bytes(np.random.default_rng(0).bytes(4096))
    elif payload == "json":
        f.write_text(json.dumps({"weights": [1, 2, 3]}))
    elif payload == "pickle":
        f.write_bytes(pickle.dumps(Planted()))
    elif payload == "torch-zip":
        torch.save({"x": Planted()}, f)
    else:
        f.mkdir()
    refused(copy, "foreign file", match="model.safetensors")
    assert not marker.exists()


@pytest.mark.parametrize("name, tensors, match", [
    ("model.safetensors", {"weight": torch.zeros(3, 3)}, "model.safetensors"),
    ("model.safetensors", "width64", "model.safetensors"),
    ("items.safetensors", {"vectors": torch.zeros(40, 32)}, "items.safetensors"),
    ("items.safetensors", {"embeddings": torch.zeros(40, 16)}, "items.safetensors"),
    ("items.safetensors", {"embeddings": torch.zeros(39, 32)}, "catalog"),
    ("transform.safetensors", {"mean": torch.zeros(16), "matrix": torch.eye(16)}, "32-d transform"),
    ("transform.safetensors", {"mean": torch.zeros(32), "matrix": torch.zeros(32, 16)}, "32-d transform"),
    ("transform.safetensors", {"mean": torch.zeros(32)}, "32-d transform"),
])
def test_foreign_safetensors(copy, name, tensors, match):
    if tensors == "width64":  # the weights of another (wider) model, a valid file
        from idream.core.model import Denoiser, ModelConfig

        cfg = json.loads((copy / "config.json").read_text())["model"]
        wider = Denoiser(ModelConfig.from_dict({**cfg, "width": 64, "n_items": 0}))
        tensors = {k: v.contiguous() for k, v in wider.state_dict().items()}
    save_file(tensors, str(copy / name))
    refused(copy, "foreign safetensors", match=match)


@pytest.mark.parametrize("name", [*TRAINED_FILES, "config.json"])
def test_missing_file(copy, name):
    (copy / name).unlink()
    refused(copy, "missing file", match=name if name != "config.json" else "no config.json")


# -- config.json -----------------------------------------------------------------------------

def edit_config(path: Path, fn) -> None:
    cfg = json.loads((path / "config.json").read_text())
    fn(cfg)
    (path / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("key", ["format", "model", "diffusion", "transform", "text", "data"])
def test_config_missing_key(copy, key):
    edit_config(copy, lambda c: c.pop(key))
    refused(copy, "config missing key", match=key)


@pytest.mark.parametrize("section, key", [("text", "backend"), ("text", "dim"), ("data", "dataset"),
                                          ("model", "width"), ("diffusion", "T")])
def test_config_missing_nested_key(copy, section, key):
    edit_config(copy, lambda c: c[section].pop(key))
    refused(copy, "config missing key")


@pytest.mark.parametrize("where", [None, "model", "diffusion"])
def test_config_unknown_key(copy, where):
    edit_config(copy, lambda c: (c if where is None else c[where]).update(mystery=1))
    msg = refused(copy, "config unknown key", match="mystery")
    assert "unknown" in msg


@pytest.mark.parametrize("content", [b"", b"{", b"\xff\xfe\x00garbage", b"[1, 2]", b'"text"', b"null",
                                     "folder"])
def test_config_not_an_object(copy, content):
    if content == "folder":
        (copy / "config.json").unlink()
        (copy / "config.json").mkdir()
    else:
        (copy / "config.json").write_bytes(content)
    refused(copy, "config not JSON", match="config.json")


@pytest.mark.parametrize("section, key, value", [
    ("model", "width", "wide"), ("model", "width", -32), ("model", "depth", 10**9),
    ("model", "heads", 5), ("model", "dropout", float("nan")), ("model", "n_items", 10**12),
    ("diffusion", "T", 10**12), ("diffusion", "T", 0), ("diffusion", "schedule", "zigzag"),
    ("diffusion", "beta_end", 2.0), ("text", "dim", "384"), ("text", "backend", 7),
    ("guidance", "w", "strong"), ("guidance", "rho", 1e9), ("guidance", "rho_max", 2.0),
    ("guidance", "rho_max", "top"), ("new_items", "a", "high"),
    ("new_items", "b", float("inf")), ("new_items", "d", 1.0), ("new_items", "c", "high"),
    (None, "new_items", [1.5, -1.6]), (None, "model", [1, 2]),
    (None, "text", "minilm"), (None, "transform", ["whiten"]), (None, "transform", "rotate"),
])
def test_config_bad_value(copy, section, key, value):
    edit_config(copy, lambda c: (c if section is None else c.setdefault(section, {})).update({key: value}))
    refused(copy, "config bad value")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**15, 10**15) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def key_paths(obj, prefix=()):
    """Every key path of nested dicts: ("model",), ("model", "width"), …"""
    for k, v in obj.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from key_paths(v, prefix + (k,))


@settings(max_examples=examples(60), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_config_edits_load_or_refuse_clearly(ckpt, tmp_path_factory, data):
    """Any edit of one config.json entry (delete it, or set it to any JSON value): the checkpoint
    either loads and still recommends (finite scores, or a ValueError), or is refused clearly."""
    path = tmp_path_factory.getbasetemp() / "config-fuzz"
    if not path.exists():
        shutil.copytree(ckpt, path)
    cfg = json.loads((ckpt / "config.json").read_text())
    where = data.draw(st.sampled_from(sorted(key_paths(cfg))), label="key")
    parent = cfg
    for k in where[:-1]:
        parent = parent[k]
    if data.draw(st.booleans(), label="delete"):
        del parent[where[-1]]
    else:
        parent[where[-1]] = data.draw(JSON_VALUES, label="value")
    (path / "config.json").write_text(json.dumps(cfg))
    FAULTS["config edit (generated)"] += 1
    try:
        rec = load_checkpoint(path)
    except CheckpointError as e:
        assert str(e) and "\n" not in str(e)
        return
    try:
        out = rec.recommend([100, 101], intention="a scary film", k=3)
    except ValueError as e:
        assert str(e)
        return
    assert all(np.isfinite(r["score"]) for r in out.items)


# -- text models ----------------------------------------------------------------------------

def test_checkpoint_from_another_text_model(copy):
    msg = refused(copy, "other text model", text_model="hash:64", match="hash:32")
    assert "--tem hash:32" in msg or "retrain" in msg
    refused(copy, "other descriptions", descriptions="llm", match="template")
    # config.json edited to claim another text model of another size: the dimension check refuses
    edit_config(copy, lambda c: c["text"].update(backend="hash:64", name="hash-bow-v1:64", dim=64))
    refused(copy, "other text model", match="text dimension 64")


def test_text_model_giving_other_vectors_is_a_clear_error(copy):
    """config.json names a text model whose vectors have another size: intentions say so."""
    FAULTS["other text model"] += 1
    edit_config(copy, lambda c: c["text"].update(backend="hash:64"))
    rec = load_checkpoint(copy)
    with pytest.raises(ValueError, match="64-d vectors but the checkpoint expects 32-d"):
        rec.recommend([100], intention="something scary")
    assert rec.recommend([100], k=3).items  # the history alone still works


# -- embedding caches ------------------------------------------------------------------------

TEXTS = [f"Film number {i}, a {g} story." for i, g in enumerate(["sad", "funny", "scary"] * 4)]


class Counting(HashingBackend):
    def __init__(self, dim=16):
        super().__init__(dim)
        self.calls = 0

    def encode(self, texts, **kw):
        self.calls += 1
        return super().encode(texts, **kw)


def _corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(1).bytes(len(data)))
    elif how == "pickle":
        path.write_bytes(pickle.dumps(np.zeros((12, 16), np.float32)))
    elif how == "no tensor":
        from safetensors.numpy import save_file as save_np
        save_np({"other": np.zeros((12, 16), np.float32)}, str(path),
                metadata=_meta_of(path, data))
    elif how == "wrong shape":
        from safetensors.numpy import save_file as save_np
        save_np({"embeddings": np.zeros((11, 16), np.float32)}, str(path), metadata=_meta_of(path, data))
    elif how == "wrong dtype":
        from safetensors.numpy import save_file as save_np
        save_np({"embeddings": np.zeros((12, 16), np.float64)}, str(path), metadata=_meta_of(path, data))


def _meta_of(path: Path, data: bytes) -> dict:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n])["__metadata__"]


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage", "pickle", "no tensor", "wrong shape",
                                 "wrong dtype"])
def test_corrupt_cache_is_rebuilt(tmp_path, how, caplog):
    path = tmp_path / "emb.safetensors"
    b = Counting()
    fresh = embed_texts(TEXTS, b, path, progress=False)
    _corrupt(path, how)
    FAULTS["corrupt cache"] += 1
    with caplog.at_level(logging.WARNING, logger="idream.text.cache"):
        again = embed_texts(TEXTS, b, path, progress=False)
    assert b.calls == 2 and np.array_equal(again, fresh)
    assert any("recomputing" in r.message for r in caplog.records)
    third = embed_texts(TEXTS, b, path, progress=False)  # the rebuilt cache is used
    assert b.calls == 2 and np.array_equal(third, fresh)


@pytest.mark.parametrize("change", ["texts", "order", "backend", "dim"])
def test_stale_cache_is_rebuilt(tmp_path, change):
    path = tmp_path / "emb.safetensors"
    embed_texts(TEXTS, Counting(16), path, progress=False)
    FAULTS["stale cache"] += 1
    texts, b = list(TEXTS), Counting(16)
    if change == "texts":
        texts[3] = "A different description."
    elif change == "order":
        texts = texts[::-1]
    elif change == "backend":
        b.name = "another-model"
    else:
        b = Counting(24)
    out = embed_texts(texts, b, path, progress=False)
    assert b.calls == 1 and out.shape == (len(texts), b.dim)
    assert np.array_equal(out, b.encode(texts))


def test_corrupt_catalog_cache_rebuilt_by_training_path(synthetic_dir, tmp_path):
    """The catalog cache as training reads it (idream.data.catalog): garbage in, correct vectors out."""
    from idream.data.catalog import item_embeddings
    from idream.data.datasets import load_dataset

    ds = load_dataset(str(synthetic_dir))
    b = HashingBackend(32)
    fresh = item_embeddings(ds, b, cache_dir=tmp_path, progress=False)
    (cache,) = (tmp_path / "embeddings").glob("*.safetensors")
    cache.write_bytes(b"\x00" * 100)
    FAULTS["corrupt cache"] += 1
    assert np.array_equal(item_embeddings(ds, b, cache_dir=tmp_path, progress=False), fresh)


def test_corrupt_umap_coordinates_are_ignored(tmp_path):
    from demo.projection import FORMAT, load_coords

    path = tmp_path / "umap.safetensors"
    for content in (b"", b"\x00" * 64, b"not safetensors at all"):
        FAULTS["corrupt cache"] += 1
        path.write_bytes(content)
        coords, why = load_coords(path, "fp")
        assert coords is None and why
    from safetensors.numpy import save_file as save_np

    FAULTS["corrupt cache"] += 1
    save_np({"raw": np.zeros((3, 2), np.float32), "whitened": np.zeros((3, 2), np.float32)}, str(path),
            metadata={"format": FORMAT, "fingerprint": "fp", "params": "{not json"})
    coords, why = load_coords(path, "fp")
    assert coords is None and why


# -- atomic writes -------------------------------------------------------------------------

def _fail_replace(monkeypatch):
    def boom(*a, **kw):
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(os, "replace", boom)


def test_checkpoint_writes_are_atomic(ckpt, copy, monkeypatch):
    rec = load_checkpoint(copy)
    before = {f.name: f.read_bytes() for f in copy.iterdir()}
    _fail_replace(monkeypatch)
    FAULTS["crash while writing"] += 1
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(rec, copy, rec.embeddings)
    monkeypatch.undo()
    assert {f.name: f.read_bytes() for f in copy.iterdir()} == before  # no half file, no temp left


def test_model_card_write_is_atomic(copy, monkeypatch):
    from idream.evaluation.card import write_model_card

    card = copy / "README.md"
    card.write_text("the previous card\n")
    _fail_replace(monkeypatch)
    FAULTS["crash while writing"] += 1
    with pytest.raises(OSError, match="simulated"):
        write_model_card(copy)
    monkeypatch.undo()
    assert card.read_text() == "the previous card\n"
    assert sorted(f.name for f in copy.iterdir()) == sorted([*TRAINED_FILES, "config.json", "README.md"])
    write_model_card(copy)
    assert "# iDream checkpoint" in card.read_text()


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "emb.safetensors"
    old = embed_texts(TEXTS, Counting(16), path, progress=False)
    _fail_replace(monkeypatch)
    FAULTS["crash while writing"] += 1
    with pytest.raises(OSError, match="simulated"):
        embed_texts(TEXTS[::-1], Counting(16), path, progress=False)
    monkeypatch.undo()
    assert [f.name for f in tmp_path.iterdir()] == ["emb.safetensors"]
    assert np.array_equal(embed_texts(TEXTS, Counting(16), path, progress=False), old)


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def half(tmp):
        Path(tmp).write_text("half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, half)
    assert target.read_text() == "old" and [f.name for f in tmp_path.iterdir()] == ["f.txt"]
    atomic_write(target, lambda tmp: Path(tmp).write_text("new"))
    assert target.read_text() == "new"
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


# -- no pickle -------------------------------------------------------------------------------

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
UNSAFE_CALLS = {"load", "loads", "read_pickle", "load_state"}


def _sources():
    files = [*sorted((ROOT / "idream").rglob("*.py")), *sorted((ROOT / "demo").rglob("*.py")),
             ROOT / "app.py"]
    return [f for f in files if f.exists()]


def test_no_pickle_in_the_source():
    """No module that unpickles is imported, and no torch.load / np.load / read_pickle is called."""
    problems = []
    for f in _sources():
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
                unsafe = any(a.name in UNSAFE_CALLS for a in node.names)
                if names[0] in ("torch", "numpy", "pandas") and unsafe:
                    names.append("pickle")
            elif isinstance(node, ast.Attribute) and node.attr in UNSAFE_CALLS:
                owner = node.value.id if isinstance(node.value, ast.Name) else ""
                names = ["pickle"] if owner in ("torch", "np", "numpy", "pd", "pandas") else []
            elif isinstance(node, ast.keyword) and node.arg in ("allow_pickle", "weights_only"):
                names = ["pickle"]
            else:
                continue
            if set(names) & UNSAFE_MODULES:
                problems.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert not problems, f"pickle-capable loading at {problems}"
    assert len(_sources()) > 20


def test_loading_and_recommending_never_unpickle(copy, monkeypatch):
    """At run time too: with every unpickler disabled, a checkpoint loads and answers."""
    def refuse(*a, **kw):
        raise AssertionError("something tried to unpickle")

    import numpy
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(numpy, "load", refuse)
    recommends(load_checkpoint(copy))


@pytest.mark.parametrize("key, value", [("encoder", ""), ("encoder", "rnn"), ("denoiser", ""),
                                        ("denoiser", "adaln")])
def test_a_denoiser_the_config_cannot_describe_is_refused_clearly(copy, key, value):
    """The denoiser's own checks (an unknown encoder or kind; adaLN reads the causal encoder's
    state, and this checkpoint's encoder is in-context) refuse as the file checks do."""
    edit_config(copy, lambda c: c["model"].update({key: value}))
    refused(copy, "config edit", match="config.json")


@pytest.mark.parametrize("edit, patch", [
    (lambda c: c["model"].pop("encoder"), "incontext-encoder.patch"),  # made before the causal encoder
    (lambda c: c["model"].update(encoder="incontext"), "incontext-encoder.patch"),
    (lambda c: c["guidance"].pop("mode"), "learned-guidance.patch"),  # the paper's learned ρ
], ids=["no-encoder", "incontext", "learned-rho"])
def test_a_folder_of_a_retired_form_is_refused_with_its_patch(copy, edit, patch):
    edit_config(copy, edit)
    refused(copy, "retired form", match=patch)
