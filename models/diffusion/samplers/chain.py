"""Seeded sampling over a respaced chain with any registered sampler (the eager loop)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from models.diffusion.process import GaussianDiffusion, Model
from models.diffusion.respacing import RespacedSchedule
from models.diffusion.samplers.base import Coefficients, Sampler
from models.diffusion.samplers.ddim import DDIM
from models.diffusion.samplers.ddpm import DDPM
from models.diffusion.samplers.registry import get_sampler
from models.errors import ModelInputError

NoiseSource = Callable[[], Tensor]
"""Called when a step needs a fresh standard-normal tensor shaped like x."""


def _check_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    dims = tuple(shape)
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ModelInputError(f"shape must be a tuple of positive integers, got {shape!r}")
    return dims


def resolve_sampler(sampler: str | Sampler, options: Mapping[str, Any] | None = None,
                    **more: Any) -> Sampler:
    """`sampler` as a Sampler object: a name is looked up in the registry with its options; an
    object is used as it is (its options were set when it was made)."""
    if isinstance(sampler, Sampler):
        if options or more:
            raise ModelInputError(f"sampler {sampler!r} is already configured; pass options only "
                                  "with a sampler name")
        return sampler
    return get_sampler(sampler, options, **more)


def sample(
    model: Model,
    diffusion: GaussianDiffusion,
    shape: tuple[int, ...],
    *,
    steps: int,
    sampler: str | Sampler = "ddpm",
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    clip_denoised: bool = True,
    progress: bool = False,
    options: Mapping[str, Any] | None = None,
    **sampler_options: Any,
) -> Tensor:
    """Draw samples of `shape` (batch first) with `steps` denoiser calls; float32, CPU, in [-1, 1].

    The chain is `diffusion` respaced to `steps` steps; the model is always called with the
    ORIGINAL timestep index of each respaced step, as an int64 tensor of shape (B,) on `device`.
    All noise comes from one CPU torch.Generator seeded with `seed`, drawn in float32 and then moved
    to device/dtype, so a seed gives the same samples on every call and the same noise on CPU and
    CUDA. Draw order: x_T first, then one tensor per step that adds noise, from the noisiest step
    down (a diffusers scheduler draws its noise from the same generator, in its own order). An
    nn.Module model is put in eval mode for the call and its previous mode restored after.
    Sampler options (DDIM's `eta`) come as keywords or in `options`, checked against what the
    sampler declares; an option of another sampler at its default (eta=0.0) asks for nothing.
    """
    chosen = resolve_sampler(sampler, options, **sampler_options)
    dims = _check_shape(shape)
    schedule = diffusion.respace(steps)
    device = torch.device(device)
    generator = torch.Generator(device="cpu").manual_seed(seed)

    def noise() -> Tensor:
        z = torch.randn(dims, generator=generator, dtype=torch.float32)
        return z.to(device=device, dtype=dtype)

    was_training = model.training if isinstance(model, nn.Module) else None
    if isinstance(model, nn.Module):
        model.eval()

    def denoise(x: Tensor, timestep: int) -> Tensor:
        t = torch.full((dims[0],), timestep, dtype=torch.long)
        return model(x, t.to(device)).to(dtype)

    try:
        with torch.inference_mode():
            x = chosen.run_chain(denoise, noise(), schedule, diffusion.prediction, noise,
                                 generator, clip_denoised, progress)
    finally:
        if isinstance(model, nn.Module) and was_training is not None:
            model.train(was_training)
    return x.clamp(-1.0, 1.0).to(device="cpu", dtype=torch.float32)


def _one_step(chosen: Sampler, model_output: Tensor, x: Tensor, i: int, schedule: RespacedSchedule,
              prediction: str, noise: NoiseSource, clip_denoised: bool) -> Tensor:
    coeffs = Coefficients({name: [value] for name, value in chosen.step_values(schedule, i).items()},
                          [int(schedule.timesteps[i])])
    z = noise() if chosen.needs_noise(coeffs, 0) else None
    return chosen.step(model_output, x, 0, coeffs, prediction, z, clip_denoised)


def ddpm_step(model_output: Tensor, x: Tensor, i: int, schedule: RespacedSchedule, prediction: str,
              noise: NoiseSource, *, clip_denoised: bool = True) -> Tensor:
    """One DDPM step at respaced index i (the `DDPM` sampler's step, for a caller holding a
    schedule and an index rather than a whole chain, e.g. a profiled single step)."""
    return _one_step(DDPM(), model_output, x, i, schedule, prediction, noise, clip_denoised)


def ddim_step(model_output: Tensor, x: Tensor, i: int, schedule: RespacedSchedule, prediction: str,
              noise: NoiseSource, *, clip_denoised: bool = True, eta: float = 0.0) -> Tensor:
    """One DDIM step at respaced index i (the `DDIM` sampler's step; see `ddpm_step`)."""
    return _one_step(DDIM(eta=eta), model_output, x, i, schedule, prediction, noise, clip_denoised)
