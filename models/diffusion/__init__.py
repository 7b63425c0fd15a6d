"""Discrete Gaussian diffusion (DDPM): schedules, forward process, respacing and samplers.

Models are plain callables model(x, t): x float (B, C, H, W), t int64 (B,) of original timestep
indices in [0, T), returning a tensor shaped like x (eps or v, as the diffusion's `prediction`).
"""

from models.diffusion.process import PREDICTIONS, GaussianDiffusion
from models.diffusion.respacing import RespacedSchedule, respaced_timesteps
from models.diffusion.samplers import SAMPLERS, ddim_step, ddpm_step, sample
from models.diffusion.schedules import SCHEDULES, make_betas
from models.diffusion.tables import ScheduleTables

__all__ = [
    "PREDICTIONS",
    "SAMPLERS",
    "SCHEDULES",
    "GaussianDiffusion",
    "RespacedSchedule",
    "ScheduleTables",
    "ddim_step",
    "ddpm_step",
    "make_betas",
    "respaced_timesteps",
    "sample",
]
