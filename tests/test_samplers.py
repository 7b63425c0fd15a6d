"""One definition per sampler: the eager loop and the device-step-counter path that a CUDA graph
replays run the same `Sampler.step`, so they must give identical samples, here checked on the CPU;
options are declared by the sampler and validated generically; a sampler is one class + one line."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.measure.graphed_sampling import DeviceChain, GraphedSampler, check_graphable
from bench.measure.modes import ModeError
from models.diffusion import GaussianDiffusion, sample
from models.diffusion.process import split_prediction
from models.diffusion.respacing import RespacedSchedule
from models.diffusion.samplers import (
    SAMPLERS,
    Coefficients,
    Sampler,
    StepIndex,
    ddim_step,
    ddpm_step,
    get_sampler,
    non_negative_number,
)
from models.errors import ModelInputError


class Tiny(nn.Module):
    """A small nonlinear, time-dependent denoiser."""

    def __init__(self, channels: int = 2, width: int = 8) -> None:
        super().__init__()
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.time = nn.Embedding(1000, width)
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.out(F.silu(self.inp(x) + self.time(t)[:, :, None, None].to(x.dtype)))


class NearOracle(nn.Module):
    """The exact denoiser of N(0, 0.5^2) data plus a small learned-looking perturbation, so that
    samples stay in range and a difference is not hidden by the final clamp to [-1, 1]."""

    def __init__(self, diffusion: GaussianDiffusion, dtype: torch.dtype) -> None:
        super().__init__()
        self.abar, self.prediction = diffusion.tables.alphas_cumprod, diffusion.prediction
        torch.manual_seed(0)
        self.tiny = Tiny().to(dtype)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        abar = self.abar[t.cpu()].to(x).reshape(-1, 1, 1, 1)
        denom = abar * 0.25 + 1.0 - abar
        eps = (1.0 - abar).sqrt() * x / denom + 0.1 * abar.sqrt() * self.tiny(x, t)
        if self.prediction == "eps":
            return eps
        x0 = (x - (1.0 - abar).sqrt() * eps) / abar.sqrt()
        return abar.sqrt() * eps - (1.0 - abar).sqrt() * x0


def _model(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return Tiny().to(dtype).eval()


OPTION_CASES: dict[str, list[dict[str, float]]] = {"ddim": [{}, {"eta": 0.6}, {"eta": 1.0}]}
"""Option settings to check per sampler (a sampler not listed: its defaults only)."""
CASES = [(name, options) for name, cls in SAMPLERS.items() if cls.capture_safe
         for options in OPTION_CASES.get(name, [{}])]


def test_the_built_in_samplers_are_registered_and_capture_safe() -> None:
    assert {"ddpm", "ddim"} <= {name for name, _ in CASES}
    assert all(SAMPLERS[name].name == name for name in SAMPLERS)


@pytest.mark.parametrize(("sampler", "options"), CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16],
                         ids=str)
def test_device_step_counter_path_equals_eager_sampling(sampler: str, options: dict, prediction: str,
                                                        dtype: torch.dtype) -> None:
    """What GraphedSampler captures (tables on the device, step counter tensor, noise drawn up
    front), run without capture, gives bit-identical samples to the eager loop (Python floats):
    a float32, bfloat16 or float16 op rounds a Python-float coefficient to the float32 the table
    holds (float64 samples get float64 tables). On CUDA the two differ by rounding only: there a
    division by a Python float is a multiplication by its reciprocal (tests/test_modes.py)."""
    diffusion = GaussianDiffusion(schedule="sigmoid", prediction=prediction)
    model = NearOracle(diffusion, dtype).eval()
    shape = (3, 2, 6, 6)
    for steps, clip in ((1, True), (6, True), (12, False)):
        with torch.inference_mode():
            eager = sample(model, diffusion, shape, steps=steps, sampler=sampler, seed=5, dtype=dtype,
                           clip_denoised=clip, options=options)
            chain = DeviceChain(model, diffusion, shape, steps=steps, sampler=sampler, seed=5,
                                device=torch.device("cpu"), dtype=dtype, clip_denoised=clip,
                                options=options)
            first, again = chain.run(), chain.run()
        assert torch.equal(first, eager), (steps, clip, float((first - eager).abs().max()))
        assert torch.equal(again, first)
        assert float((eager.abs() < 1).float().mean()) > 0.5  # not all saturated by the clamp


def test_device_chain_draws_noise_only_where_the_sampler_adds_it() -> None:
    diffusion = GaussianDiffusion()
    chain = DeviceChain(_model(), diffusion, (1, 2, 4, 4), steps=5, sampler="ddim", seed=0,
                        device=torch.device("cpu"), dtype=torch.float32)
    assert chain.noise is None  # DDIM eta 0: the step does no noise arithmetic at all
    chain = DeviceChain(_model(), diffusion, (1, 2, 4, 4), steps=5, sampler="ddpm", seed=0,
                        device=torch.device("cpu"), dtype=torch.float32)
    assert chain.noise is not None and chain.noise.shape == (5, 1, 2, 4, 4)
    assert not bool(chain.noise[-1].any()) and bool(chain.noise[0].any())  # none at the last step


# ----------------------------------------------------------------------------- options


def test_options_are_validated_against_what_the_sampler_declares() -> None:
    model, diffusion = _model(), GaussianDiffusion()
    run = lambda **kw: sample(model, diffusion, (1, 2, 4, 4), steps=2, **kw)  # noqa: E731
    with pytest.raises(ModelInputError, match="unknown sampler option 'gamma' for ddim"):
        run(sampler="ddim", gamma=1.0)
    with pytest.raises(ModelInputError, match="eta applies only to the ddim, diffusers-ddim sampler"):
        run(sampler="ddpm", eta=0.5)
    with pytest.raises(ModelInputError, match="eta must be a finite number >= 0, got -1.0"):
        run(sampler="ddim", eta=-1.0)
    for bad in (math.inf, math.nan, "0.5", True):
        with pytest.raises(ModelInputError, match="eta must be"):
            run(sampler="ddim", options={"eta": bad})
    with pytest.raises(ModelInputError, match="given both"):
        run(sampler="ddim", eta=0.5, options={"eta": 0.5})
    with pytest.raises(ModelInputError, match="already configured"):
        run(sampler=get_sampler("ddim", eta=0.5), eta=0.5)
    with pytest.raises(ModelInputError, match="valid: ddpm, ddim, dpmsolver"):
        get_sampler("euler-maruyama")
    for message in ("unknown sampler option", "applies only"):  # one line each
        try:
            get_sampler("ddpm", **({"eta": 1.0} if message == "applies only" else {"x": 1}))
        except ModelInputError as error:
            assert message in str(error) and "\n" not in str(error)


def test_an_option_comes_as_a_keyword_or_in_options_and_the_default_of_another_asks_nothing() -> None:
    model, diffusion = _model(), GaussianDiffusion()
    run = lambda **kw: sample(model, diffusion, (2, 2, 4, 4), steps=6, seed=1, **kw)  # noqa: E731
    assert torch.equal(run(sampler="ddim", eta=0.5), run(sampler="ddim", options={"eta": 0.5}))
    assert torch.equal(run(sampler="ddim", eta=0.5), run(sampler=get_sampler("ddim", eta=0.5)))
    assert not torch.equal(run(sampler="ddim", eta=0.5), run(sampler="ddim"))
    assert torch.equal(run(sampler="ddpm", eta=0.0), run(sampler="ddpm"))
    assert get_sampler("ddim").eta == 0.0 and get_sampler("ddim", eta=1).eta == 1.0


# ----------------------------------------------------------------------------- a new sampler


class Tempered(Sampler):
    """Ancestral sampling with the added noise scaled by `temperature` (1: DDPM exactly)."""

    name = "tempered"
    options = {"temperature": non_negative_number(1.0)}
    capture_safe = True
    temperature: float

    def step_values(self, schedule: RespacedSchedule, i: int) -> dict[str, float]:
        abar = float(schedule.alphas_cumprod[i])
        std = math.sqrt(float(schedule.posterior_variance[i])) if i else 0.0
        return {"sqrt_abar": math.sqrt(abar), "sqrt_one_minus_abar": math.sqrt(1.0 - abar),
                "coef1": float(schedule.posterior_mean_coef1[i]),
                "coef2": float(schedule.posterior_mean_coef2[i]),
                "noise_std": self.temperature * std}

    def step(self, output: Tensor, x: Tensor, k: StepIndex, coeffs: Coefficients, prediction: str,
             noise: Tensor | None, clip: bool) -> Tensor:
        c = coeffs.at(k)
        _, x0 = split_prediction(output, x, c["sqrt_abar"], c["sqrt_one_minus_abar"], prediction, clip)
        mean = x0 * c["coef1"] + x * c["coef2"]
        return mean if noise is None else mean + noise * c["noise_std"]


def test_a_sampler_is_one_class_plus_one_registry_line(monkeypatch) -> None:
    monkeypatch.setitem(SAMPLERS, "tempered", Tempered)  # the one line
    model, diffusion = _model(), GaussianDiffusion(prediction="v")
    run = lambda **kw: sample(model, diffusion, (2, 2, 6, 6), steps=8, seed=2, **kw)  # noqa: E731
    assert torch.equal(run(sampler="tempered"), run(sampler="ddpm"))
    cold = run(sampler="tempered", temperature=0.0)
    assert torch.equal(cold, run(sampler="tempered", options={"temperature": 0.0}))
    assert not torch.equal(cold, run(sampler="ddpm"))
    with pytest.raises(ModelInputError, match="temperature must be a finite number >= 0"):
        run(sampler="tempered", temperature=-0.5)
    with pytest.raises(ModelInputError, match="temperature applies only to the tempered sampler"):
        run(sampler="ddim", temperature=0.5)
    assert torch.equal(run(sampler="ddim", temperature=1.0), run(sampler="ddim"))  # its default
    with torch.inference_mode():
        chain = DeviceChain(model, diffusion, (2, 2, 6, 6), steps=8, sampler="tempered", seed=2,
                            device=torch.device("cpu"), dtype=torch.float32,
                            options={"temperature": 0.5})
        assert torch.equal(chain.run(), run(sampler="tempered", temperature=0.5))


class HostReading(Tempered):
    name = "host-reading"
    capture_safe = False


def test_graphing_refuses_a_sampler_that_is_not_capture_safe_in_one_line() -> None:
    model, diffusion = _model(), GaussianDiffusion()
    with pytest.raises(ModeError, match="sampler 'host-reading' is not capture-safe") as info:
        check_graphable(model, torch.device("cuda"), HostReading())  # the device check passes
    assert "\n" not in str(info.value)
    check_graphable(model, torch.device("cuda"), get_sampler("ddim"))
    with pytest.raises(ModeError, match="needs a CUDA device"):
        GraphedSampler(model, diffusion, (1, 2, 4, 4), steps=2, sampler="ddpm", seed=0,
                       device=torch.device("cpu"), dtype=torch.float32)


def test_single_step_functions_are_the_samplers_step() -> None:
    """ddpm_step / ddim_step (a schedule and a respaced index, as the breakdown profiles one step)
    compute what the sampler's step computes at that point of the chain."""
    diffusion = GaussianDiffusion(prediction="v")
    schedule = diffusion.respace(10)
    torch.manual_seed(4)
    x, out, z = torch.randn(2, 2, 4, 4), torch.randn(2, 2, 4, 4), torch.randn(2, 2, 4, 4)
    for i in (0, 4, 9):
        k = schedule.num_steps - 1 - i
        for chosen, single in ((get_sampler("ddpm"), ddpm_step(out, x, i, schedule, "v", lambda: z)),
                               (get_sampler("ddim", eta=0.3),
                                ddim_step(out, x, i, schedule, "v", lambda: z, eta=0.3))):
            coeffs = chosen.coefficients(schedule)
            noise = z if chosen.needs_noise(coeffs, k) else None
            assert torch.equal(single, chosen.step(out, x, k, coeffs, "v", noise, True))
