"""Where training runs: the device a config names, checked before any work starts."""

import torch
from idream.errors import InputError


def training_device(name: str) -> torch.device:
    """The device named for training, with a clear error where it is not there."""
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise InputError(f"unknown device {name!r}: use cpu or cuda") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' asked for, but torch sees no GPU here: use --device cpu")
    return dev
