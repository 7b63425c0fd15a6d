"""Seeded ancestral (DDPM) and DDIM sampling over a respaced chain."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from models.diffusion.process import GaussianDiffusion, Model, split_prediction
from models.diffusion.respacing import RespacedSchedule
from models.errors import ModelInputError

# Called by a step when it needs a fresh standard-normal tensor shaped like x.
NoiseSource = Callable[[], Tensor]


def ddpm_step(
    model_output: Tensor,
    x: Tensor,
    i: int,
    schedule: RespacedSchedule,
    prediction: str,
    noise: NoiseSource,
    *,
    clip_denoised: bool = True,
) -> Tensor:
    """One ancestral step x_i -> x_{i-1} of the respaced chain, a draw of q(x_{i-1} | x_i, x0_hat).

    With x0_hat = (x_i - sqrt(1 - abar_i) eps) / sqrt(abar_i) (eps model, no clipping) the posterior
    mean coef1 * x0_hat + coef2 * x_i simplifies to the paper's eq. 1,
    1 / sqrt(alpha_i) * (x_i - beta_i / sqrt(1 - abar_i) * eps), and the added noise has variance
    beta tilde_i = beta_i (1 - abar_{i-1}) / (1 - abar_i). Going through x0 lets the same step
    clip x0 to [-1, 1] and serve v-prediction models. No noise is added at the last step (i = 0).
    """
    abar = float(schedule.alphas_cumprod[i])
    _, x0 = split_prediction(
        model_output, x, math.sqrt(abar), math.sqrt(1.0 - abar), prediction, clip_denoised
    )
    mean = float(schedule.posterior_mean_coef1[i]) * x0 + float(schedule.posterior_mean_coef2[i]) * x
    if i == 0:
        return mean
    return mean + math.sqrt(float(schedule.posterior_variance[i])) * noise()


def ddim_step(
    model_output: Tensor,
    x: Tensor,
    i: int,
    schedule: RespacedSchedule,
    prediction: str,
    noise: NoiseSource,
    *,
    clip_denoised: bool = True,
    eta: float = 0.0,
) -> Tensor:
    """One DDIM step (Song et al. 2021, eq. 12) x_i -> x_{i-1} of the respaced chain:
    sqrt(abar_{i-1}) x0 + sqrt(1 - abar_{i-1} - sigma^2) eps + sigma z, with
    sigma = eta * sqrt((1 - abar_{i-1}) / (1 - abar_i)) * sqrt(1 - abar_i / abar_{i-1}).
    eta = 0 is deterministic; eta = 1 has the DDPM posterior variance. Noise is drawn only when
    sigma > 0."""
    abar = float(schedule.alphas_cumprod[i])
    abar_prev = float(schedule.alphas_cumprod_prev[i])
    eps, x0 = split_prediction(
        model_output, x, math.sqrt(abar), math.sqrt(1.0 - abar), prediction, clip_denoised
    )
    sigma = eta * math.sqrt((1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev))
    out = math.sqrt(abar_prev) * x0 + math.sqrt(max(1.0 - abar_prev - sigma**2, 0.0)) * eps
    if sigma > 0.0:
        out = out + sigma * noise()
    return out


SAMPLER_STEPS: dict[str, Callable[..., Tensor]] = {"ddpm": ddpm_step, "ddim": ddim_step}
"""Sampler name -> its step (model output, x_i, i, respaced schedule, prediction, noise source,
keyword clip_denoised) -> x_{i-1}. A new sampler is one step function plus one line here."""
SAMPLERS: tuple[str, ...] = tuple(SAMPLER_STEPS)
SAMPLER_OPTIONS: dict[str, tuple[str, ...]] = {"ddim": ("eta",)}
"""Extra keyword options a sampler's step accepts (`sample(..., eta=...)` for DDIM)."""


def _check_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    dims = tuple(shape)
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ModelInputError(f"shape must be a tuple of positive integers, got {shape!r}")
    return dims


def sample(
    model: Model,
    diffusion: GaussianDiffusion,
    shape: tuple[int, ...],
    *,
    steps: int,
    sampler: str = "ddpm",
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    clip_denoised: bool = True,
    progress: bool = False,
    eta: float = 0.0,
) -> Tensor:
    """Draw samples of `shape` (batch first) with `steps` denoiser calls; float32, CPU, in [-1, 1].

    The chain is `diffusion` respaced to `steps` steps; the model is always called with the
    ORIGINAL timestep index of each respaced step, as an int64 tensor of shape (B,) on `device`.
    All noise comes from one CPU torch.Generator seeded with `seed`, drawn in float32 and then moved
    to device/dtype, so a seed gives the same samples on every call and the same noise on CPU and
    CUDA. Draw order: x_T first, then one tensor per step that adds noise, from the noisiest step
    down. An nn.Module model is put in eval mode for the call and its previous mode restored after.
    `eta` is the DDIM stochasticity and is only accepted with sampler="ddim".
    """
    if sampler not in SAMPLERS:
        raise ModelInputError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    if "eta" not in SAMPLER_OPTIONS.get(sampler, ()) and eta != 0.0:
        raise ModelInputError(f"eta applies only to the ddim sampler, got eta={eta} for {sampler}")
    if not (isinstance(eta, int | float) and 0.0 <= eta and math.isfinite(eta)):
        raise ModelInputError(f"eta must be a finite number >= 0, got {eta!r}")
    dims = _check_shape(shape)
    step = SAMPLER_STEPS[sampler]
    extra = {"eta": float(eta)} if "eta" in SAMPLER_OPTIONS.get(sampler, ()) else {}
    schedule = diffusion.respace(steps)
    device = torch.device(device)
    generator = torch.Generator(device="cpu").manual_seed(seed)

    def noise() -> Tensor:
        z = torch.randn(dims, generator=generator, dtype=torch.float32)
        return z.to(device=device, dtype=dtype)

    was_training = model.training if isinstance(model, nn.Module) else None
    if isinstance(model, nn.Module):
        model.eval()
    try:
        with torch.inference_mode():
            x = noise()
            for i in tqdm(
                reversed(range(schedule.num_steps)),
                total=schedule.num_steps,
                desc=f"{sampler} sampling",
                disable=not progress,
            ):
                t = torch.full((dims[0],), int(schedule.timesteps[i]), dtype=torch.long)
                output = model(x, t.to(device)).to(dtype)
                x = step(output, x, i, schedule, diffusion.prediction, noise,
                         clip_denoised=clip_denoised, **extra)
    finally:
        if isinstance(model, nn.Module) and was_training is not None:
            model.train(was_training)
    return x.clamp(-1.0, 1.0).to(device="cpu", dtype=torch.float32)
