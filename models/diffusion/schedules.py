"""Noise (beta) schedules: the per-step variances of the forward diffusion process."""

from __future__ import annotations

import math

import torch

from models.errors import ModelInputError

SCHEDULES: tuple[str, ...] = ("linear", "cosine", "sigmoid")

# The largest beta any schedule may produce. Cosine and sigmoid reach abar = 0 at t = T, which would
# make the last beta exactly 1 (x_T carries no signal at all and 1 / sqrt(alpha) blows up).
MAX_BETA = 0.999


def _linear(timesteps: int) -> torch.Tensor:
    """Ho et al. 2020: 1e-4 .. 0.02 for T = 1000, both ends scaled by 1000 / T (Nichol & Dhariwal)
    so that other chain lengths destroy the signal as much as the 1000-step chain does."""
    scale = 1000.0 / timesteps
    betas = torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)
    # Only chains shorter than 20 steps reach beta >= 1; clip them like the other schedules.
    return betas.clamp(max=MAX_BETA)


def _cumprod_to_betas(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """betas from abar at t = 0..T (T + 1 values, abar(0) = 1): beta_t = 1 - abar(t+1) / abar(t)."""
    betas = 1.0 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return betas.clamp(max=MAX_BETA)


def _cosine(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal 2021: abar(t) = f(t) / f(0), f(t) = cos((t/T + s) / (1 + s) * pi/2)^2."""
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((t + s) / (1.0 + s) * (math.pi / 2)) ** 2
    return _cumprod_to_betas(f / f[0])


def _sigmoid(timesteps: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> torch.Tensor:
    """Sigmoid schedule (Jabri et al. 2022, as used by the paper's authors): abar(t) falls like a
    reversed sigmoid on [start, end] / tau, normalised so that abar(0) = 1 and abar(T) = 0."""
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))
    v = torch.sigmoid((t * (end - start) + start) / tau)
    alphas_cumprod = (v_end - v) / (v_end - v_start)
    return _cumprod_to_betas(alphas_cumprod / alphas_cumprod[0])


_BUILDERS = {"linear": _linear, "cosine": _cosine, "sigmoid": _sigmoid}


def make_betas(schedule: str, timesteps: int = 1000) -> torch.Tensor:
    """The betas (float64, shape (timesteps,)) of a named schedule; every value lies in (0, 1)."""
    if schedule not in _BUILDERS:
        raise ModelInputError(f"unknown beta schedule {schedule!r}; valid names: {', '.join(SCHEDULES)}")
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ModelInputError(f"timesteps must be an integer >= 1, got {timesteps!r}")
    return _BUILDERS[schedule](timesteps)
