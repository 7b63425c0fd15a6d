"""Measured float32 matmul peak of a device, in GFLOP/s (2 * n**3 FLOPs per n x n matmul)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from bench.errors import UsageError
from bench.measure.workload import check_device, check_positive, torch_threads

_MIN_SIZE = 128
_MAX_SIZE = 8192


@dataclass(frozen=True)
class MatmulPeak:
    """Best float32 matmul throughput over `repeats` timed n x n products (n = `size`).

    `gflops` = 2 * size**3 / best_s / 1e9; `threads` = torch threads used on a CPU (None on CUDA).
    """

    gflops: float
    size: int
    best_s: float
    repeats: int
    device: str
    threads: int | None
    dtype: str = "float32"


def matmul_peak(
    device: str = "cpu",
    *,
    threads: int | None = None,
    size: int | None = None,
    repeats: int = 5,
    target_s: float = 1.0,
) -> MatmulPeak:
    """Measure the float32 matmul peak; `size=None` picks n so all repeats take about `target_s`."""
    dev = check_device(device)
    check_positive("repeats", repeats)
    if not target_s > 0:
        raise UsageError(f"target time must be positive seconds, got {target_s!r}")
    if size is not None:
        check_positive("size", size)
    with torch_threads(threads if dev.type == "cpu" else None) as used:
        if size is None:
            size = _calibrated_size(dev, target_s / repeats)
        a = torch.randn(size, size, device=dev)
        b = torch.randn(size, size, device=dev)
        _timed_matmul(a, b, dev)  # warm-up
        best = min(_timed_matmul(a, b, dev) for _ in range(repeats))
    return MatmulPeak(
        gflops=2.0 * size**3 / best / 1e9,
        size=size,
        best_s=best,
        repeats=repeats,
        device=str(dev),
        threads=used if dev.type == "cpu" else None,
    )


def _timed_matmul(a: torch.Tensor, b: torch.Tensor, dev: torch.device) -> float:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    begin = time.perf_counter()
    torch.mm(a, b)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return max(time.perf_counter() - begin, 1e-9)


def _calibrated_size(dev: torch.device, seconds_each: float) -> int:
    """Grow n from a small probe until one matmul is timed reliably, then extrapolate by n**3."""
    n = 256
    while True:
        a = torch.randn(n, n, device=dev)
        _timed_matmul(a, a, dev)
        elapsed = min(_timed_matmul(a, a, dev) for _ in range(2))
        if elapsed >= 0.02 or n >= _MAX_SIZE:
            break
        n *= 2
    rate = 2.0 * n**3 / elapsed
    wanted = round((rate * seconds_each / 2.0) ** (1 / 3) / 64) * 64
    return int(min(_MAX_SIZE, max(_MIN_SIZE, wanted)))
