"""Timing loop and per-call denoiser latency.

`measure_latency` runs `warmup` untimed calls, then timed calls until `max_repeats` or until
`min_repeats` are done AND `budget_s` seconds of timed calls have elapsed (the budget covers the
timed phase only; the last call may overrun it). CPU: `time.perf_counter` around each call. CUDA:
a CUDA event pair around each call, waited on before reading (device time of the queued work).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.errors import UsageError
from bench.measure.workload import (
    check_device,
    check_positive,
    denoiser_inputs,
    eval_mode,
    on_device,
    torch_threads,
)


@dataclass(frozen=True)
class LatencyStats:
    """Per-call wall times in milliseconds over `n` timed calls (p90: linear interpolation)."""

    median_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float
    n: int
    timer: str = "perf_counter"


@dataclass(frozen=True)
class DenoiserLatency:
    """Latency of one denoiser call `model(x, t)` with the settings it was measured under."""

    stats: LatencyStats
    batch: int
    input_shape: tuple[int, int, int]
    device: str
    dtype: str
    threads: int
    timestep: int


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of `values` with linear interpolation between order statistics."""
    if not values:
        raise UsageError("cannot take a quantile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def stats_of(times_ms: Sequence[float], timer: str = "perf_counter") -> LatencyStats:
    """Summarise per-call times (milliseconds)."""
    return LatencyStats(
        median_ms=quantile(times_ms, 0.5),
        p90_ms=quantile(times_ms, 0.9),
        min_ms=min(times_ms),
        mean_ms=sum(times_ms) / len(times_ms),
        n=len(times_ms),
        timer=timer,
    )


def measure_latency(
    fn: Callable[[], Any],
    *,
    device: str = "cpu",
    warmup: int = 3,
    min_repeats: int = 5,
    max_repeats: int = 100,
    budget_s: float = 10.0,
) -> LatencyStats:
    """Time `fn()` (see the module docstring for the stopping rule and the timers)."""
    dev = check_device(device)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise UsageError(f"warmup must be a non-negative integer, got {warmup!r}")
    check_positive("min_repeats", min_repeats)
    check_positive("max_repeats", max_repeats)
    if min_repeats > max_repeats:
        raise UsageError(f"min_repeats ({min_repeats}) exceeds max_repeats ({max_repeats})")
    if not budget_s >= 0:
        raise UsageError(f"time budget must be >= 0 seconds, got {budget_s!r}")
    for _ in range(warmup):
        fn()
    timed = timer_for(dev)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_repeats:
        times.append(timed(fn, dev))
        if len(times) >= min_repeats and time.perf_counter() - start >= budget_s:
            break
    return stats_of(times, "cuda-event" if dev.type == "cuda" else "perf_counter")


def timer_for(dev: torch.device) -> Callable[[Callable[[], Any], torch.device], float]:
    """The per-call timer of a device: milliseconds of one `fn()` (CUDA events on a GPU)."""
    return _cuda_timed if dev.type == "cuda" else _cpu_timed


def _cpu_timed(fn: Callable[[], Any], _dev: torch.device) -> float:
    begin = time.perf_counter()
    fn()
    return (time.perf_counter() - begin) * 1e3


def _cuda_timed(fn: Callable[[], Any], dev: torch.device) -> float:
    with torch.cuda.device(dev):
        begin = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        end.synchronize()
        return float(begin.elapsed_time(end))


def denoiser_latency(
    model: nn.Module,
    *,
    batch: int = 1,
    channels: int = 3,
    resolution: int = 64,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    threads: int | None = None,
    timestep: int = 500,
    warmup: int = 3,
    min_repeats: int = 15,
    max_repeats: int = 200,
    budget_s: float = 10.0,
) -> DenoiserLatency:
    """Latency of ONE call `model(x, t)` in eval + `torch.inference_mode()`, inputs built once.

    `threads` fixes `torch.set_num_threads` for the measurement (restored afterwards) and is
    recorded; the caller's model is left on its device/dtype (a moved copy is used if needed).
    """
    dev = check_device(device)
    shape = (check_positive("channels", channels),) + (check_positive("resolution", resolution),) * 2
    x, t = denoiser_inputs(shape, batch=batch, timestep=timestep, device=dev, dtype=dtype)
    work = on_device(model, dev, dtype)
    with torch_threads(threads) as used, eval_mode(work), torch.inference_mode():
        stats = measure_latency(
            lambda: work(x, t), device=str(dev), warmup=warmup,
            min_repeats=min_repeats, max_repeats=max_repeats, budget_s=budget_s,
        )
    return DenoiserLatency(
        stats=stats,
        batch=batch,
        input_shape=shape,  # type: ignore[arg-type]
        device=str(dev),
        dtype=str(dtype).removeprefix("torch."),
        threads=used,
        timestep=timestep,
    )
