"""Peak memory: in-process profiler stand-in checks, and the fresh-subprocess CPU probe."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.errors import UsageError
from bench.measure.memory import (
    MemoryProbeError,
    peak_memory,
    peak_memory_profiler,
    peak_memory_subprocess,
)
from models.source import model_source

HERE = __file__


def standin(**kwargs: int):
    """This file's stand-in, as the matrix names a user's factory."""
    return model_source(f"{HERE}:make_standin", kwargs)


class StandIn(nn.Module):
    """Denoiser-shaped conv net whose weights grow as width**2."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, width, 3, padding=1)
        self.b = nn.Conv2d(width, width, 3, padding=1)
        self.c = nn.Conv2d(width, 3, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def make_standin(width: int = 8) -> nn.Module:
    """Factory the subprocess probe loads from this file."""
    return StandIn(width)


class StandInDiffusion(nn.Module):
    def training_loss(self, model, x0, generator=None):
        t = torch.zeros(x0.shape[0], dtype=torch.int64)
        return model(x0, t).square().mean()


def test_profiler_peak_grows_with_the_model_and_with_training():
    small = peak_memory_profiler(StandIn(8), shape=(3, 16, 16))
    large = peak_memory_profiler(StandIn(128), shape=(3, 16, 16))
    assert large.peak_mib > small.peak_mib
    weights = (128 * 3 * 9 + 128 + 128 * 128 * 9 + 128 + 3 * 128 + 3) * 4 / 2**20
    assert large.weights_mib == pytest.approx(weights)
    assert large.peak_mib > large.weights_mib  # activations on top of the weights
    train = peak_memory_profiler(
        StandIn(128), shape=(3, 16, 16), phase="train", diffusion=StandInDiffusion()
    )
    assert train.peak_mib > large.peak_mib + 2 * weights  # gradients + two Adam moments
    assert train.method == "cpu-profiler-tensors" and train.phase == "train"


def test_subprocess_probe_counts_the_weights():
    width = 512  # 9.4 MiB of conv weights
    result = peak_memory_subprocess(standin(width=width), shape=(3, 16, 16), threads=1,
                                    timeout_s=300)
    assert result.method == "cpu-subprocess-rss" and result.device == "cpu"
    assert result.weights_mib > 9
    assert result.peak_mib >= 0.9 * result.weights_mib
    assert result.baseline_mib > 0 and result.threads == 1


@pytest.mark.slow
def test_subprocess_probe_larger_model_more_memory():
    small, large = (
        peak_memory_subprocess(standin(width=width), shape=(3, 16, 16))
        for width in (16, 512)
    )
    assert large.peak_mib > small.peak_mib + 5


def test_subprocess_failures_are_clear_exceptions():
    with pytest.raises(MemoryProbeError, match="timed out"):
        peak_memory_subprocess(standin(), timeout_s=0.01)
    with pytest.raises(MemoryProbeError, match="failed"):
        peak_memory_subprocess(standin(), shape=(1, 16, 16), timeout_s=300)  # the work raises
    with pytest.raises(UsageError, match="memory probe failed .*cannot import"):
        peak_memory_subprocess(model_source("/nonexistent/factory.py:make"), timeout_s=300)
    with pytest.raises(UsageError, match="memory phase must be"):
        peak_memory_subprocess(standin(), phase="sampling")
    with pytest.raises(UsageError):
        peak_memory(standin(), device="cuda:99" if torch.cuda.is_available() else "cuda")


@pytest.mark.slow
def test_subprocess_probe_of_a_real_preset():
    import models

    if not hasattr(models, "build"):
        pytest.skip("models.build does not exist yet")
    result = peak_memory(model_source("cunet-noattn-nores"), device="cpu", shape=(3, 64, 64))
    assert result.peak_mib >= result.weights_mib > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_includes_weights_and_grows_with_training():
    from bench.measure.memory import peak_memory_cuda

    model = StandIn(128)
    inference = peak_memory_cuda(model, shape=(3, 16, 16))
    train = peak_memory_cuda(model, shape=(3, 16, 16), phase="train", diffusion=StandInDiffusion())
    assert inference.peak_mib >= inference.weights_mib > 0
    assert train.peak_mib > inference.peak_mib + 2 * inference.weights_mib
    assert next(model.parameters()).device.type == "cpu"  # the caller's model stays put


def test_bfloat16_inference_memory_holds_bfloat16_weights_only() -> None:
    """The weights are created in bfloat16 (no float32 copy counted): half the float32 weight
    bytes, and a peak well below the float32 one (the U-Net: 136 MiB of float32 weights)."""
    from bench.measure.memory import peak_memory

    f32 = peak_memory(model_source("unet"), device="cpu", shape=(3, 32, 32), threads=1,
                      dtype="float32")
    bf16 = peak_memory(model_source("unet"), device="cpu", shape=(3, 32, 32), threads=1,
                       dtype="bfloat16")
    assert bf16.weights_mib == pytest.approx(f32.weights_mib / 2, rel=0.01)
    assert bf16.peak_mib < f32.peak_mib - 0.3 * f32.weights_mib
