"""diffusers' schedulers as samplers: one adapter (`DiffusersSampler`), one small class per scheduler.

How a scheduler sees the suite's chain. A run of S steps respaces the model's T-step chain to S
kept timesteps k_0 < ... < k_{S-1} (`models.diffusion.respacing`), and that S-step chain is given
to the scheduler as its training chain:

- `num_train_timesteps = S` and `trained_betas` = the respaced chain's betas, so the scheduler's
  `alphas_cumprod[i]` is the model's own abar at k_i (the suite's schedule, whatever its name);
- `timestep_spacing = "trailing"`, so its timesteps are S-1, ..., 0 (every respaced index once,
  noisiest first) and its last update goes to abar = 1, the clean image, as the native samplers'
  last step does;
- `prediction_type` from the diffusion's prediction ("eps" -> "epsilon", "v" -> "v_prediction");
- the model is called with the ORIGINAL timestep k_i of the scheduler's index i, after the
  scheduler's `scale_model_input` (Euler and Heun work in sigma space and scale x by
  1 / sqrt(sigma^2 + 1) back to the model's input), and x_T is the standard-normal draw times
  `init_noise_sigma`.

So the native `ddim` and `diffusers-ddim` (and `ddpm` / `diffusers-ddpm`) take the same timesteps,
and the same noise draws give the same samples to float32 rounding (within 2e-4: diffusers keeps
the schedule in float32; tests/test_samplers_diffusers.py). Noise comes from the chain's CPU
generator, passed to `step` where the scheduler takes one. Heun calls the model twice per step
except the last (2S - 1 calls). Only the DDPM and DDIM schedulers clip x0 to [-1, 1]
(`clip_denoised`; DDIM then also recomputes eps from the clipped x0, `use_clipped_model_output`,
as the native DDIM does, so the two agree with clipping too); the others have no such option and
do not clip. A scheduler keeps state
between steps, so none is capture-safe: each run builds a fresh scheduler (as a pipeline's
`set_timesteps` does), and the sampler object stays reusable.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from models.diffusion.respacing import RespacedSchedule
from models.diffusion.samplers.base import Denoise, Sampler, non_negative_number
from models.errors import ModelInputError

PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction"}
"""The suite's prediction name -> diffusers' `prediction_type`."""


class DiffusersSampler(Sampler):
    """A diffusers scheduler class (by name, imported on first use) with its fixed configuration;
    options named in `step_options` are passed to its `step`."""

    scheduler_class: ClassVar[str] = ""
    scheduler_config: ClassVar[Mapping[str, Any]] = {}
    clips: ClassVar[bool] = False
    """Whether the scheduler has `clip_sample` (then set from `clip_denoised`)."""
    clipped_eps_option: ClassVar[str | None] = None
    """The `step` argument that makes the scheduler recompute eps from the clipped x0, as the
    native samplers do (set from `clip_denoised`)."""
    step_options: ClassVar[tuple[str, ...]] = ()
    calls_per_step: ClassVar[int] = 1
    capture_safe = False

    def scheduler(self, schedule: RespacedSchedule, prediction: str, clip: bool = True,
                  device: torch.device | str = "cpu") -> Any:
        """A fresh scheduler over `schedule`, its timesteps set (see the module docstring)."""
        try:
            import diffusers
        except ImportError as error:  # a dependency of the suite; say so if it went missing
            raise ModelInputError(f"sampler {self.name!r} needs diffusers ({error}); install the "
                                  "suite's dependencies with `uv sync`") from None
        if prediction not in PREDICTION_TYPES:
            raise ModelInputError(f"sampler {self.name!r}: unknown prediction {prediction!r}; valid: "
                                  f"{', '.join(PREDICTION_TYPES)}")
        config: dict[str, Any] = {
            "num_train_timesteps": schedule.num_steps,
            "trained_betas": schedule.betas.numpy(),
            "prediction_type": PREDICTION_TYPES[prediction],
            "timestep_spacing": "trailing",
            **self.scheduler_config,
        }
        if self.clips:
            config.update(clip_sample=clip, clip_sample_range=1.0)
        scheduler = getattr(diffusers, self.scheduler_class)(**config)
        scheduler.set_timesteps(schedule.num_steps, device=device)
        return scheduler

    def model_calls(self, steps: int) -> int:
        return self.calls_per_step * steps - (self.calls_per_step - 1)

    def run_chain(self, denoise: Denoise, x: Tensor, schedule: RespacedSchedule, prediction: str,
                  noise: Callable[[], Tensor], generator: torch.Generator, clip: bool,
                  progress: bool = False) -> Tensor:
        from tqdm.auto import tqdm

        scheduler = self.scheduler(schedule, prediction, clip, device=x.device)
        extra = {key: self.settings[key] for key in self.step_options}
        if self.clipped_eps_option:
            extra[self.clipped_eps_option] = clip
        if "generator" in inspect.signature(scheduler.step).parameters:
            extra["generator"] = generator
        x = x * scheduler.init_noise_sigma
        for t in tqdm(scheduler.timesteps, desc=f"{self.name} sampling", disable=not progress):
            index = int(round(float(t)))
            output = denoise(scheduler.scale_model_input(x, t), int(schedule.timesteps[index]))
            x = scheduler.step(output, t, x, return_dict=False, **extra)[0].to(x.dtype)
        return x


class DPMSolverPlusPlus2M(DiffusersSampler):
    """DPM-Solver++ (Lu et al. 2022), second-order multistep ("2M"), data prediction."""

    name = "dpmsolver++"
    scheduler_class = "DPMSolverMultistepScheduler"
    scheduler_config = {"algorithm_type": "dpmsolver++", "solver_order": 2}


class UniPC(DiffusersSampler):
    """UniPC (Zhao et al. 2023): predictor-corrector, order 2, bh2 (diffusers' defaults)."""

    name = "unipc"
    scheduler_class = "UniPCMultistepScheduler"
    scheduler_config = {"solver_order": 2}


class Euler(DiffusersSampler):
    """Euler's method on the probability-flow ODE in sigma space (Karras et al. 2022)."""

    name = "euler"
    scheduler_class = "EulerDiscreteScheduler"


class EulerAncestral(DiffusersSampler):
    """Euler steps with fresh noise at each (ancestral) step."""

    name = "euler-ancestral"
    scheduler_class = "EulerAncestralDiscreteScheduler"


class Heun(DiffusersSampler):
    """Heun's second-order method (Karras et al. 2022): two model calls per step but the last."""

    name = "heun"
    scheduler_class = "HeunDiscreteScheduler"
    calls_per_step = 2


class DiffusersDDPM(DiffusersSampler):
    """diffusers' `DDPMScheduler` (posterior variance, "fixed_small"): the cross-check of `ddpm`."""

    name = "diffusers-ddpm"
    scheduler_class = "DDPMScheduler"
    scheduler_config = {"variance_type": "fixed_small"}
    clips = True


class DiffusersDDIM(DiffusersSampler):
    """diffusers' `DDIMScheduler` (its last step to abar = 1): the cross-check of `ddim`."""

    name = "diffusers-ddim"
    scheduler_class = "DDIMScheduler"
    scheduler_config = {"set_alpha_to_one": True, "steps_offset": 0}
    clips = True
    clipped_eps_option = "use_clipped_model_output"
    options = {"eta": non_negative_number(0.0)}
    step_options = ("eta",)
