"""Tests of models.diffusion: schedules, respacing, forward process, samplers, training loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.diffusion import (
    SAMPLERS,
    SCHEDULES,
    GaussianDiffusion,
    RespacedSchedule,
    make_betas,
    sample,
)
from models.diffusion.samplers import get_sampler
from models.errors import ModelInputError

T = 1000


class TinyDenoiser(nn.Module):
    """Stand-in denoiser: two convs and a learned time embedding; records how it was called."""

    def __init__(self, channels: int = 1, width: int = 8) -> None:
        super().__init__()
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.time = nn.Embedding(T, width)
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        self.seen_t: list[Tensor] = []
        self.seen_training: list[bool] = []

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        self.seen_t.append(t.detach().clone())
        self.seen_training.append(self.training)
        h = self.inp(x) + self.time(t)[:, :, None, None]
        return self.out(F.silu(h))


def gaussian_oracle(diffusion: GaussianDiffusion, std: float):
    """The exact optimal denoiser when the data are N(0, std^2 I): a model with known samples."""
    abar_table = diffusion.tables.alphas_cumprod

    def model(x: Tensor, t: Tensor) -> Tensor:
        abar = abar_table[t.cpu()].to(x).reshape(-1, *([1] * (x.ndim - 1)))
        denom = abar * std**2 + 1.0 - abar
        eps = (1.0 - abar).sqrt() * x / denom
        x0 = abar.sqrt() * std**2 * x / denom
        if diffusion.prediction == "eps":
            return eps
        return abar.sqrt() * eps - (1.0 - abar).sqrt() * x0

    return model


class NearOracle(nn.Module):
    """The Gaussian-data oracle plus a small learned-looking perturbation (float64): a nonlinear,
    time-dependent model whose samples stay in range, so literal update checks are not masked by
    the final clamp to [-1, 1]."""

    def __init__(self, diffusion: GaussianDiffusion, channels: int) -> None:
        super().__init__()
        self.oracle = gaussian_oracle(diffusion, std=0.5)
        self.tiny = TinyDenoiser(channels).double()
        self.abar = diffusion.tables.alphas_cumprod

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        # An eps error e moves x0_hat by sqrt(1 - abar) / sqrt(abar) * e: scale it to stay bounded.
        scale = self.abar[t].sqrt().reshape(-1, 1, 1, 1)
        return self.oracle(x, t) + 0.1 * scale * self.tiny(x, t)


def abar_of(schedule: str) -> Tensor:
    return torch.cumprod(1.0 - make_betas(schedule), dim=0)


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("timesteps", [1000, 50])
def test_schedule_betas_in_unit_interval_and_abar_decreasing(schedule: str, timesteps: int):
    betas = make_betas(schedule, timesteps)
    assert betas.dtype == torch.float64 and betas.shape == (timesteps,)
    assert bool((betas > 0).all()) and bool((betas < 1).all())
    abar = torch.cumprod(1.0 - betas, dim=0)
    assert bool((abar[1:] < abar[:-1]).all())
    assert abar[-1] < 1e-2  # the chain ends (nearly) in pure noise


def test_linear_schedule_endpoints_scale_with_length():
    assert make_betas("linear")[0].item() == pytest.approx(1e-4)
    assert make_betas("linear")[-1].item() == pytest.approx(0.02)
    assert make_betas("linear", 500)[0].item() == pytest.approx(2e-4)
    assert make_betas("linear", 500)[-1].item() == pytest.approx(0.04)


def test_cosine_and_sigmoid_abar_follow_their_formulas():
    s = 0.008

    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    # abar after step index 499 is abar(t = 500 / 1000).
    assert abar_of("cosine")[499].item() == pytest.approx(f(0.5) / f(0.0), rel=1e-9)
    # The sigmoid schedule is symmetric around its midpoint: abar(1/2) = 1/2.
    assert abar_of("sigmoid")[499].item() == pytest.approx(0.5, rel=1e-9)
    assert make_betas("cosine")[-1].item() == pytest.approx(0.999)
    assert make_betas("sigmoid")[-1].item() == pytest.approx(0.999)


def test_unknown_schedule_error_lists_valid_names():
    with pytest.raises(ModelInputError) as info:
        make_betas("quadratic")
    message = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in message
    assert all(name in message for name in SCHEDULES)
    with pytest.raises(ModelInputError):
        GaussianDiffusion(schedule="quadratic")


# ----------------------------------------------------------------------------- respacing


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("steps", [1, 2, 3, 10, 37, 999, 1000])
def test_respaced_chain_keeps_original_abar(schedule: str, steps: int):
    rs = GaussianDiffusion(schedule=schedule).respace(steps)
    assert isinstance(rs, RespacedSchedule)
    kept = rs.timesteps
    assert kept.dtype == torch.long and kept.shape == (steps,)
    assert bool((kept[1:] > kept[:-1]).all())
    assert int(kept[-1]) == T - 1
    if steps >= 2:
        assert int(kept[0]) == 0
    chain_abar = torch.cumprod(1.0 - rs.betas, dim=0)
    assert chain_abar.dtype == torch.float64
    # rtol: 1 - beta keeps only ~1e-16 / (1 - beta) relative precision, and a respaced cosine step
    # into t = 999 has 1 - beta ~ 1e-9 (float64 cancellation, not a respacing error).
    assert torch.allclose(chain_abar, abar_of(schedule)[kept], rtol=1e-6, atol=0)
    assert bool((rs.betas > 0).all()) and bool((rs.betas < 1).all())


def test_respacing_picks_evenly_spaced_steps():
    diffusion = GaussianDiffusion()
    assert diffusion.respace(10).timesteps.tolist() == [
        0,
        111,
        222,
        333,
        444,
        555,
        666,
        777,
        888,
        999,
    ]
    assert diffusion.respace(3).timesteps.tolist() == [0, 500, 999]
    assert diffusion.respace(2).timesteps.tolist() == [0, 999]
    single = diffusion.respace(1)
    assert single.timesteps.tolist() == [999]
    assert single.betas.item() == pytest.approx(1.0 - abar_of("linear")[-1].item(), rel=1e-12)


def test_respacing_to_all_steps_is_the_identity():
    rs = GaussianDiffusion(schedule="cosine").respace(T)
    assert torch.equal(rs.timesteps, torch.arange(T))
    assert torch.allclose(rs.betas, make_betas("cosine"), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("steps", [0, -1, T + 1, 2.5])
def test_respacing_out_of_range_names_valid_range(steps):
    with pytest.raises(ModelInputError, match=r"\[1, 1000\]"):
        GaussianDiffusion().respace(steps)


# ----------------------------------------------------------------------------- forward process


def test_schedule_is_saved_as_float32_buffers():
    diffusion = GaussianDiffusion(schedule="sigmoid", prediction="v")
    state = diffusion.state_dict()
    for name in (
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
    ):
        assert state[name].dtype == torch.float32 and state[name].shape == (T,)
    assert torch.allclose(state["betas"].double(), make_betas("sigmoid"), rtol=1e-6)
    assert (diffusion.num_timesteps, diffusion.schedule, diffusion.prediction) == (
        T,
        "sigmoid",
        "v",
    )


def test_loading_other_betas_rebuilds_the_float64_schedule():
    x0, noise = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    t = torch.tensor([10, 900])
    linear, cosine = GaussianDiffusion(schedule="linear"), GaussianDiffusion(schedule="cosine")
    before = cosine.q_sample(x0, t, noise)
    cosine.load_state_dict(linear.state_dict())
    after = cosine.q_sample(x0, t, noise)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, linear.q_sample(x0, t, noise), atol=1e-6)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_q_sample_and_target_match_formulas_and_invert(prediction: str):
    diffusion = GaussianDiffusion(schedule="cosine", prediction=prediction)
    gen = torch.Generator().manual_seed(3)
    x0 = torch.rand(4, 2, 5, 5, generator=gen, dtype=torch.float64) * 2 - 1
    noise = torch.randn(4, 2, 5, 5, generator=gen, dtype=torch.float64)
    t = torch.tensor([0, 1, 500, 999])
    a = abar_of("cosine")[t].reshape(-1, 1, 1, 1)
    x_t = diffusion.q_sample(x0, t, noise)
    assert torch.allclose(x_t, a.sqrt() * x0 + (1 - a).sqrt() * noise, rtol=1e-12, atol=1e-12)
    target = diffusion.training_target(x0, t, noise)
    expected = noise if prediction == "eps" else a.sqrt() * noise - (1 - a).sqrt() * x0
    assert torch.allclose(target, expected, rtol=1e-12, atol=1e-12)
    eps_hat, x0_hat = diffusion.predict_eps_and_x0(target, x_t, t)
    assert torch.allclose(eps_hat, noise, atol=1e-9)
    # At t = 999 an eps model's x0 estimate divides by sqrt(abar) ~ 0.006: allow for that.
    assert torch.allclose(x0_hat, x0, atol=1e-7)


def test_predict_x0_clipping_keeps_eps_consistent():
    diffusion = GaussianDiffusion(prediction="v")
    x_t = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 3
    t = torch.tensor([100, 400, 800])
    eps, x0 = diffusion.predict_eps_and_x0(torch.zeros_like(x_t), x_t, t, clip_x0=True)
    assert float(x0.abs().max()) <= 1.0
    assert not torch.equal(x0, diffusion.predict_eps_and_x0(torch.zeros_like(x_t), x_t, t)[1])
    a = abar_of("linear")[t].reshape(-1, 1, 1, 1).float()
    assert torch.allclose(a.sqrt() * x0 + (1 - a).sqrt() * eps, x_t, atol=1e-5)


# ----------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("steps", [1, 2, 10])
def test_samples_are_seeded_and_use_original_timesteps(sampler: str, steps: int, prediction: str):
    diffusion = GaussianDiffusion(schedule="sigmoid", prediction=prediction)
    torch.manual_seed(0)
    model = TinyDenoiser(channels=2)
    shape = (3, 2, 6, 6)
    first = sample(model, diffusion, shape, steps=steps, sampler=sampler, seed=7)
    assert first.shape == shape and first.dtype == torch.float32 and first.device.type == "cpu"
    assert bool(torch.isfinite(first).all()) and float(first.abs().max()) <= 1.0
    seen = list(model.seen_t)
    assert len(seen) == get_sampler(sampler).model_calls(steps)  # Heun: 2 per step but the last
    expected = diffusion.respace(steps).timesteps.flip(0).tolist()
    called = []
    for t in seen:
        assert t.dtype == torch.long and t.shape == (shape[0],)
        assert int(t.min()) >= 0 and int(t.max()) < T
        assert t.tolist() == [int(t[0])] * shape[0]
        called.append(int(t[0]))
    # every kept timestep, noisiest first (a second-order step calls it again at its end point)
    assert [k for i, k in enumerate(called) if i == 0 or k != called[i - 1]] == expected
    assert torch.equal(first, sample(model, diffusion, shape, steps=steps, sampler=sampler, seed=7))
    other = sample(model, diffusion, shape, steps=steps, sampler=sampler, seed=8)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_thousand_step_sampling_with_a_cheap_model(sampler: str):
    diffusion = GaussianDiffusion()
    model = gaussian_oracle(diffusion, std=0.3)
    first = sample(model, diffusion, (1, 1, 4, 4), steps=T, sampler=sampler, seed=1)
    assert first.shape == (1, 1, 4, 4) and bool(torch.isfinite(first).all())
    assert torch.equal(first, sample(model, diffusion, (1, 1, 4, 4), steps=T, sampler=sampler, seed=1))
    other = sample(model, diffusion, (1, 1, 4, 4), steps=T, sampler=sampler, seed=2)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize(("sampler", "eta"), [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 1.0)])
def test_samplers_reproduce_gaussian_data_with_the_optimal_denoiser(sampler, eta, prediction):
    """With the exact denoiser of N(0, 0.3^2) data, correct samplers must produce that law
    (at 1000 steps; with few steps DDPM's beta-tilde variance visibly shrinks the spread)."""
    diffusion = GaussianDiffusion(schedule="cosine", prediction=prediction)
    model = gaussian_oracle(diffusion, std=0.3)
    x = sample(
        model,
        diffusion,
        (256, 1, 8, 8),
        steps=T,
        sampler=sampler,
        eta=eta,
        clip_denoised=False,
        seed=0,
    )
    assert abs(float(x.mean())) < 0.01
    assert float(x.std()) == pytest.approx(0.3, abs=0.01)


def test_ddim_with_eta_1_is_ddpm():
    diffusion = GaussianDiffusion(schedule="sigmoid")
    torch.manual_seed(3)
    model = TinyDenoiser()
    ddpm = sample(model, diffusion, (2, 1, 6, 6), steps=10, sampler="ddpm", seed=11)
    ddim = sample(model, diffusion, (2, 1, 6, 6), steps=10, sampler="ddim", seed=11, eta=1.0)
    assert torch.allclose(ddpm, ddim, atol=1e-5)


def _literal_chain(model, shape, kept, seed, schedule, update):
    """Run `update` over the kept steps with noise drawn as sample() documents: x_T, then one z per
    noisy step; betas recomputed here from the original schedule."""
    gen = torch.Generator().manual_seed(seed)
    abar_full = abar_of(schedule)
    x = torch.randn(shape, generator=gen, dtype=torch.float32).double()
    for i in reversed(range(len(kept))):
        abar = abar_full[kept[i]].item()
        abar_prev = abar_full[kept[i - 1]].item() if i > 0 else 1.0
        eps = model(x, torch.full((shape[0],), kept[i], dtype=torch.long))
        x = update(x, eps, abar, abar_prev, gen, i)
    return x.clamp(-1, 1).float()


def test_ddpm_step_is_the_papers_equation_1():
    diffusion = GaussianDiffusion(schedule="linear")
    torch.manual_seed(0)
    model = NearOracle(diffusion, channels=3).eval()
    shape = (2, 3, 5, 5)

    def eq1(x, eps, abar, abar_prev, gen, i):
        beta = 1.0 - abar / abar_prev
        alpha = 1.0 - beta
        x = 1.0 / math.sqrt(alpha) * (x - beta / math.sqrt(1.0 - abar) * eps)
        if i > 0:
            sigma = math.sqrt(beta * (1.0 - abar_prev) / (1.0 - abar))
            x = x + sigma * torch.randn(shape, generator=gen, dtype=torch.float32).double()
        return x

    got = sample(
        model,
        diffusion,
        shape,
        steps=3,
        sampler="ddpm",
        seed=5,
        dtype=torch.float64,
        clip_denoised=False,
    )
    want = _literal_chain(model, shape, [0, 500, 999], 5, "linear", eq1)
    assert float((want.abs() < 1).float().mean()) > 0.5  # not all saturated by the final clamp
    assert torch.allclose(got, want, rtol=0, atol=1e-6)


def test_ddim_eta0_step_matches_song_et_al():
    diffusion = GaussianDiffusion(schedule="sigmoid")
    torch.manual_seed(1)
    model = NearOracle(diffusion, channels=1).eval()
    shape = (2, 1, 6, 6)

    def ddim(x, eps, abar, abar_prev, gen, i):
        x0 = (x - math.sqrt(1.0 - abar) * eps) / math.sqrt(abar)
        return math.sqrt(abar_prev) * x0 + math.sqrt(1.0 - abar_prev) * eps

    got = sample(
        model,
        diffusion,
        shape,
        steps=3,
        sampler="ddim",
        seed=9,
        dtype=torch.float64,
        clip_denoised=False,
    )
    want = _literal_chain(model, shape, [0, 500, 999], 9, "sigmoid", ddim)
    assert float((want.abs() < 1).float().mean()) > 0.5
    assert torch.allclose(got, want, rtol=0, atol=1e-6)


def test_one_step_samplers_agree_on_the_x0_prediction():
    diffusion = GaussianDiffusion(prediction="v")
    torch.manual_seed(2)
    model = TinyDenoiser()
    ddpm = sample(model, diffusion, (2, 1, 4, 4), steps=1, sampler="ddpm", seed=4)
    ddim = sample(model, diffusion, (2, 1, 4, 4), steps=1, sampler="ddim", seed=4)
    assert torch.allclose(ddpm, ddim, atol=1e-6)


def test_sampling_uses_eval_mode_and_restores_training_mode():
    model = TinyDenoiser()
    model.train()
    sample(model, GaussianDiffusion(), (1, 1, 4, 4), steps=2)
    assert model.seen_training == [False, False]
    assert model.training
    model.eval()
    sample(model, GaussianDiffusion(), (1, 1, 4, 4), steps=2)
    assert not model.training


def test_sampler_input_errors():
    model, diffusion = TinyDenoiser(), GaussianDiffusion()
    with pytest.raises(ModelInputError) as info:
        sample(model, diffusion, (1, 1, 4, 4), steps=2, sampler="euler-maruyama")
    assert "ddpm" in str(info.value) and "dpmsolver++" in str(info.value)
    for steps in (0, T + 1):
        with pytest.raises(ModelInputError, match=r"\[1, 1000\]"):
            sample(model, diffusion, (1, 1, 4, 4), steps=steps)
    with pytest.raises(ModelInputError, match="eta"):
        sample(model, diffusion, (1, 1, 4, 4), steps=2, sampler="ddpm", eta=0.5)
    with pytest.raises(ModelInputError, match="eta"):
        sample(model, diffusion, (1, 1, 4, 4), steps=2, sampler="ddim", eta=-1.0)
    assert model.seen_t == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sampling_matches_cpu():
    diffusion = GaussianDiffusion(prediction="v")
    torch.manual_seed(0)
    model = TinyDenoiser()
    cpu = sample(model, diffusion, (2, 1, 8, 8), steps=10, sampler="ddim", seed=3)
    gpu = sample(
        model.cuda(),
        diffusion.cuda(),
        (2, 1, 8, 8),
        steps=10,
        sampler="ddim",
        seed=3,
        device="cuda",
    )
    assert torch.allclose(cpu, gpu, atol=1e-4)


# ----------------------------------------------------------------------------- training loss


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_training_loss_is_a_reproducible_finite_scalar(prediction: str):
    diffusion = GaussianDiffusion(schedule="sigmoid", prediction=prediction)
    torch.manual_seed(0)
    model = TinyDenoiser()
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1

    def loss(seed: int) -> Tensor:
        return diffusion.training_loss(model, x0, generator=torch.Generator().manual_seed(seed))

    first = loss(0)
    assert first.ndim == 0 and bool(torch.isfinite(first))
    assert torch.equal(first, loss(0))
    assert not torch.equal(first, loss(1))
    assert all(int(t.min()) >= 0 and int(t.max()) < T for t in model.seen_t)


def _adam_steps(params: list[Tensor], loss_fn, steps: int, lr: float = 1e-2) -> None:
    """Plain Adam (Kingma & Ba, betas 0.9 / 0.999). Written out because torch.optim's first use
    imports torch._dynamo, which alone takes many seconds on a busy 2-core machine."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for k in range(1, steps + 1):
        grads = torch.autograd.grad(loss_fn(), params)
        with torch.no_grad():
            for p, g, m_p, v_p in zip(params, grads, m, v, strict=True):
                m_p.mul_(b1).add_(g, alpha=1 - b1)
                v_p.mul_(b2).addcmul_(g, g, value=1 - b2)
                p -= lr * (m_p / (1 - b1**k)) / ((v_p / (1 - b2**k)).sqrt() + eps)


def test_training_loss_falls_when_fitting_one_batch():
    diffusion = GaussianDiffusion(schedule="cosine")
    torch.manual_seed(0)
    model = TinyDenoiser()
    x0 = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1

    def held_out_loss() -> float:
        with torch.no_grad():
            gen = torch.Generator().manual_seed(123)
            return sum(diffusion.training_loss(model, x0, generator=gen).item() for _ in range(8))

    before = held_out_loss()
    gen = torch.Generator().manual_seed(0)
    _adam_steps(list(model.parameters()), lambda: diffusion.training_loss(model, x0, generator=gen), 50)
    assert held_out_loss() < 0.7 * before
