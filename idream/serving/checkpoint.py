"""Checkpoint folders: model.safetensors, transform.safetensors, items.safetensors, config.json.

No pickles anywhere; every write goes to a temporary file first and is renamed into place, so a
crash never leaves half a checkpoint. Loading checks everything it can and says what to do.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from idream.data.datasets import DatasetError, load_dataset
from idream.core.diffusion import SCHEDULES, Diffusion, DiffusionConfig
from idream.files import atomic_write
from idream.core.model import Denoiser, ItemTable, ModelConfig
from idream.core.newitems import NewItemRule
from idream.serving.request import MAX_GUIDANCE
from idream.core.steer import STEER_RANGE
from idream.core.transform import KINDS, Transform
from idream.errors import InputError

FORMAT = "idream-checkpoint-v1"
CONFIG_KEYS = {"format", "idream_version", "model", "diffusion", "transform", "text", "data",
               "train", "guidance", "train_log", "cache_dir", "items_fingerprint", "new_items"}
MAX_T = 100_000  # sanity bounds for a hand-edited config.json (the schedule is a (T,) array)
MAX_DEPTH = 1_000


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
    except OSError as e:
        raise CheckpointError(f"{file} cannot be read ({e.strerror or e}); restore it from the "
                              "original checkpoint or retrain") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{file} must hold a JSON object; restore it from the original "
                              "checkpoint or retrain")
    unknown = set(cfg) - CONFIG_KEYS
    if unknown:
        raise CheckpointError(f"{file} has unknown keys {sorted(unknown)}: it was written by another "
                              "version of iDream; upgrade iDream or retrain the checkpoint")
    missing = {"format", "model", "diffusion", "transform", "text", "data"} - set(cfg)
    if missing:
        raise CheckpointError(f"{file} lacks {sorted(missing)}: the checkpoint is incomplete; retrain it")
    if cfg["format"] != FORMAT:
        raise CheckpointError(f"{file} has format {cfg['format']!r}, expected {FORMAT!r}; retrain it")
    problem = _config_problem(cfg)
    if problem:
        raise _config_error(file, problem)
    return cfg


def _config_error(file, problem: str, mend: str = "restore config.json from the original checkpoint "
                                                   "or retrain") -> CheckpointError:
    """The refusal of a config.json, with a way out unless the problem names one already."""
    return CheckpointError(f"{file}: {problem}" + ("" if "retrain" in problem else f"; {mend}"))


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _config_problem(cfg: dict) -> str | None:
    """What is wrong with the sections of a config.json read from disk (None: nothing seen)."""
    for key in ("model", "diffusion", "text", "data"):
        if not isinstance(cfg[key], dict):
            return f"{key!r} must be a JSON object, not {type(cfg[key]).__name__}"
    for key in ("guidance", "train", "train_log", "new_items"):
        if key in cfg and not isinstance(cfg[key], dict):
            return f"{key!r} must be a JSON object, not {type(cfg[key]).__name__}"
    if not isinstance(cfg["transform"], str):
        return f"'transform' must be a string, not {type(cfg['transform']).__name__}"
    t, d = cfg["text"], cfg["data"]
    if not isinstance(t.get("backend"), str) or not t["backend"].strip():
        return "text.backend (the text model, e.g. 'minilm') is missing or not a string"
    if not isinstance(t.get("dim"), int) or isinstance(t.get("dim"), bool) or t["dim"] < 1:
        return "text.dim (the text vectors' dimension) is missing or not a positive integer"
    for key in ("name", "descriptions"):
        if key in t and not isinstance(t[key], str):
            return f"text.{key} must be a string"
    if not isinstance(d.get("dataset"), str) or not d["dataset"].strip():
        return "data.dataset (the catalog the model was trained on) is missing or not a string"
    g = cfg.get("guidance", {})
    for key, v in g.items():
        if key in ("w", "rho", "kappa") and not (_is_number(v) and abs(v) <= MAX_GUIDANCE):
            return f"guidance.{key} = {v!r} is not a number between -{MAX_GUIDANCE:g} and {MAX_GUIDANCE:g}"
    if g.get("rho", 0) and g.get("mode") != "turn":  # (a model without intentions keeps ρ = 0, no mode)
        return ("guidance: made with the paper's learned ρ (a weight on the learned guidance term alone), "
                "which this version no longer serves; retrain the model, or apply "
                "results/experiments/learned-guidance.patch")
    n = cfg.get("new_items", {})
    unknown = set(n) - {f.name for f in fields(NewItemRule)}  # the rule's own fields, no list beside it
    if unknown:
        return f"new_items has unknown keys {sorted(unknown)}"
    for key in ("a", "b", "c"):
        if key in n and not (_is_number(n[key]) and abs(n[key]) <= MAX_GUIDANCE):
            return f"new_items.{key} = {n[key]!r} is not a number between -{MAX_GUIDANCE:g} and {MAX_GUIDANCE:g}"
    lo, hi = STEER_RANGE
    if "rho" in g and not lo <= g["rho"] <= hi:
        return f"guidance.rho = {g['rho']!r}: it must be between {lo:g} and {hi:g}"
    if "rho_max" in g and not (_is_number(g["rho_max"])
                               and g.get("rho", 0) <= g["rho_max"] <= hi and g["rho_max"] > lo):
        return (f"guidance.rho_max = {g['rho_max']!r}: the slider's top, between the "
                f"default ρ and {hi:g}")
    return None


def _dataclass_problem(obj) -> str | None:
    """Fields of a config dataclass read from JSON that have the wrong type or sign."""
    for f in fields(obj):
        v, want = getattr(obj, f.name), type(f.default)
        if want is float:
            ok = _is_number(v) and v >= 0
        elif want is int:
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
        else:
            ok = isinstance(v, want)
        if not ok:
            return f"{f.name} = {v!r} is not a {'non-negative ' if want in (int, float) else ''}{want.__name__}"
    return None


def _model_problem(m: ModelConfig, d: DiffusionConfig, cfg: dict) -> str | None:
    for section, obj in (("model", m), ("diffusion", d)):  # a default would silently change it
        missing = [f.name for f in fields(obj) if f.name not in cfg[section]]
        if missing:
            return f"{section} lacks {', '.join(missing)}"
    problem = _dataclass_problem(m) or _dataclass_problem(d)
    if problem:
        return problem
    if min(m.dim, m.width, m.depth, m.heads, m.history_len) < 1:
        return "model dim, width, depth, heads and history_len must be at least 1"
    if m.depth > MAX_DEPTH or m.width % m.heads or not (m.dropout < 1 and m.mlp_ratio > 0):
        return (f"model depth {m.depth}, width {m.width}, heads {m.heads}, dropout {m.dropout}, "
                f"mlp_ratio {m.mlp_ratio} do not describe a denoiser")
    if not 1 <= d.T <= MAX_T or d.schedule not in SCHEDULES or not 0 < d.beta_start <= d.beta_end < 1:
        return f"diffusion T={d.T}, schedule {d.schedule!r}, β {d.beta_start}…{d.beta_end} is not a schedule"
    return None


def check_text_request(cfg: dict, path, text_model: str | None = None,
                       descriptions: str | None = None) -> None:
    """Refuse a requested description source or text model other than the checkpoint's own."""
    from idream.data.catalog import DESCRIPTION_SOURCES

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
        from idream.text import get_backend

        try:
            name = get_backend(text_model).name
        except (RuntimeError, ValueError):
            name = None
        if name != t.get("name"):
            raise CheckpointError(f"{path} was trained with the text model {t.get('backend')} "
                                  f"({t.get('dim')}-d), not {text_model.strip()}: pass --tem "
                                  f"{t.get('backend')} (or leave it out), or retrain with --tem "
                                  f"{text_model.strip()}")


def read_checkpoint(path: str | Path, dataset=None, *, text_model: str | None = None,
                    descriptions: str | None = None) -> dict:
    """The parts of a Recommender read from a folder (model, diffusion, items, transform, dataset,
    config, embeddings), refusing any mismatch with a message. Recommender.load builds from them.

    path: a folder (Recommender.load first fetches a Hub id into one: idream.serving.hub).
    text_model / descriptions: what the caller asked for (None: whatever the checkpoint has).
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint folder at {path}; train one with "
                              f"`python -m idream train --dataset ml-100k --out {path}`")
    cfg = read_config(path)
    check_text_request(cfg, path, text_model, descriptions)
    mcfg, dcfg = _model_configs(path, cfg)
    E, transform, state = _tensors(path, cfg, mcfg)
    dataset = _dataset(cfg, E, dataset)
    model, residual = _denoiser(path, mcfg, state, E.shape[0])
    Z = torch.from_numpy(transform(E.numpy()))
    table = ItemTable(Z, mcfg.n_items, mcfg.residual_scale)
    if mcfg.n_items:
        table.residual.data.copy_(residual)
    return {"model": model, "diffusion": Diffusion(dcfg), "table": table, "transform": transform,
            "dataset": dataset, "config": cfg, "embeddings": E.numpy()}


def _model_configs(path: Path, cfg: dict) -> tuple[ModelConfig, DiffusionConfig]:
    """config.json's model and diffusion sections, checked, and the transform and text dimension."""
    try:
        mcfg = ModelConfig.from_dict(cfg["model"])
        dcfg = DiffusionConfig.from_dict(cfg["diffusion"])
    except (TypeError, ValueError) as e:
        raise _config_error(f"{path}/config.json", str(e), "retrain the checkpoint with this version") from None
    problem = _model_problem(mcfg, dcfg, cfg)
    if problem:
        raise _config_error(f"{path}/config.json", problem)
    if cfg["transform"] not in KINDS:
        raise CheckpointError(f"{path}/config.json: unknown transform {cfg['transform']!r} (one of "
                              f"{', '.join(KINDS)}); restore config.json or retrain")
    text_dim = int(cfg["text"].get("dim", -1))
    if text_dim != mcfg.dim:
        raise CheckpointError(f"{path}/config.json: text dimension {text_dim} does not match the "
                              f"model's {mcfg.dim}; the config was edited or mixed up; retrain")
    return mcfg, dcfg


def _tensors(path: Path, cfg: dict, mcfg: ModelConfig) -> tuple[torch.Tensor, Transform, dict]:
    """The raw item vectors (N, D), the transform and the model's state, their shapes checked."""
    text_dim = int(cfg["text"].get("dim", -1))
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
    D = mcfg.dim
    if ("mean" not in tr_t or "matrix" not in tr_t or tuple(tr_t["mean"].shape) != (text_dim,)
            or tuple(tr_t["matrix"].shape) != (text_dim, D)):
        raise CheckpointError(f"{path}/transform.safetensors does not hold a {text_dim}-d "
                              f"transform to the model's {D}-d space (mean ({text_dim},), "
                              f"matrix ({text_dim}, {D})); retrain the checkpoint")
    return E, Transform.from_tensors(cfg["transform"], tr_t), state


def _dataset(cfg: dict, E: torch.Tensor, dataset):
    """The catalog (the checkpoint's own unless given), refused where it is not the one trained on."""
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
