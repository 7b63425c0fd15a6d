"""Held-out likelihood (the variational bound in bits/dim) and denoising error per noise band.

The paper claims "increased noise robustness" without an experiment; this is the cheap, precise
check improved-diffusion makes of its models: one forward per held-out image and sampled timestep.

The bound, for x_0 in [-1, 1] quantised to 256 levels (D = C x H x W values):

    -log p(x_0) <= L_prior + sum_{t=1}^{T-1} L_t + L_0
    L_prior = KL(q(x_T | x_0) || N(0, I))
    L_t     = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))       (t = 1 .. T-1, t 0-based)
    L_0     = -log p(x_0 | x_1), a Gaussian integrated over each pixel's bin of width 2/255

p(x_{t-1} | x_t) is the chain the suite's `ddpm` sampler draws from: mean from the model's
predicted x_0 through the posterior coefficients, variance the posterior variance (beta-tilde;
at t = 0 its clipped log, as in Ho et al.'s code). L_prior and L_0 are computed exactly for every
image; the sum over t is estimated by stratified Monte Carlo: the T steps are cut into `bands`
equal bands (low to high noise) and one t >= 1 is drawn uniformly in each, weighted by the number
of t >= 1 in its band, an unbiased estimate per image. The reported standard error is over images
of these per-image estimates, so it includes the Monte Carlo noise of the timestep draw.

The same forwards give the denoising error per band: mean squared error of the predicted x_0
and of the predicted noise, against the truth, on the held-out images.

Noise and timesteps come from a generator seeded per batch, so every model sees the same draws
(paired comparisons) and a rerun gives the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bench.errors import UsageError

BIN_HALF_WIDTH = 1.0 / 255.0
"""Half the width of one of the 256 levels of a pixel in [-1, 1]."""
METHOD = "bench.quality.likelihood (variational bound, stratified Monte Carlo over timesteps)"


@dataclass(frozen=True)
class Likelihood:
    """Per-image bound estimates and per-band denoising errors of one model on one image set."""

    bits_per_dim: np.ndarray
    """(N,) one bound estimate per image, bits per dimension."""
    bands: tuple[tuple[int, int], ...]
    """The timestep bands (first, last), 0-based and inclusive, low noise first."""
    mse_x0: np.ndarray
    """(N, bands) squared error of the predicted x_0, averaged over each image's pixels."""
    mse_eps: np.ndarray
    """(N, bands) the same for the predicted noise."""

    @property
    def mean(self) -> float:
        return float(self.bits_per_dim.mean())

    @property
    def stderr(self) -> float:
        return float(self.bits_per_dim.std(ddof=1) / math.sqrt(self.bits_per_dim.size))


def band_edges(num_timesteps: int, bands: int) -> tuple[tuple[int, int], ...]:
    """`bands` contiguous bands of 0..T-1 of equal size, as (first, last) inclusive."""
    if isinstance(bands, bool) or not isinstance(bands, int) or not 1 <= bands <= num_timesteps // 2:
        raise UsageError(f"likelihood bands must be an integer from 1 to T / 2 = {num_timesteps // 2} "
                         f"(each band needs a t >= 1), got {bands!r}")
    cuts = np.linspace(0, num_timesteps, bands + 1).round().astype(int)
    return tuple((int(cuts[i]), int(cuts[i + 1]) - 1) for i in range(bands))


def band_label(band: tuple[int, int]) -> str:
    """The `band` column of a row: 't000-099' for timesteps 0 to 99."""
    return f"t{band[0]:03d}-{band[1]:03d}"


def _gaussian_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, exp logvar1) || N(mean2, exp logvar2)) per element, in nats."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def _normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_nll(x0: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """-log of the probability N(mean, exp log_var) gives to each pixel's bin, per element, nats.

    x0 holds the 256 levels of [-1, 1]; the outermost bins extend to -inf / +inf.
    """
    inv_std = torch.exp(-0.5 * log_var)
    upper = _normal_cdf((x0 - mean + BIN_HALF_WIDTH) * inv_std)
    lower = _normal_cdf((x0 - mean - BIN_HALF_WIDTH) * inv_std)
    upper = torch.where(x0 > 1.0 - 1e-3, torch.ones_like(upper), upper)
    lower = torch.where(x0 < -1.0 + 1e-3, torch.zeros_like(lower), lower)
    return -torch.log((upper - lower).clamp_min(1e-12))


def _table(diffusion: nn.Module, name: str, t: Tensor, like: Tensor) -> Tensor:
    values = getattr(diffusion.tables, name).to(device=like.device, dtype=torch.float64)[t]
    return values.view(-1, *([1] * (like.dim() - 1)))


def _predict(model: nn.Module, diffusion: nn.Module, x0: Tensor, t: Tensor,
             noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(x_t, predicted x_0, predicted noise) in float64 for one timestep per image."""
    x_t = diffusion.q_sample(x0.float(), t, noise.float())
    output = model(x_t, t)
    eps, x0_hat = diffusion.predict_eps_and_x0(output, x_t, t)
    return x_t.double(), x0_hat.double(), eps.double()


def _posterior(diffusion: nn.Module, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
    return (_table(diffusion, "posterior_mean_coef1", t, x0) * x0
            + _table(diffusion, "posterior_mean_coef2", t, x0) * x_t)


@torch.no_grad()
def evaluate(model: nn.Module, diffusion: nn.Module, images: Tensor, *, bands: int = 10,
             seed: int = 0, batch: int = 250, device: torch.device | str = "cpu") -> Likelihood:
    """The bound (bits/dim, one estimate per image) and per-band denoising errors of `model` on
    `images` (float (N, C, H, W) in [-1, 1], on the 256 levels), with `bands` sampled timesteps
    per image plus the exact L_0 and L_prior terms."""
    if not torch.is_tensor(images) or images.dim() != 4 or len(images) < 2:
        raise UsageError(f"likelihood: need a float (N, C, H, W) image tensor with N >= 2, got "
                         f"{tuple(getattr(images, 'shape', ()))}")
    device = torch.device(device)
    model = model.to(device).eval()
    diffusion = diffusion.to(device)
    steps = diffusion.num_timesteps
    edges = band_edges(steps, bands)  # bands of t = 0 .. T-1; L_0 covers t = 0 exactly
    dims = images[0].numel()
    bits, mse_x0, mse_eps = [], [], []
    for index, start in enumerate(range(0, len(images), batch)):
        x0 = images[start:start + batch].to(device=device, dtype=torch.float64)
        n = len(x0)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        nats = _prior_kl(diffusion, x0)
        # L_0: the decoder at t = 0
        zero = torch.zeros(n, dtype=torch.long, device=device)
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64).to(device)
        _, x0_hat, _ = _predict(model, diffusion, x0, zero, noise)
        log_var0 = _table(diffusion, "posterior_log_variance_clipped", zero, x0)
        nats = nats + discretized_gaussian_nll(x0, x0_hat, log_var0).flatten(1).sum(1)
        errors_x0, errors_eps = [], []
        for band_first, last in edges:
            first = max(band_first, 1)  # the sum of KL terms runs over t >= 1
            t_cpu = torch.randint(first, last + 1, (n,), generator=generator)
            noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64).to(device)
            t = t_cpu.to(device)
            x_t, x0_hat, eps_hat = _predict(model, diffusion, x0, t, noise)
            log_var = _table(diffusion, "posterior_log_variance_clipped", t, x0)
            kl = _gaussian_kl(_posterior(diffusion, x0, x_t, t), log_var,
                              _posterior(diffusion, x0_hat, x_t, t), log_var)
            nats = nats + (last - first + 1) * kl.flatten(1).sum(1)
            errors_x0.append((x0_hat - x0).square().flatten(1).mean(1))
            errors_eps.append((eps_hat - noise).square().flatten(1).mean(1))
        bits.append((nats / (dims * math.log(2.0))).cpu())
        mse_x0.append(torch.stack(errors_x0, 1).cpu())
        mse_eps.append(torch.stack(errors_eps, 1).cpu())
    return Likelihood(bits_per_dim=torch.cat(bits).numpy(), bands=edges,
                      mse_x0=torch.cat(mse_x0).numpy(), mse_eps=torch.cat(mse_eps).numpy())


def _prior_kl(diffusion: nn.Module, x0: Tensor) -> Tensor:
    """KL(q(x_T | x_0) || N(0, I)) per image, nats (summed over pixels)."""
    last = torch.full((len(x0),), diffusion.num_timesteps - 1, dtype=torch.long, device=x0.device)
    mean = _table(diffusion, "sqrt_alphas_cumprod", last, x0) * x0
    log_var = _table(diffusion, "log_one_minus_alphas_cumprod", last, x0).expand_as(x0)
    return _gaussian_kl(mean, log_var, torch.zeros_like(x0), torch.zeros_like(x0)).flatten(1).sum(1)


def heldout_images(dataset: Any, limit: int | None = None) -> Tensor:
    """The first `limit` (None: all) images of a dataset of (image, label) items as one tensor,
    snapped to the 256 levels the bound assumes."""
    count = len(dataset) if limit is None else min(limit, len(dataset))
    images = torch.stack([_image(dataset[i]) for i in range(count)]).double()
    return ((images.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def _image(item: Any) -> Tensor:
    return item[0] if isinstance(item, tuple | list) else item


def likelihood_rows(model: nn.Module, diffusion: nn.Module, dataset: Any,
                    base: Mapping[str, Any], *, timesteps: int = 10, images: int | None = None,
                    seed: int = 0, batch: int = 250,
                    device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """Rows: bits_per_dim (mean, stderr over images) and, per band, denoise_mse_x0 and
    denoise_mse_eps (mean over images), on the held-out `dataset`."""
    data = heldout_images(dataset, images)
    result = evaluate(model, diffusion, data, bands=timesteps, seed=seed, batch=batch, device=device)
    common = {**base, "n": len(data), "method": METHOD, "status": "ok", "error": None,
              "sampler": None, "steps": None, "seed": seed}
    rows = [{**common, "metric": "bits_per_dim", "value": result.mean, "unit": "bits/dim",
             "stat": "mean"},
            {**common, "metric": "bits_per_dim", "value": result.stderr, "unit": "bits/dim",
             "stat": "stderr"}]
    for column, band in enumerate(result.bands):
        for metric, values in (("denoise_mse_x0", result.mse_x0), ("denoise_mse_eps", result.mse_eps)):
            rows.append({**common, "metric": metric, "value": float(values[:, column].mean()),
                         "unit": "mse", "stat": "mean", "band": band_label(band)})
    return rows


__all__ = ["Likelihood", "band_edges", "band_label", "discretized_gaussian_nll", "evaluate",
           "heldout_images", "likelihood_rows"]
