"""Hand-counted checks of the three compute counters, the NFE and MACs per ODE evaluation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import flop_counter
from torchdiffeq import odeint

from bench.errors import UsageError
from bench.measure import compute


class Wrap(nn.Module):
    """A denoiser-shaped wrapper `model(x, t)` that ignores t."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class Gain(nn.Module):
    """A leaf module with a parameter that thop has no rule for (element-wise: 0 MACs)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.g


class Attention(nn.Module):
    """Full self-attention over H*W positions: qkv 1x1 conv, two matmuls (or SDPA), out 1x1 conv."""

    def __init__(self, channels: int = 8, heads: int = 2, dim: int = 8, sdpa: bool = False):
        super().__init__()
        self.heads, self.dim, self.sdpa = heads, dim, sdpa
        self.norm = Gain(channels)
        self.qkv = nn.Conv2d(channels, 3 * heads * dim, 1, bias=False)
        self.out = nn.Conv2d(heads * dim, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, self.dim, h * w)
        q, k, v = (z.transpose(-1, -2) for z in qkv.unbind(1))  # (b, heads, N, dim)
        if self.sdpa:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = torch.softmax(q @ k.transpose(-1, -2) * self.dim**-0.5, dim=-1)
            o = attn @ v
        return self.out(o.transpose(-1, -2).reshape(b, self.heads * self.dim, h, w))


class OdeFunc(nn.Module):
    """f(t, z) = softplus(conv3x3(z)); counts its evaluations."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.nfe = 0

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return F.softplus(self.conv(z))


class OdeNet(nn.Module):
    """Optional 1x1 lift, then one torchdiffeq rk4 step over [0, 1] (= 4 evaluations)."""

    def __init__(self, channels: int, lift: bool) -> None:
        super().__init__()
        self.lift = nn.Conv2d(3, channels, 1, bias=False) if lift else nn.Identity()
        self.func = OdeFunc(channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.func.nfe = 0
        grid = torch.tensor([0.0, 1.0])
        return odeint(self.func, self.lift(x), grid, method="rk4")[-1]

    def last_nfe(self) -> dict[str, int]:
        return {"ode": self.func.nfe, "total": self.func.nfe}


ALL = [compute.thop_macs, compute.fvcore_macs, compute.flop_counter_flops]


@pytest.mark.parametrize("count", ALL)
def test_conv2d_macs_are_cout_cin_k_k_hout_wout(count):
    model = Wrap(nn.Conv2d(3, 8, 3, stride=2, padding=1))
    result = count(model, (3, 16, 16))
    assert result.macs == 8 * 3 * 3 * 3 * 8 * 8  # = 13,824 (output 8x8)
    assert result.input_shape == (1, 3, 16, 16)
    assert result.nfe is None and result.amortised_macs_per_eval is None


def test_conv2d_counts_scale_with_batch_and_flop_counter_doubles():
    model = Wrap(nn.Conv2d(3, 8, 3, stride=2, padding=1))
    assert compute.thop_macs(model, (3, 16, 16), batch=2).macs == 2 * 13_824
    assert compute.flop_counter_flops(model, (3, 16, 16)).flops == 2 * 13_824


@pytest.mark.parametrize("count", ALL)
def test_linear_macs_are_in_features_times_outputs(count):
    model = Wrap(nn.Linear(16, 10))  # applied to the last axis of (1, 3, 16, 16)
    assert count(model, (3, 16, 16)).macs == 3 * 16 * 16 * 10  # = 7,680


# Attention at 4x4 (N = 16 positions), 8 channels, 2 heads x 8 dims:
QKV = 48 * 8 * 16  # 1x1 conv 8 -> 48 over 16 positions = 6,144
OUT = 8 * 16 * 16  # 1x1 conv 16 -> 8 over 16 positions = 2,048
MATMULS = 2 * (2 * 16 * 16 * 8)  # q k^T and attn v, per head N*N*dim = 8,192


@pytest.mark.parametrize("sdpa", [False, True])
def test_thop_misses_attention_matmuls_and_names_its_unruled_module(sdpa):
    result = compute.thop_macs(Wrap(Attention(sdpa=sdpa)), (8, 4, 4))
    assert result.macs == QKV + OUT  # 8,192: the matrix products are invisible to thop
    assert result.uncounted_modules == {"Gain": 1}


def test_fvcore_counts_matmul_attention():
    result = compute.fvcore_macs(Wrap(Attention()), (8, 4, 4))
    assert result.macs == QKV + OUT + MATMULS  # 16,384
    assert "aten::scaled_dot_product_attention" not in result.unsupported_ops


def test_fvcore_reports_sdpa_as_unsupported():
    result = compute.fvcore_macs(Wrap(Attention(sdpa=True)), (8, 4, 4))
    assert result.macs == QKV + OUT
    assert result.unsupported_ops["aten::scaled_dot_product_attention"] == 1


@pytest.mark.parametrize("sdpa", [False, True])
def test_flop_counter_counts_attention_or_flags_it(sdpa):
    result = compute.flop_counter_flops(Wrap(Attention(sdpa=sdpa)), (8, 4, 4))
    if sdpa and result.flops == 2 * (QKV + OUT):  # a torch without a formula for this SDPA
        assert any("attention" in op for op in result.uncounted_ops)
    else:
        assert result.flops == 2 * (QKV + OUT + MATMULS)  # 32,768 FLOPs
        assert result.macs == QKV + OUT + MATMULS
        assert result.uncounted_ops == {}
    assert any("softmax" in op for op in result.zero_flop_ops)


def test_flop_counter_flags_matmul_without_formula(monkeypatch):
    reduced = {k: v for k, v in flop_counter.flop_registry.items() if str(k) != "aten.bmm"}
    monkeypatch.setattr(flop_counter, "flop_registry", reduced)
    result = compute.flop_counter_flops(Wrap(Attention()), (8, 4, 4))
    assert result.flops == 2 * (QKV + OUT)
    assert result.uncounted_ops.get("aten.bmm") == 2


def test_thop_leaves_the_callers_model_untouched():
    model = Wrap(Attention())
    model.train()
    before = set(model.state_dict())
    compute.thop_macs(model, (8, 4, 4))
    compute.flop_counter_flops(model, (8, 4, 4))
    assert set(model.state_dict()) == before
    assert all(m.training for m in model.modules())


CONV = 4 * 4 * 9 * 8 * 8  # ODE function: conv3x3 4 -> 4 at 8x8 = 9,216 MACs per evaluation
LIFT = 4 * 3 * 8 * 8  # lift conv1x1 3 -> 4 at 8x8 = 768


@pytest.mark.parametrize("count", ALL)
def test_ode_block_nfe_and_macs_per_evaluation(count):
    model = OdeNet(4, lift=True)
    result = count(model, (3, 8, 8))
    assert result.nfe == compute.NfeCount(total=4, blocks={"ode": 4})  # one rk4 step
    assert result.macs == 4 * CONV + LIFT  # 37,632
    assert compute.macs_per_evaluation(result.macs, result.nfe.total, outside_ode=LIFT) == CONV
    assert result.amortised_macs_per_eval == (4 * CONV + LIFT) / 4


@pytest.mark.parametrize("counter", ["thop", "fvcore", "flop_counter"])
def test_per_evaluation_macs_counts_one_evaluation_of_the_ode_function(counter):
    model = OdeNet(4, lift=True)
    assert compute.per_evaluation_macs(model, "func", (3, 8, 8), counter=counter) == CONV
    assert compute.per_evaluation_macs(model, model.func, (3, 8, 8), counter=counter) == CONV


def test_amortised_equals_per_evaluation_without_outside_layers():
    model = OdeNet(3, lift=False)
    result = compute.thop_macs(model, (3, 8, 8))
    assert result.amortised_macs_per_eval == 3 * 3 * 9 * 8 * 8


def test_call_nfe_and_discrete_models():
    assert compute.call_nfe(OdeNet(4, lift=True), (3, 8, 8)).total == 4
    assert compute.call_nfe(Wrap(nn.Identity()), (3, 8, 8)) is None


def test_bad_input_is_a_usage_error():
    model = Wrap(nn.Conv2d(3, 8, 3))
    with pytest.raises(UsageError):
        compute.thop_macs(model, (3, 16))
    with pytest.raises(UsageError):
        compute.thop_macs(model, (3, 16, 16), batch=0)
    with pytest.raises(UsageError):
        compute.macs_per_evaluation(100, 0)
    with pytest.raises(UsageError):
        compute.per_evaluation_macs(OdeNet(4, lift=True), "nope", (3, 8, 8))
    with pytest.raises(UsageError):
        compute.per_evaluation_macs(OdeNet(4, lift=True), "func", (3, 8, 8), counter="bogus")


def test_flop_counter_does_not_flag_bilinear_upsampling_as_a_gap():
    model = Wrap(nn.Upsample(scale_factor=2, mode="bilinear"))
    result = compute.flop_counter_flops(model, (3, 4, 4))
    assert result.flops == 0 and result.uncounted_ops == {}
    assert any("upsample" in op for op in result.zero_flop_ops)
