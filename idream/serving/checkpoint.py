"""Checkpoint folders: model.safetensors, transform.safetensors, items.safetensors, config.json.

No pickles anywhere; every write goes to a temporary file first and is renamed into place, so a
crash never leaves half a checkpoint. Loading checks everything it can and says what to do.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from idream.data.datasets import DatasetError, load_dataset
from idream.core.diffusion import Diffusion
from idream.files import atomic_write
from idream.core.model import Denoiser, ItemTable, ModelConfig
from idream.core.transform import Transform
from idream.errors import InputError
from idream.serving.checkpoint_config import CheckpointConfig


class CheckpointError(InputError):
    """A checkpoint that cannot be used, with a message that says what to do."""


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
    residual = rec.table.residual  # (N, D), None for pure text vectors
    if residual is not None:
        state["items.residual"] = residual.detach().contiguous()
    atomic_write(path / "model.safetensors", lambda tmp: save_file(state, tmp))
    atomic_write(path / "transform.safetensors",
                 lambda tmp: save_file(rec.transform.tensors(), tmp, metadata={"kind": rec.transform.kind}))
    atomic_write(path / "items.safetensors",
                 lambda tmp: save_file({"embeddings": torch.from_numpy(np.ascontiguousarray(E, np.float32))}, tmp))
    cfg = {k: v for k, v in rec.config.items() if k != "cache_dir"}
    cfg["items_fingerprint"] = items_fingerprint(rec.dataset)
    write_json(path / "config.json", cfg)
    for name in ("model.safetensors", "transform.safetensors", "items.safetensors", "config.json"):
        for tmp in path.glob(f".{name}.*.tmp"):  # left by a run killed while it wrote that file
            tmp.unlink(missing_ok=True)
    return path


def _load_tensors(file: Path, what: str) -> dict:
    if not file.exists():
        raise CheckpointError(f"{file} is missing: the checkpoint is incomplete; retrain it with "
                              "`python -m idream train` or copy the whole folder again")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{file} is not a readable safetensors file ({e}); {what}") from None


def read_config(path: Path) -> CheckpointConfig:
    """config.json of a checkpoint folder, typed and checked (CheckpointError says what to do)."""
    file = Path(path) / "config.json"
    if not file.exists():
        raise CheckpointError(f"{path} is not an iDream checkpoint (no config.json); train one with "
                              "`python -m idream train --dataset ml-100k --out DIR`")
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file} is not valid JSON ({e}); restore it from the original "
                              "checkpoint or retrain") from None
    except OSError as e:
        raise CheckpointError(f"{file} cannot be read ({e.strerror or e}); restore it from the "
                              "original checkpoint or retrain") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{file} must hold a JSON object; restore it from the original "
                              "checkpoint or retrain")
    try:
        return CheckpointConfig.from_dict(cfg)
    except ValueError as e:
        raise _config_error(file, str(e)) from None


def _config_error(file, problem: str) -> CheckpointError:
    """The refusal of a config.json, with a way out unless the problem names one already."""
    mend = "" if "retrain" in problem else "; restore config.json from the original checkpoint or retrain"
    return CheckpointError(f"{file}: {problem}{mend}")


def check_text_request(cfg: CheckpointConfig, path, text_model: str | None = None,
                       descriptions: str | None = None) -> None:
    """Refuse a requested description source or text model other than the checkpoint's own."""
    t = cfg.text
    if descriptions is not None and descriptions != t.descriptions:
        raise CheckpointError(f"{path} was trained on {t.descriptions} descriptions, not {descriptions}: "
                              f"pass --descriptions {t.descriptions} (or leave it out), or retrain with "
                              f"--descriptions {descriptions}")
    if text_model is not None and text_model.strip() not in (t.backend, t.name):
        from idream.text import get_backend

        try:
            name = get_backend(text_model).name
        except (RuntimeError, ValueError):
            name = None
        if name != t.name:
            raise CheckpointError(f"{path} was trained with the text model {t.backend} ({t.dim}-d), not "
                                  f"{text_model.strip()}: pass --tem {t.backend} (or leave it out), or "
                                  f"retrain with --tem {text_model.strip()}")


def read_checkpoint(path: str | Path, dataset=None, *, text_model: str | None = None,
                    descriptions: str | None = None) -> dict:
    """The parts of a Recommender read from a folder (model, diffusion, items, transform, dataset,
    config, embeddings), refusing any mismatch with a message. Recommender.load builds from them.

    path: a folder (Recommender.load first fetches a Hub id into one: idream.serving.hub).
    text_model / descriptions: what the caller asked for (None: whatever the checkpoint has).
    The config comes back as the JSON object it was read from (CheckpointConfig.to_dict), the form
    training and the commands that choose defaults edit and save.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint folder at {path}; train one with "
                              f"`python -m idream train --dataset ml-100k --out {path}`")
    cfg = read_config(path)
    check_text_request(cfg, path, text_model, descriptions)
    E, transform, state = _tensors(path, cfg)
    dataset = _dataset(path, cfg, E, dataset)
    model, residual = _denoiser(path, cfg.model, state, E.shape[0])
    Z = torch.from_numpy(transform(E.numpy()))
    table = ItemTable(Z, cfg.model.n_items, cfg.model.residual_scale)
    if cfg.model.n_items:
        table.residual.data.copy_(residual)
    return {"model": model, "diffusion": Diffusion(cfg.diffusion), "table": table, "transform": transform,
            "dataset": dataset, "config": cfg.to_dict(), "embeddings": E.numpy()}


def _tensors(path: Path, cfg: CheckpointConfig) -> tuple[torch.Tensor, Transform, dict]:
    """The raw item vectors (N, D), the transform and the model's state, their shapes checked."""
    text_dim = cfg.text.dim
    E = _load_tensors(path / "items.safetensors", "retrain the checkpoint").get("embeddings")
    tr_t = _load_tensors(path / "transform.safetensors", "retrain the checkpoint")
    state = _load_tensors(path / "model.safetensors", "retrain the checkpoint")
    if E is not None and E.ndim == 2 and E.shape[1] != text_dim:
        raise CheckpointError(f"{path}/config.json: text dimension {text_dim} does not match the "
                              f"{E.shape[1]}-d item vectors of items.safetensors; the config was "
                              "edited or mixed up; retrain")
    if E is None or E.ndim != 2:
        raise CheckpointError(f"{path}/items.safetensors holds item vectors of shape "
                              f"{None if E is None else tuple(E.shape)}, but the model expects "
                              f"(N, {text_dim}): the files come from different checkpoints; retrain")
    D = cfg.model.dim
    if ("mean" not in tr_t or "matrix" not in tr_t or tuple(tr_t["mean"].shape) != (text_dim,)
            or tuple(tr_t["matrix"].shape) != (text_dim, D)):
        raise CheckpointError(f"{path}/transform.safetensors does not hold a {text_dim}-d "
                              f"transform to the model's {D}-d space (mean ({text_dim},), "
                              f"matrix ({text_dim}, {D})); retrain the checkpoint")
    return E, Transform.from_tensors(cfg.transform, tr_t), state


def _dataset(path: Path, cfg: CheckpointConfig, E: torch.Tensor, dataset):
    """The catalog (the checkpoint's own unless given), refused where it is not the one trained on."""
    if dataset is None:
        try:
            dataset = load_dataset(cfg.data.dataset)
        except DatasetError as e:
            raise CheckpointError(f"the checkpoint's dataset cannot be read: {e}") from None
    if dataset.n_items != E.shape[0] or (cfg.items_fingerprint is not None
                                         and cfg.items_fingerprint != items_fingerprint(dataset)):
        raise CheckpointError(f"the catalog of {dataset.name!r} ({dataset.n_items} items) is not the "
                              f"one this checkpoint was trained on ({E.shape[0]} items); point "
                              "--dataset at the original data or retrain")
    if any(i >= dataset.n_items for i in cfg.data.cold_items):
        raise _config_error(path / "config.json",
                            f"data.cold_items names rows beyond the {dataset.n_items} items of the catalog")
    return dataset


def _denoiser(path: Path, mcfg: ModelConfig, state: dict, n_items: int) -> tuple[Denoiser, torch.Tensor | None]:
    """The denoiser with its weights, and the item residual; shapes checked on the meta device first."""
    D = mcfg.dim
    residual = state.pop("items.residual", None)
    if mcfg.n_items and (mcfg.n_items != n_items or residual is None
                         or tuple(residual.shape) != (mcfg.n_items, D)):
        raise CheckpointError(f"{path}/model.safetensors lacks the item residual of shape "
                              f"({mcfg.n_items}, {D}); retrain")
    try:
        with torch.device("meta"):  # shapes first: a config that does not fit allocates nothing
            expected = {k: tuple(v.shape) for k, v in Denoiser(mcfg).state_dict().items()}
    except ValueError as e:  # the denoiser's own checks (its encoder, its kind): the config was edited
        raise CheckpointError(f"{path}/config.json: {e}; restore config.json from the original "
                              "checkpoint or retrain") from None
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        diff = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
        first = diff[0]
        raise CheckpointError(f"{path}/model.safetensors does not fit config.json ({first}: "
                              f"{got.get(first, 'missing')} in the file, {expected.get(first, 'none')} "
                              "expected); the files come from different checkpoints; retrain")
    model = Denoiser(mcfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(f"{path}/model.safetensors does not fit config.json ({first}); the "
                              "files come from different checkpoints; retrain") from None
    return model, residual
