"""The forward (noising) process, the training objective and the model-output conversions."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.diffusion.respacing import RespacedSchedule, respace
from models.diffusion.schedules import make_betas
from models.diffusion.tables import ScheduleTables
from models.errors import ModelInputError

PREDICTIONS: tuple[str, ...] = ("eps", "v")

Model = Callable[[Tensor, Tensor], Tensor]


def _per_sample(values: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """values[t] (a float64 CPU table) as a (B, 1, ..., 1) tensor on like's dtype and device."""
    picked = values[t.detach().to(device="cpu", dtype=torch.long)]
    return picked.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def split_prediction(
    model_output: Tensor,
    x_t: Tensor,
    sqrt_abar: Tensor | float,
    sqrt_one_minus_abar: Tensor | float,
    prediction: str,
    clip_x0: bool = False,
) -> tuple[Tensor, Tensor]:
    """(eps, x0) from a model output, given sqrt(abar_t) and sqrt(1 - abar_t) (floats or tensors
    broadcastable against x_t). With clip_x0, x0 is clamped to [-1, 1] and eps recomputed from the
    clamped x0 so that the pair stays consistent with x_t (what DDIM needs). Each coefficient is
    the right operand of its product, so a Python float and a 0-dim tensor of it give the same
    bfloat16/float16 result (the eager sampler loop and its graphed form, models.diffusion.samplers)."""
    if prediction == "eps":
        eps = model_output
        x0 = (x_t - eps * sqrt_one_minus_abar) / sqrt_abar
    elif prediction == "v":
        # v = sqrt(abar) eps - sqrt(1 - abar) x0 and x_t = sqrt(abar) x0 + sqrt(1 - abar) eps.
        x0 = x_t * sqrt_abar - model_output * sqrt_one_minus_abar
        eps = x_t * sqrt_one_minus_abar + model_output * sqrt_abar
    else:
        raise ModelInputError(f"unknown prediction {prediction!r}; valid: {', '.join(PREDICTIONS)}")
    if clip_x0:
        x0 = x0.clamp(-1.0, 1.0)
        eps = (x_t - x0 * sqrt_abar) / sqrt_one_minus_abar
    return eps, x0


class GaussianDiffusion(nn.Module):
    """A discrete Gaussian diffusion chain of `num_timesteps` steps (Ho et al. 2020).

    The schedule lives twice: as float32 buffers (named as in Ho et al.'s code) so that
    `state_dict()` and thus a training checkpoint hold it, and as a float64 copy on the CPU
    (`tables`) that all the math here uses, so results do not depend on the module's device or on
    float32 rounding of 1 - abar near t = 0. Loading a state dict whose betas differ from the
    current ones rebuilds the float64 copy from the loaded betas.
    """

    def __init__(
        self,
        betas: Tensor | None = None,
        *,
        schedule: str = "linear",
        timesteps: int = 1000,
        prediction: str = "eps",
    ) -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ModelInputError(f"unknown prediction {prediction!r}; valid: {', '.join(PREDICTIONS)}")
        if betas is None:
            betas = make_betas(schedule, timesteps)
        else:
            schedule = "custom"
        self.prediction = prediction
        self.schedule = schedule
        self._set_tables(ScheduleTables.from_betas(betas))
        for name in ScheduleTables.table_names():
            self.register_buffer(name, getattr(self.tables, name).to(torch.float32))
        self.register_load_state_dict_post_hook(GaussianDiffusion._sync_after_load)

    def _set_tables(self, tables: ScheduleTables) -> None:
        self.tables = tables
        self.num_timesteps = tables.num_steps

    @staticmethod
    def _sync_after_load(module: nn.Module, incompatible_keys: object) -> None:
        assert isinstance(module, GaussianDiffusion)
        loaded = module.betas.detach().to(device="cpu", dtype=torch.float64)
        if not torch.equal(loaded.float(), module.tables.betas.float()):
            module._set_tables(ScheduleTables.from_betas(loaded))
            module.schedule = "custom"

    def extra_repr(self) -> str:
        return (
            f"num_timesteps={self.num_timesteps}, schedule={self.schedule!r}, prediction={self.prediction!r}"
        )

    def _check_t(self, t: Tensor, batch: int) -> None:
        if t.shape != (batch,):
            raise ModelInputError(f"t must have shape ({batch},), got {tuple(t.shape)}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_timesteps):
            raise ModelInputError(f"timesteps must lie in [0, {self.num_timesteps}), got {t.tolist()}")

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, a sample of q(x_t | x_0)."""
        self._check_t(t, x0.shape[0])
        return (
            _per_sample(self.tables.sqrt_alphas_cumprod, t, x0) * x0
            + _per_sample(self.tables.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def training_target(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """What the model regresses: eps itself, or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0."""
        if self.prediction == "eps":
            return noise
        self._check_t(t, x0.shape[0])
        return (
            _per_sample(self.tables.sqrt_alphas_cumprod, t, x0) * noise
            - _per_sample(self.tables.sqrt_one_minus_alphas_cumprod, t, x0) * x0
        )

    def training_loss(self, model: Model, x0: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Scalar MSE between model(x_t, t) and the training target, t ~ U{0..T-1}, noise ~ N(0, I).

        t and the noise are drawn on the CPU (from `generator` when given, else from torch's
        global generator) and then moved to x0's device, so a seeded loss is the same on any device.
        """
        batch = x0.shape[0]
        t = torch.randint(0, self.num_timesteps, (batch,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32)
        t = t.to(x0.device)
        noise = noise.to(device=x0.device, dtype=x0.dtype)
        x_t = self.q_sample(x0, t, noise)
        return F.mse_loss(model(x_t, t), self.training_target(x0, t, noise))

    def predict_eps_and_x0(
        self, model_output: Tensor, x_t: Tensor, t: Tensor, *, clip_x0: bool = False
    ) -> tuple[Tensor, Tensor]:
        """(eps, x0) implied by a model output at x_t, for either parameterisation."""
        self._check_t(t, x_t.shape[0])
        return split_prediction(
            model_output,
            x_t,
            _per_sample(self.tables.sqrt_alphas_cumprod, t, x_t),
            _per_sample(self.tables.sqrt_one_minus_alphas_cumprod, t, x_t),
            self.prediction,
            clip_x0,
        )

    def respace(self, steps: int) -> RespacedSchedule:
        """The Improved-DDPM respaced chain of `steps` steps (see models.diffusion.respacing)."""
        return respace(self.tables.alphas_cumprod, steps)
