"""Training on several processes at once, under torchrun: the process group, DDP, and the few
things rank 0 decides for every rank.

`torchrun --nproc_per_node=N -m idream train ...` starts N processes with RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT set. Each runs train(), which joins them into one process
group (gloo on CPU, NCCL on GPUs, one GPU per process) and trains its share of every batch, the
gradients averaged over the processes by DistributedDataParallel. Without those variables (or with
one process) every helper here does nothing and training is the single-process run, bit for bit.
"""

from __future__ import annotations

import datetime
import gc
import os
from contextlib import contextmanager

import torch
import torch.distributed as dist
from idream.errors import InputError

# How long a process waits for the others at a collective (a gradient all-reduce, rank 0's
# decisions after validating) before it gives up; a process that dies is usually noticed at once.
TIMEOUT_ENV = "IDREAM_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0


def world_size() -> int:
    """Processes in this training run (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return world_size() > 1


def rank() -> int:
    """This process's place in the run, 0 … world_size() − 1; rank 0 validates and writes."""
    return int(os.environ.get("RANK", "0")) if is_distributed() else 0


def is_main() -> bool:
    return rank() == 0


def timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InputError(f"{TIMEOUT_ENV}={raw!r}: give the seconds to wait for the other processes")
    return value


@contextmanager
def process_group(device: torch.device):
    """Join the other torchrun processes for the duration, yielding this process's device (its own
    GPU under NCCL). A collective that fails because another process died or stopped answering
    ends this one with a clear message (SystemExit) instead of a hang. Alone: yields `device`."""
    if not is_distributed():
        yield device
        return
    if device.type == "cuda":
        local, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local >= gpus:
            raise InputError(f"training process {local} on this machine has no GPU of its own "
                             f"({gpus} here): start at most {gpus} processes per machine with --device cuda")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    seconds = timeout_s()
    try:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=seconds))
        yield device
    except RuntimeError as e:  # gloo and NCCL report a lost peer or a timeout as a RuntimeError
        if not _collective_failure(e):
            raise
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise SystemExit(
            f"error: training process {rank()} of {world_size()} stopped: another process of the "
            f"run ended or did not answer within {seconds:g} s (set {TIMEOUT_ENV} to wait longer); "
            f"its own log says why. ({reason})") from e
    finally:
        if dist.is_initialized():
            # what still holds the group (DDP's reducer, in reference cycles) goes first: left to the
            # interpreter's exit, it outlived the group and could abort the process as it ended
            gc.collect()
            dist.destroy_process_group()


def _collective_failure(e: RuntimeError) -> bool:
    """Whether an error came from the process group (not from the model or the data)."""
    words = ("gloo", "nccl", "connection closed", "connection reset", "timed out", "processgroup",
             "tcpstore", "socket")
    return isinstance(e, dist.DistError) or any(w in str(e).lower() for w in words)


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel over `module`: every rank starts from rank 0's weights and buffers,
    and backward averages the gradients over the ranks (the buffers, the fixed text vectors, are
    not sent again at each step). Alone: the module itself. Wrap after it is on `device`."""
    if not is_distributed():
        return module
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False)


def batch_generator(seed: int, device: torch.device) -> torch.Generator | None:
    """The random stream a batch's draws come from: one seeded the same on every process, so each
    draws the whole global batch alike and trains its share (dropout inside the model draws from
    the default stream, seeded per rank). Alone: None, the default stream, as a single process."""
    if not is_distributed():
        return None
    return torch.Generator(device=device).manual_seed(seed)


def from_main(value):
    """Rank 0's value (any picklable object) on every process; alone, the value itself."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean(values: dict) -> dict:
    """Each number's mean over the processes (one all-reduce; every process holds the same keys
    in the same order); alone, the numbers themselves."""
    if not is_distributed():
        return values
    where = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    total = torch.tensor(list(values.values()), dtype=torch.float64, device=where)
    dist.all_reduce(total)
    return {k: v / world_size() for k, v in zip(values, total.tolist())}
