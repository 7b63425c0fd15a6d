"""DDIM sampling (Song et al. 2021) over a respaced chain; `eta` sets its stochasticity."""

from __future__ import annotations

import math

from torch import Tensor

from models.diffusion.process import split_prediction
from models.diffusion.respacing import RespacedSchedule
from models.diffusion.samplers.base import Coefficients, Sampler, StepIndex, non_negative_number


class DDIM(Sampler):
    """One step (eq. 12) x_i -> x_{i-1}: sqrt(abar_{i-1}) x0 + sqrt(1 - abar_{i-1} - sigma^2) eps
    + sigma z, with sigma = eta * sqrt((1 - abar_{i-1}) / (1 - abar_i)) * sqrt(1 - abar_i / abar_{i-1}).
    eta = 0 is deterministic; eta = 1 has the DDPM posterior variance. Noise is drawn only where
    sigma > 0."""

    name = "ddim"
    options = {"eta": non_negative_number(0.0)}
    capture_safe = True
    eta: float

    def step_values(self, schedule: RespacedSchedule, i: int) -> dict[str, float]:
        abar = float(schedule.alphas_cumprod[i])
        abar_prev = float(schedule.alphas_cumprod_prev[i])
        sigma = self.eta * math.sqrt((1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev))
        return {
            "sqrt_abar": math.sqrt(abar),
            "sqrt_one_minus_abar": math.sqrt(1.0 - abar),
            "sqrt_abar_prev": math.sqrt(abar_prev),
            "eps_coef": math.sqrt(max(1.0 - abar_prev - sigma**2, 0.0)),
            "noise_std": sigma,
        }

    def step(self, output: Tensor, x: Tensor, k: StepIndex, coeffs: Coefficients, prediction: str,
             noise: Tensor | None, clip: bool) -> Tensor:
        c = coeffs.at(k)
        eps, x0 = split_prediction(output, x, c["sqrt_abar"], c["sqrt_one_minus_abar"], prediction, clip)
        out = x0 * c["sqrt_abar_prev"] + eps * c["eps_coef"]
        return out if noise is None else out + noise * c["noise_std"]
