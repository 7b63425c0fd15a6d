"""Samplers: one object per sampler (options, per-step coefficients, update), one registry.

Adding a sampler: a module here with a `Sampler` subclass, plus its line in `registry.SAMPLERS`.
"""

from models.diffusion.samplers.base import (
    Coefficients,
    Option,
    Sampler,
    StepIndex,
    non_negative_number,
    table_dtype,
)
from models.diffusion.samplers.chain import NoiseSource, ddim_step, ddpm_step, resolve_sampler, sample
from models.diffusion.samplers.ddim import DDIM
from models.diffusion.samplers.ddpm import DDPM
from models.diffusion.samplers.registry import SAMPLERS, get_sampler

__all__ = [
    "DDIM",
    "DDPM",
    "SAMPLERS",
    "Coefficients",
    "NoiseSource",
    "Option",
    "Sampler",
    "StepIndex",
    "ddim_step",
    "ddpm_step",
    "get_sampler",
    "non_negative_number",
    "resolve_sampler",
    "sample",
    "table_dtype",
]
