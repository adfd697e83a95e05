"""Deterministic DDIM sampling (η = 0) with classifier-free guidance, any number of steps ≥ 1.

Shaped like diffusers' DDIMScheduler: `set_timesteps(n)` chooses the visited steps and
`step(x0_pred, t, x_t)` makes one update, returning the previous sample and the predicted x0,
so a caller (the demo) can walk the denoising path one step at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from idream.core.diffusion import Diffusion


@dataclass
class StepOutput:
    prev_sample: torch.Tensor  # x_{t_prev}  (B, D)
    pred_original_sample: torch.Tensor  # x̂0  (B, D)


class DDIMSampler:
    def __init__(self, diffusion: Diffusion):
        self.diffusion = diffusion
        self.T = diffusion.T
        self.timesteps = np.array([self.T - 1])

    def set_timesteps(self, steps: int) -> np.ndarray:
        """An evenly strided subset of `steps` timesteps from T−1 down to 0."""
        if not 1 <= int(steps) <= self.T:
            raise ValueError(f"steps must be between 1 and T={self.T}, got {steps}")
        ts = np.round(np.linspace(self.T - 1, 0, int(steps))).astype(np.int64)
        self.timesteps = ts
        return ts

    def prev_timestep(self, t: int) -> int:
        i = int(np.nonzero(self.timesteps == t)[0][0])
        return int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else -1

    def step(self, x0_pred: torch.Tensor, t: int, x_t: torch.Tensor) -> StepOutput:
        ac = self.diffusion.alphas_cumprod
        t_prev = self.prev_timestep(t)
        a_t = ac[t]
        a_prev = ac[t_prev] if t_prev >= 0 else torch.tensor(1.0)
        # (1) the noise implied by the predicted x0 (DDIM eq. 12, x0-parameterisation)
        eps = (x_t - a_t.sqrt() * x0_pred) / (1 - a_t).sqrt()
        # (2) η = 0: no fresh noise; (3) move to t_prev along the deterministic path
        prev = a_prev.sqrt() * x0_pred + (1 - a_prev).sqrt() * eps
        return StepOutput(prev, x0_pred)


def initial_noise(batch: int, dim: int, seed: int | None, device="cpu") -> torch.Tensor:
    """x_T ~ N(0, I), reproducible for a seed.  # (B, D)"""
    g = torch.Generator(device="cpu")
    # any integer seed works: it is folded into the generator's 64-bit range
    g.manual_seed(int(seed) % (2**63) if seed is not None else int(torch.seed() % (2**63)))
    return torch.randn(batch, dim, generator=g).to(device)


@torch.no_grad()
def sample(model, diffusion: Diffusion, cond: dict, steps: int, w, rho, seed=None,
           return_path: bool = False, shared_noise: bool = False, steer=None, noise=None):
    """Generate the oracle x0 for a batch of conditions.

    cond: history (B, L, D), history_valid (B, L), intention (B, D), has_intention (B,).
    w, rho: floats or (B,) tensors; shared_noise starts every row from the same x_T (for sweeps
    over ρ or w of one request). steer: a function applied to every step's x̂0 (B, D) -> (B, D),
    e.g. the text steering's turn. noise: x_T given (B, D), for a batch of requests each with
    its own seed (seed and shared_noise are then unused). Returns x0 (B, D), and with return_path the list of x̂0 at
    every visited step (the denoising path).
    """
    B, D = cond["intention"].shape
    device = cond["intention"].device
    w = torch.as_tensor(w, dtype=torch.float32, device=device).expand(B)
    rho = torch.as_tensor(rho, dtype=torch.float32, device=device).expand(B)
    sampler = DDIMSampler(diffusion)
    if noise is not None:
        x = noise.to(device)
    else:
        x = initial_noise(1, D, seed, device).expand(B, D) if shared_noise else initial_noise(B, D, seed, device)
    path = []
    tokens = model.history_tokens(cond["history"], cond["history_valid"])  # once, not per step
    for t in sampler.set_timesteps(steps):
        tt = torch.full((B,), int(t), dtype=torch.long, device=device)
        x0 = model.guided(x, tt, cond["history"], cond["history_valid"], cond["intention"],
                          cond["has_intention"], w, rho, tokens)
        if steer is not None:
            x0 = steer(x0)
        path.append(x0)
        x = sampler.step(x0, int(t), x).prev_sample
    return (x, path) if return_path else x
