"""diffusers' schedulers through the one adapter: native and diffusers DDIM and DDPM agree given the
same model, schedule, steps and noise; every registered sampler makes finite samples of the right
shape in eps and v prediction with as many model calls as it declares; an unknown sampler name is
one line everywhere; a scheduler that keeps state is refused by cudagraph mode in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from bench.errors import UsageError
from bench.measure.graphed_sampling import check_graphable
from bench.measure.modes import ModeError
from bench.measure.sampling import time_per_sample
from bench.quality.sweep import SweepSettings
from models.diffusion import GaussianDiffusion, sample
from models.diffusion.samplers import SAMPLERS, get_sampler
from models.errors import ModelInputError

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (3, 1, 8, 8)
FLOAT32_SCHEDULE = 2e-4
"""Largest accepted max |native - diffusers| of samples in [-1, 1]: float32 rounding, as diffusers
holds the schedule (alphas_cumprod a float32 cumprod of float32 betas) where the suite computes in
float64, and the noisiest step (abar ~ 1e-5 on the sigmoid schedule) magnifies it by 1 / sqrt(abar)
in x0. Measured here: 1e-6 to 1e-4 over eps/v, eta 0/1, 5-1,000 steps (1e-4 at 1,000 DDPM steps)."""


class Counting(nn.Module):
    """A small time-dependent denoiser whose outputs stay moderate (so x0 rarely clips), counting
    its calls and checking it is called with integer original timesteps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.time = nn.Embedding(1000, 1)
        self.calls = 0

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        assert t.dtype == torch.long and t.shape == (x.shape[0],)
        self.calls += 1
        return 0.5 * torch.tanh(self.conv(x) + self.time(t)[:, :, None, None])


class NearExact(Counting):
    """The exact denoiser of N(0, 0.5^2) data plus a small learned-looking term, in the diffusion's
    prediction: samples stay in range, so no difference hides behind the final clamp."""

    def __init__(self, diffusion: GaussianDiffusion) -> None:
        super().__init__()
        self.abar, self.prediction = diffusion.tables.alphas_cumprod, diffusion.prediction

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        a = self.abar[t.cpu()].to(x).reshape(-1, 1, 1, 1)
        eps = (1.0 - a).sqrt() * x / (a * 0.25 + 1.0 - a) + 0.2 * a.sqrt() * super().forward(x, t)
        if self.prediction == "eps":
            return eps
        x0 = (x - (1.0 - a).sqrt() * eps) / a.sqrt()
        return a.sqrt() * eps - (1.0 - a).sqrt() * x0


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_native_and_diffusers_ddim_agree_to_float32_rounding(prediction: str, eta: float) -> None:
    diffusion = GaussianDiffusion(schedule="sigmoid", prediction=prediction)
    model = NearExact(diffusion)
    for steps in (5, 25, 1000):
        native = sample(model, diffusion, SHAPE, steps=steps, sampler="ddim", seed=3, eta=eta,
                        clip_denoised=False)
        theirs = sample(model, diffusion, SHAPE, steps=steps, sampler="diffusers-ddim", seed=3,
                        eta=eta, clip_denoised=False)
        assert (native - theirs).abs().max() < FLOAT32_SCHEDULE, float((native - theirs).abs().max())


def test_with_clipping_the_two_ddims_agree_where_x0_is_clipped() -> None:
    """With x0 clipped to [-1, 1], native DDIM recomputes eps from the clipped x0 (consistent with
    x_t); diffusers' DDIMScheduler does too when asked (`use_clipped_model_output`, which the
    adapter sets from `clip_denoised`), and only then do the two agree."""
    import diffusers

    diffusion = GaussianDiffusion(schedule="sigmoid", prediction="eps")
    small = Counting()
    native = sample(small, diffusion, SHAPE, steps=10, sampler="ddim", seed=1)
    theirs = sample(small, diffusion, SHAPE, steps=10, sampler="diffusers-ddim", seed=1)
    assert (native - theirs).abs().max() < FLOAT32_SCHEDULE, float((native - theirs).abs().max())
    # the clipping matters here: without the recomputed eps diffusers' DDIM moves elsewhere
    real_step = diffusers.DDIMScheduler.step

    def keeps_the_model_eps(self, *args, **kwargs):
        return real_step(self, *args, **{**kwargs, "use_clipped_model_output": False})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(diffusers.DDIMScheduler, "step", keeps_the_model_eps)
        unclipped_eps = sample(small, diffusion, SHAPE, steps=10, sampler="diffusers-ddim", seed=1)
    assert (native - unclipped_eps).abs().max() > 1e-3  # x0 of an eps model is large at high noise


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_native_and_diffusers_ddpm_agree_given_the_same_noise(prediction: str) -> None:
    """Both draw x_T and then one standard-normal tensor per step but the last from the same CPU
    generator, in the same order, and both clip x0: the same samples to float32 rounding."""
    diffusion = GaussianDiffusion(schedule="sigmoid", prediction=prediction)
    model = NearExact(diffusion)
    for steps in (5, 50, 1000):
        native = sample(model, diffusion, SHAPE, steps=steps, sampler="ddpm", seed=7)
        theirs = sample(model, diffusion, SHAPE, steps=steps, sampler="diffusers-ddpm", seed=7)
        assert (native - theirs).abs().max() < FLOAT32_SCHEDULE, float((native - theirs).abs().max())


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_every_sampler_makes_finite_samples_with_the_calls_it_declares(name: str,
                                                                       prediction: str) -> None:
    diffusion = GaussianDiffusion(schedule="sigmoid", prediction=prediction)
    model = Counting()
    out = sample(model, diffusion, SHAPE, steps=6, sampler=name, seed=0)
    assert out.shape == SHAPE and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert model.calls == get_sampler(name).model_calls(6)
    again = sample(model, diffusion, SHAPE, steps=6, sampler=name, seed=0)
    assert torch.equal(out, again)  # seeded, and a reused sampler keeps no state between runs


def test_heun_calls_the_model_twice_per_step_but_the_last() -> None:
    assert get_sampler("heun").model_calls(10) == 19
    assert get_sampler("dpmsolver++").model_calls(10) == get_sampler("ddpm").model_calls(10) == 10


def test_the_deterministic_samplers_converge_to_one_solution_of_the_same_chain() -> None:
    """With the exact denoiser of N(0, 0.5^2) data, every deterministic sampler (native DDIM and
    the diffusers ODE solvers) maps the same x_T to the same x0 as steps grow: the chain, its
    timesteps, sigmas and input scaling are mapped alike. (At 8 steps they still differ; which is
    closer there is what the quality sweep measures, not what this test claims.)"""
    diffusion = GaussianDiffusion(schedule="cosine", prediction="eps")
    abar = diffusion.tables.alphas_cumprod

    def exact(x: Tensor, t: Tensor) -> Tensor:
        a = abar[t.cpu()].to(x).reshape(-1, 1, 1, 1)
        return (1.0 - a).sqrt() * x / (a * 0.25 + 1.0 - a)

    def run(name: str, steps: int) -> Tensor:
        return sample(exact, diffusion, (256, 1, 1, 1), steps=steps, sampler=name, seed=0,
                      clip_denoised=False)

    reference = run("ddim", 1000)
    for name in ("diffusers-ddim", "dpmsolver++", "unipc", "euler", "heun"):
        assert (run(name, 250) - reference).abs().max() < 0.01, name
    assert (run("dpmsolver++", 8) - reference).abs().max() > 0.01  # not a vacuous comparison


def test_unknown_sampler_is_one_line_everywhere(tmp_path) -> None:
    with pytest.raises(ModelInputError, match="unknown sampler 'dpm'; valid: .*dpmsolver\\+\\+"):
        get_sampler("dpm")
    with pytest.raises(UsageError, match="unknown sampler"):
        SweepSettings(steps=(5,), samplers=("dpm",))
    with pytest.raises(UsageError, match="sampler_steps names unipc, not among samplers"):
        SweepSettings(steps=(5,), samplers=("ddpm",), sampler_steps={"unipc": [5]})
    with pytest.raises(UsageError, match="unknown sampler"):
        time_per_sample(Counting(), steps=2, channels=1, resolution=8, sampler="dpm")
    spec = tmp_path / "unknown-sampler.toml"
    spec.write_text("[matrix]\nmodels = ['unet']\nresolutions = [32]\nbatch_sizes = [1]\n"
                    "metrics = ['sample_time_s']\n[sampling]\nsteps = { unet = [2] }\n"
                    "sampler = 'dpm'\n")
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--config", str(spec), "--out",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr
    assert "'dpm'" in done.stderr and "dpmsolver++" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cudagraph_refuses_a_diffusers_sampler_in_one_line() -> None:
    model = Counting()
    model.capture_safe = True  # the model would be capturable: the sampler is what is refused
    with pytest.raises(ModeError, match="sampler 'dpmsolver\\+\\+' is not capture-safe") as info:
        check_graphable(model, torch.device("cuda"), get_sampler("dpmsolver++"))
    assert "\n" not in str(info.value)


def test_time_per_sample_accepts_every_registered_sampler() -> None:
    for name in ("dpmsolver++", "heun"):
        timing = time_per_sample(Counting(), steps=3, channels=1, resolution=8, sampler=name,
                                 repeats=1, threads=1)
        assert timing.sampler == name and timing.median_s > 0
