"""Checkpoint folders: model.safetensors, transform.safetensors, items.safetensors, config.json.

No pickles anywhere; every write goes to a temporary file first and is renamed into place, so a
crash never leaves half a checkpoint. Loading checks everything it can and says what to do.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .data import DatasetError, load_dataset
from .diffusion import Diffusion, DiffusionConfig
from .model import Denoiser, ItemTable, ModelConfig
from .transform import KINDS, Transform

FORMAT = "idream-checkpoint-v1"
CONFIG_KEYS = {"format", "idream_version", "model", "diffusion", "transform", "text", "data",
               "train", "guidance", "train_log", "cache_dir", "items_fingerprint"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with a message that says what to do."""


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) then rename tmp_path onto path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj) -> None:
    def w(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, default=_json_default)
            f.write("\n")
    atomic_write(path, w)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (tuple, set)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def items_fingerprint(dataset) -> str:
    import hashlib
    ids = "\x1f".join(str(i) for i in dataset.items["item_id"].tolist())
    return hashlib.sha256(ids.encode()).hexdigest()[:16]


def save_checkpoint(rec, path: str | Path, E: np.ndarray) -> Path:
    """Write the folder; E is the raw item matrix (N, D) the item vectors were built from."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in rec.model.state_dict().items()}
    if rec.items.residual is not None:
        state["items.residual"] = rec.items.residual.detach().contiguous()
    atomic_write(path / "model.safetensors", lambda tmp: save_file(state, tmp))
    atomic_write(path / "transform.safetensors",
                 lambda tmp: save_file(rec.transform.tensors(), tmp, metadata={"kind": rec.transform.kind}))
    atomic_write(path / "items.safetensors",
                 lambda tmp: save_file({"embeddings": torch.from_numpy(np.ascontiguousarray(E, np.float32))}, tmp))
    cfg = {k: v for k, v in rec.config.items() if k != "cache_dir"}
    cfg["items_fingerprint"] = items_fingerprint(rec.dataset)
    write_json(path / "config.json", cfg)
    return path


def _load_tensors(file: Path, what: str) -> dict:
    if not file.exists():
        raise CheckpointError(f"{file} is missing: the checkpoint is incomplete; retrain it with "
                              "`python -m idream train` or copy the whole folder again")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{file} is not a readable safetensors file ({e}); {what}") from None


def read_config(path: Path) -> dict:
    file = Path(path) / "config.json"
    if not file.exists():
        raise CheckpointError(f"{path} is not an iDream checkpoint (no config.json); train one with "
                              "`python -m idream train --dataset ml-100k --out DIR`")
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file} is not valid JSON ({e}); restore it from the original "
                              "checkpoint or retrain") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{file} must hold a JSON object")
    unknown = set(cfg) - CONFIG_KEYS
    if unknown:
        raise CheckpointError(f"{file} has unknown keys {sorted(unknown)}: it was written by another "
                              "version of iDream; upgrade iDream or retrain the checkpoint")
    missing = {"format", "model", "diffusion", "transform", "text", "data"} - set(cfg)
    if missing:
        raise CheckpointError(f"{file} lacks {sorted(missing)}: the checkpoint is incomplete; retrain it")
    if cfg["format"] != FORMAT:
        raise CheckpointError(f"{file} has format {cfg['format']!r}, expected {FORMAT!r}; retrain it")
    return cfg


def check_text_request(cfg: dict, path, text_model: str | None = None,
                       descriptions: str | None = None) -> None:
    """Refuse a requested description source or text model other than the checkpoint's own."""
    from .catalog import DESCRIPTION_SOURCES

    t = cfg["text"]
    have = t.get("descriptions", "template")
    if have not in DESCRIPTION_SOURCES:
        raise CheckpointError(f"{path}/config.json: unknown description source {have!r}; "
                              "upgrade iDream or retrain")
    if descriptions is not None and descriptions != have:
        raise CheckpointError(f"{path} was trained on {have} descriptions, not {descriptions}: "
                              f"pass --descriptions {have} (or leave it out), or retrain with "
                              f"--descriptions {descriptions}")
    if text_model is not None and text_model.strip() not in (t.get("backend"), t.get("name")):
        from .text import get_backend

        try:
            name = get_backend(text_model).name
        except (RuntimeError, ValueError):
            name = None
        if name != t.get("name"):
            raise CheckpointError(f"{path} was trained with the text model {t.get('backend')} "
                                  f"({t.get('dim')}-d), not {text_model.strip()}: pass --tem "
                                  f"{t.get('backend')} (or leave it out), or retrain with --tem "
                                  f"{text_model.strip()}")


def load_checkpoint(path: str | Path, dataset=None, *, text_model: str | None = None,
                    descriptions: str | None = None):
    """Rebuild a Recommender from a folder, refusing any mismatch with a message.

    text_model / descriptions: what the caller asked for (None: whatever the checkpoint has).
    """
    from .recommender import Recommender

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint folder at {path}; train one with "
                              f"`python -m idream train --dataset ml-100k --out {path}`")
    cfg = read_config(path)
    check_text_request(cfg, path, text_model, descriptions)
    try:
        mcfg = ModelConfig.from_dict(cfg["model"])
        dcfg = DiffusionConfig.from_dict(cfg["diffusion"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}/config.json: {e}; retrain the checkpoint with this version") from None
    if cfg["transform"] not in KINDS:
        raise CheckpointError(f"{path}/config.json: unknown transform {cfg['transform']!r}")
    text_dim = int(cfg["text"].get("dim", -1))
    if text_dim != mcfg.dim:
        raise CheckpointError(f"{path}/config.json: text dimension {text_dim} does not match the "
                              f"model's {mcfg.dim}; the config was edited or mixed up; retrain")

    E = _load_tensors(path / "items.safetensors", "retrain the checkpoint").get("embeddings")
    tr_t = _load_tensors(path / "transform.safetensors", "retrain the checkpoint")
    state = _load_tensors(path / "model.safetensors", "retrain the checkpoint")
    if E is None or E.ndim != 2 or E.shape[1] != mcfg.dim:
        raise CheckpointError(f"{path}/items.safetensors holds item vectors of shape "
                              f"{None if E is None else tuple(E.shape)}, but the model expects "
                              f"(N, {mcfg.dim}): the files come from different checkpoints; retrain")
    D = mcfg.dim
    if ("mean" not in tr_t or "matrix" not in tr_t or tuple(tr_t["mean"].shape) != (D,)
            or tuple(tr_t["matrix"].shape) != (D, D)):
        raise CheckpointError(f"{path}/transform.safetensors does not hold a {D}-d transform "
                              "(mean (D,), matrix (D, D)); retrain the checkpoint")
    transform = Transform.from_tensors(cfg["transform"], tr_t)

    if dataset is None:
        try:
            dataset = load_dataset(cfg["data"]["dataset"])
        except DatasetError as e:
            raise CheckpointError(f"the checkpoint's dataset cannot be read: {e}") from None
    if dataset.n_items != E.shape[0] or ("items_fingerprint" in cfg
                                         and cfg["items_fingerprint"] != items_fingerprint(dataset)):
        raise CheckpointError(f"the catalog of {dataset.name!r} ({dataset.n_items} items) is not the "
                              f"one this checkpoint was trained on ({E.shape[0]} items); point "
                              "--dataset at the original data or retrain")

    model = Denoiser(mcfg)
    residual = state.pop("items.residual", None)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(f"{path}/model.safetensors does not fit config.json ({first}); the "
                              "files come from different checkpoints; retrain") from None
    Z = torch.from_numpy(transform(E.numpy()))
    table = ItemTable(Z, mcfg.n_items, mcfg.residual_scale)
    if mcfg.n_items:
        if residual is None or tuple(residual.shape) != (mcfg.n_items, D):
            raise CheckpointError(f"{path}/model.safetensors lacks the item residual of shape "
                                  f"({mcfg.n_items}, {D}); retrain")
        table.residual.data.copy_(residual)
    return Recommender(model, Diffusion(dcfg), table, transform, dataset, cfg, embeddings=E.numpy())
