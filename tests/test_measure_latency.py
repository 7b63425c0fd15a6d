"""Timing loop: warm-up, stopping rule, sane statistics; denoiser latency with fixed threads."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from bench.errors import UsageError
from bench.measure.latency import denoiser_latency, measure_latency, quantile


def sleeper(seconds: float, calls: list[float]):
    def fn() -> None:
        calls.append(time.perf_counter())
        time.sleep(seconds)

    return fn


def test_stats_are_ordered_and_warmup_is_untimed():
    calls: list[float] = []
    stats = measure_latency(
        sleeper(0.002, calls), warmup=2, min_repeats=3, max_repeats=8, budget_s=60.0
    )
    assert stats.n == 8 and len(calls) == 2 + 8  # budget never reached: stops at max_repeats
    assert 2.0 <= stats.min_ms <= stats.median_ms <= stats.p90_ms
    assert stats.min_ms <= stats.mean_ms < 1000


def test_budget_stops_after_min_repeats():
    calls: list[float] = []
    begin = time.perf_counter()
    stats = measure_latency(
        sleeper(0.01, calls), warmup=0, min_repeats=2, max_repeats=10_000, budget_s=0.1
    )
    elapsed = time.perf_counter() - begin
    assert 2 <= stats.n < 15  # ~10 calls of 10 ms fit in the budget
    assert elapsed < 0.1 + 0.5  # at most one call past the budget (plus scheduling slack)


def test_min_repeats_win_over_the_budget():
    stats = measure_latency(lambda: None, warmup=0, min_repeats=4, max_repeats=10, budget_s=0.0)
    assert stats.n == 4


def test_quantile_interpolates():
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert quantile([4.0, 1.0, 3.0, 2.0, 5.0], 0.9) == pytest.approx(4.6)
    assert quantile([7.0], 0.9) == 7.0


def test_bad_settings_are_usage_errors():
    with pytest.raises(UsageError):
        measure_latency(lambda: None, min_repeats=5, max_repeats=2)
    with pytest.raises(UsageError):
        measure_latency(lambda: None, device="tpu")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.t_seen: list[torch.Tensor] = []

    def forward(self, x, t):
        self.t_seen.append(t)
        assert torch.is_inference_mode_enabled() and not self.training
        return self.conv(x)


def test_denoiser_latency_fixes_threads_and_restores_them():
    model = Net().train()
    threads_before = torch.get_num_threads()
    result = denoiser_latency(
        model, batch=2, channels=3, resolution=8, threads=1, timestep=10,
        warmup=1, min_repeats=3, max_repeats=3, budget_s=0.0,
    )
    assert result.threads == 1 and torch.get_num_threads() == threads_before
    assert result.stats.n == 3 and len(model.t_seen) == 4
    assert model.t_seen[0].tolist() == [10, 10] and model.t_seen[0].dtype == torch.int64
    assert (result.batch, result.input_shape, result.device, result.dtype) == (
        2, (3, 8, 8), "cpu", "float32",
    )
    assert model.training  # the caller's flag is restored


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_latency_uses_events():
    result = denoiser_latency(Net(), device="cuda", resolution=8, min_repeats=3, max_repeats=3)
    assert result.stats.timer == "cuda-event" and result.stats.n == 3
    assert result.stats.median_ms > 0
