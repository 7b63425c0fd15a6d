"""Improved-DDPM respacing: sample with a subsequence of the timesteps a model was trained on."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.diffusion.tables import ScheduleTables
from models.errors import ModelInputError


def respaced_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """`steps` evenly spaced original indices from 0..num_timesteps-1, ascending.

    Index i is round(i * (T - 1) / (steps - 1)) rounded half up, in integer arithmetic so that it is
    exact. The stride is >= 1, so the indices are distinct; they include 0 and T - 1, and
    steps == T gives every index. A single step keeps T - 1: sampling must start from the noisiest
    step, and that one step then jumps straight to x_0.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= num_timesteps:
        raise ModelInputError(f"sampling steps must be an integer in [1, {num_timesteps}], got {steps!r}")
    if steps == 1:
        return [num_timesteps - 1]
    span, gaps = num_timesteps - 1, steps - 1
    return [(2 * i * span + gaps) // (2 * gaps) for i in range(steps)]


@dataclass(frozen=True)
class RespacedSchedule(ScheduleTables):
    """The chain over the kept steps k_0 < ... < k_{S-1} (all tables float64, shape (S,)).

    Its betas are beta_i = 1 - abar_{k_i} / abar_{k_{i-1}} (abar_{k_{-1}} = 1), so its cumulative
    alphas are the original abar at the kept steps and a model trained on the full chain sees
    exactly the noise levels it was trained on. Respaced step i is original timestep timesteps[i].
    """

    timesteps: torch.Tensor  # int64, the ORIGINAL indices k_i, ascending


def respace(alphas_cumprod: torch.Tensor, steps: int) -> RespacedSchedule:
    """Respace a chain given its cumulative alphas (shape (T,)) down to `steps` steps."""
    abar = torch.as_tensor(alphas_cumprod).detach().to(device="cpu", dtype=torch.float64)
    kept = torch.tensor(respaced_timesteps(int(abar.numel()), steps), dtype=torch.long)
    kept_abar = abar[kept]
    previous = torch.cat([torch.ones(1, dtype=torch.float64), kept_abar[:-1]])
    return RespacedSchedule.from_betas(1.0 - kept_abar / previous, timesteps=kept)
