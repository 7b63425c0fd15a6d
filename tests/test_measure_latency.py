"""The one timer: statistics, repeated calls, and how the latency cell calls a denoiser (eval,
inference mode, fixed threads, one input built once)."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from bench.errors import UsageError
from bench.matrix.measure_cells import time_pairs
from bench.matrix.spec import parse_spec
from bench.measure.interleaved import InterleavePlan
from bench.measure.latency import quantile, stats_of, time_calls, timer_for, timer_name

CPU = torch.device("cpu")


def sleeper(seconds: float, calls: list[float]):
    def fn() -> None:
        calls.append(time.perf_counter())
        time.sleep(seconds)

    return fn


def test_time_calls_times_every_call_and_orders_its_stats():
    calls: list[float] = []
    stats = time_calls(sleeper(0.002, calls), 8, CPU)
    assert stats.n == 8 and len(calls) == 8 and stats.timer == "perf_counter"
    assert 2.0 <= stats.min_ms <= stats.median_ms <= stats.p90_ms
    assert stats.min_ms <= stats.mean_ms < 1000


def test_the_cpu_timer_measures_wall_milliseconds():
    assert 10.0 <= timer_for(CPU)(lambda: time.sleep(0.01), CPU) < 500
    assert timer_name(CPU) == "perf_counter"


def test_quantile_interpolates():
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert quantile([4.0, 1.0, 3.0, 2.0, 5.0], 0.9) == pytest.approx(4.6)
    assert quantile([7.0], 0.9) == 7.0
    assert stats_of([3.0, 1.0, 2.0]).median_ms == 2.0


def test_bad_settings_are_usage_errors():
    with pytest.raises(UsageError):
        time_calls(lambda: None, 0, CPU)
    with pytest.raises(UsageError):
        quantile([], 0.5)


class Net(nn.Module):
    """Fails its call unless it is called as the latency cell must call it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x, t):
        if x.shape[0] == 1:  # the one call that checks a user's model when the matrix is read
            return self.conv(x)
        assert torch.is_inference_mode_enabled() and not self.training
        assert torch.get_num_threads() == 1
        assert t.tolist() == [500, 500] and t.dtype == torch.int64 and x.shape == (2, 3, 8, 8)
        return self.conv(x)


def make_net() -> nn.Module:
    """The factory the latency test's matrix loads from this file."""
    return Net().train()


def test_the_latency_cell_calls_in_eval_and_inference_mode_with_fixed_threads():
    spec = parse_spec({
        "matrix": {"models": ["net"], "resolutions": [8], "metrics": ["latency_ms"], "threads": 1},
        "models": {"net": {"factory": f"{__file__}:make_net"}},
    }, name="t")
    threads_before = torch.get_num_threads()
    pairs = time_pairs(spec, ["net"], "net",
                       plan=lambda _: InterleavePlan(min_rounds=3, max_rounds=3, calls=1),
                       device="cpu", dtype="float32", resolution=8, batch=2)
    assert pairs.failed == {} and pairs.threads == 1 and torch.get_num_threads() == threads_before
    assert pairs.timing.stats["net|eager"].n == 3 and pairs.timing.ratios == {"net|eager": 1.0}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_latency_uses_events():
    dev = torch.device("cuda")
    x = torch.randn(64, 64, device=dev)
    stats = time_calls(lambda: x @ x, 3, dev)
    assert stats.timer == "cuda-event" and stats.n == 3 and stats.median_ms > 0
