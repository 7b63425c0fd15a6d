"""Ancestral sampling (Ho et al. 2020) over a respaced chain."""

from __future__ import annotations

import math

from torch import Tensor

from models.diffusion.process import split_prediction
from models.diffusion.respacing import RespacedSchedule
from models.diffusion.samplers.base import Coefficients, Sampler, StepIndex


class DDPM(Sampler):
    """One step x_i -> x_{i-1} is a draw of q(x_{i-1} | x_i, x0_hat).

    With x0_hat = (x_i - sqrt(1 - abar_i) eps) / sqrt(abar_i) (eps model, no clipping) the posterior
    mean coef1 * x0_hat + coef2 * x_i simplifies to the paper's eq. 1,
    1 / sqrt(alpha_i) * (x_i - beta_i / sqrt(1 - abar_i) * eps), and the added noise has variance
    beta tilde_i = beta_i (1 - abar_{i-1}) / (1 - abar_i). Going through x0 lets the same step
    clip x0 to [-1, 1] and serve v-prediction models. No noise is added at the last step (i = 0).
    """

    name = "ddpm"
    capture_safe = True

    def step_values(self, schedule: RespacedSchedule, i: int) -> dict[str, float]:
        abar = float(schedule.alphas_cumprod[i])
        return {
            "sqrt_abar": math.sqrt(abar),
            "sqrt_one_minus_abar": math.sqrt(1.0 - abar),
            "coef1": float(schedule.posterior_mean_coef1[i]),
            "coef2": float(schedule.posterior_mean_coef2[i]),
            "noise_std": math.sqrt(float(schedule.posterior_variance[i])) if i else 0.0,
        }

    def step(self, output: Tensor, x: Tensor, k: StepIndex, coeffs: Coefficients, prediction: str,
             noise: Tensor | None, clip: bool) -> Tensor:
        c = coeffs.at(k)
        _, x0 = split_prediction(output, x, c["sqrt_abar"], c["sqrt_one_minus_abar"], prediction, clip)
        mean = x0 * c["coef1"] + x * c["coef2"]
        return mean if noise is None else mean + noise * c["noise_std"]
