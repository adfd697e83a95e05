"""The state of an unfinished training run, written at the end of every epoch into OUT/train-state/
so that `train --resume` continues from the last completed epoch instead of from nothing.

Layout: state.json (the small things, and the name of the folder that holds the tensors) and
epoch-NNNN/*.safetensors. A save writes a new epoch folder, then replaces state.json in one rename,
then removes the older folders: a kill at any moment leaves state.json naming a complete folder.
No pickles: tensors in safetensors, everything else in JSON (docs/checkpoint-format.md).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from idream import __version__
from idream.serving.checkpoint import write_json
from idream.files import atomic_write
from idream.errors import InputError

STATE_DIR = "train-state"
FORMAT = "idream-train-state-v1"
PAUSE_ENV = "IDREAM_STATE_WRITE_PAUSE"  # seconds to wait before each file written: a test's window to kill mid-write
SAME_RESULT = {"threads"}  # settings that may differ on resume (they do not change what is computed)


class TrainStateError(InputError):
    """A state that cannot be resumed, with a message that says what to do."""


def state_dir(out) -> Path:
    return Path(out) / STATE_DIR


def _pause() -> None:
    s = os.environ.get(PAUSE_ENV, "")
    if s.strip():
        time.sleep(float(s))


def save(root: Path, epoch: int, tensors: dict[str, dict[str, torch.Tensor]], meta: dict) -> None:
    """Write epoch `epoch`'s state: tensors {file stem: {name: tensor}} into epoch-NNNN/, then
    state.json (meta, plus the folder's name) in one rename, then drop the older folders."""
    root = Path(root)
    folder = f"epoch-{epoch:04d}"
    shutil.rmtree(root / folder, ignore_errors=True)  # a folder left by a run killed mid-write
    for stem, group in tensors.items():
        _pause()
        group = {k: v.detach().cpu().contiguous() for k, v in group.items()}
        atomic_write(root / folder / f"{stem}.safetensors", lambda tmp, g=group: save_file(g, tmp))
    _pause()
    write_json(root / "state.json", {"format": FORMAT, "idream_version": __version__, "epoch": epoch,
                                     "folder": folder, "files": sorted(tensors), **meta})
    clean(root, keep=folder)


def clean(root: Path, keep: str | None) -> None:
    """Remove the epoch folders other than `keep` (those of older epochs, or half written), and a
    temporary state.json a kill left behind."""
    for p in Path(root).glob("epoch-*"):
        if p.name != keep:
            shutil.rmtree(p, ignore_errors=True)
    for p in Path(root).glob(".state.json.*.tmp"):
        p.unlink(missing_ok=True)


def remove(root: Path) -> None:
    """The run is finished (its checkpoint written): its state is no longer needed."""
    shutil.rmtree(root, ignore_errors=True)


def read_meta(root: Path, out) -> dict:
    """state.json, checked; TrainStateError where there is nothing (usable) to resume."""
    file = Path(root) / "state.json"
    if not file.exists():
        done = (Path(out) / "config.json").exists()
        raise TrainStateError(f"{out} holds no training state to resume ({file} is missing"
                              f"{'; the folder holds a finished checkpoint' if done else ''}): "
                              "run the same command without --resume to train from the start")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TrainStateError(f"{file} cannot be read ({e}); remove {root} and train without --resume") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise TrainStateError(f"{file} is not an iDream training state ({FORMAT}); remove {root} "
                              "and train without --resume")
    if meta.get("idream_version") != __version__:
        raise TrainStateError(f"{root} was written by iDream {meta.get('idream_version')}, this is "
                              f"{__version__}: finish it with that version, or train without --resume")
    return meta


def check_settings(meta: dict, train: dict, root: Path) -> None:
    """Refuse a state made with other training settings than `train` (both as in config.json)."""
    have = meta.get("train", {})
    diff = sorted(k for k in have.keys() | train.keys() if k not in SAME_RESULT and have.get(k) != train.get(k))
    if diff:
        shown = ", ".join(f"{k} {have.get(k)!r} there, {train.get(k)!r} here" for k in diff[:3])
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise TrainStateError(f"{root} was made with other settings ({shown}{more}): resume with the "
                              "same command, or train without --resume to start over")


def read_tensors(root: Path, meta: dict) -> dict[str, dict[str, torch.Tensor]]:
    """The tensor files named by state.json, {file stem: {name: tensor}}."""
    root, out = Path(root), {}
    for stem in meta.get("files", []):
        file = root / str(meta.get("folder")) / f"{stem}.safetensors"
        try:
            out[stem] = load_file(str(file))
        except (SafetensorError, OSError, ValueError) as e:
            raise TrainStateError(f"{file} cannot be read ({e}); remove {root} and train without "
                                  "--resume") from None
    return out


def plain(obj):
    """obj with tuples as lists, as JSON gives it back: settings compare as they are stored."""
    return json.loads(json.dumps(obj, default=list))
