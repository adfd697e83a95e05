"""The learning-rate schedule and stopping rule shared by every model trained on a time budget.

A linear warm-up (at most one epoch), then a cosine decay over the epochs that fit the budget:
after each epoch the number of epochs that fit is re-estimated from the last epoch's length (the
first carries the set-up and a GPU's warm-up), so a model on a budget ends its decay when its
time ends instead of stopping half-way down a decay planned for all epochs. iDream and its peers
use the same one; without a budget the decay spans all epochs.
"""

from __future__ import annotations

import math
import time

import torch
from idream.errors import InputError


def budget_clock(name: str):
    """The clock a time budget runs on: "wall" seconds, or "cpu", this process's CPU seconds,
    which other work sharing the machine does not eat into (fair between runs side by side;
    use it with one torch thread per process)."""
    clocks = {"wall": time.time, "cpu": time.process_time}
    if name not in clocks:
        raise InputError(f"unknown budget clock {name!r}: use wall or cpu")
    return clocks[name]


class BudgetSchedule:
    """Cosine learning-rate decay fitted to a time budget, and the decision to stop.

    Call step() after each optimizer step and end_epoch() after each epoch.
    """

    def __init__(self, opt: torch.optim.Optimizer, steps_per_epoch: int, epochs: int,
                 max_minutes: float = 0.0, warmup_steps: int = 200):
        self.steps_per_epoch, self.epochs = max(1, steps_per_epoch), epochs
        self.max_s = max_minutes * 60
        self.horizon = epochs * self.steps_per_epoch  # steps of the cosine decay
        self.warmup = min(warmup_steps, self.steps_per_epoch)  # never longer than one epoch
        self.sched = torch.optim.lr_scheduler.LambdaLR(opt, self.factor)

    def factor(self, s: int) -> float:
        """Multiplier of the base learning rate at optimizer step s."""
        warm = min(1.0, (s + 1) / self.warmup) if self.warmup else 1.0
        return warm * 0.5 * (1 + math.cos(math.pi * min(s / self.horizon, 1.0)))

    def step(self) -> None:
        self.sched.step()

    @property
    def decay_epochs(self) -> float:
        return self.horizon / self.steps_per_epoch

    def end_epoch(self, epoch: int, elapsed_s: float, epoch_s: float) -> tuple[str | None, str | None]:
        """Refit the decay to the budget after `epoch` (1-based) ended `elapsed_s` into training
        and took `epoch_s`. Returns (a note on a changed decay, why training must stop now);
        None where there is nothing to say. The next epoch is assumed as slow as the slower of
        the last one and the mean (a busy machine slows down)."""
        note = None
        if self.max_s:
            fit = min(self.epochs, max(2, epoch + int((self.max_s - elapsed_s) / max(epoch_s, 1e-9))))
            if fit * self.steps_per_epoch != self.horizon:
                self.horizon = fit * self.steps_per_epoch
                note = f"learning rate decays over the {fit} epochs that fit the {self.max_s / 60:g}-minute budget"
        if self.max_s and elapsed_s + max(elapsed_s / epoch, epoch_s) > self.max_s:
            return note, f"stopping: the next epoch would pass the {self.max_s / 60:g}-minute budget"
        return note, None
