"""The one per-call timer and the statistics of its times.

CPU: `time.perf_counter` around each call. CUDA: a CUDA event pair around each call, waited on
before reading (device time of the queued work). Every timing of the suite goes through
`timer_for`: the round-robin latency of the matrix and the gate (`bench.measure.interleaved`) and
the whole sampling runs (`bench.measure.sampling`, through `time_calls`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bench.errors import UsageError
from bench.measure.workload import check_positive

Timer = Callable[[Callable[[], Any], torch.device], float]


@dataclass(frozen=True)
class LatencyStats:
    """Per-call wall times in milliseconds over `n` timed calls (p90: linear interpolation)."""

    median_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float
    n: int
    timer: str = "perf_counter"


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


def timer_name(dev: torch.device) -> str:
    """What `timer_for(dev)` times with, as rows name it."""
    return "cuda-event" if dev.type == "cuda" else "perf_counter"


def timer_for(dev: torch.device) -> Timer:
    """The per-call timer of a device: milliseconds of one `fn()` (CUDA events on a GPU)."""
    return _cuda_timed if dev.type == "cuda" else _cpu_timed


def time_calls(fn: Callable[[], Any], repeats: int, device: torch.device) -> LatencyStats:
    """Statistics of `repeats` timed calls of `fn()`, one after another (no warm-up: the caller's)."""
    timed = timer_for(device)
    return stats_of([timed(fn, device) for _ in range(check_positive("repeats", repeats))],
                    timer_name(device))


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
