"""Measured matmul peak of a device and dtype, in GFLOP/s (2 * n**3 FLOPs per n x n matmul), so that
achieved throughput can be shown against the peak of the dtype actually used."""

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
    """Best matmul throughput in `dtype` over `repeats` timed n x n products (n = `size`).

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
    dtype: torch.dtype = torch.float32,
) -> MatmulPeak:
    """Measure the matmul peak in `dtype`; `size=None` picks n so all repeats take about
    `target_s`. float32 on CUDA is measured without TF32 (torch's default matmul precision)."""
    dev = check_device(device)
    check_positive("repeats", repeats)
    if not target_s > 0:
        raise UsageError(f"target time must be positive seconds, got {target_s!r}")
    if size is not None:
        check_positive("size", size)
    with torch_threads(threads if dev.type == "cpu" else None) as used:
        if size is None:
            size = _calibrated_size(dev, target_s / repeats, dtype)
        a = torch.randn(size, size, device=dev, dtype=dtype)
        b = torch.randn(size, size, device=dev, dtype=dtype)
        _timed_matmul(a, b, dev)  # warm-up
        best = min(_timed_matmul(a, b, dev) for _ in range(repeats))
    return MatmulPeak(
        gflops=2.0 * size**3 / best / 1e9,
        size=size,
        best_s=best,
        repeats=repeats,
        device=str(dev),
        threads=used if dev.type == "cpu" else None,
        dtype=str(dtype).removeprefix("torch."),
    )


def _timed_matmul(a: torch.Tensor, b: torch.Tensor, dev: torch.device) -> float:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    begin = time.perf_counter()
    torch.mm(a, b)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return max(time.perf_counter() - begin, 1e-9)


def _calibrated_size(dev: torch.device, seconds_each: float, dtype: torch.dtype = torch.float32) -> int:
    """Grow n from a small probe until one matmul is timed reliably, then extrapolate by n**3."""
    n = 256
    while True:
        a = torch.randn(n, n, device=dev, dtype=dtype)
        _timed_matmul(a, a, dev)
        elapsed = min(_timed_matmul(a, a, dev) for _ in range(2))
        if elapsed >= 0.02 or n >= _MAX_SIZE:
            break
        n *= 2
    rate = 2.0 * n**3 / elapsed
    wanted = round((rate * seconds_each / 2.0) ** (1 / 3) / 64) * 64
    return int(min(_MAX_SIZE, max(_MIN_SIZE, wanted)))


@dataclass(frozen=True)
class Bandwidth:
    """Best memory bandwidth over `repeats` timed copies of a `mib`-MiB float32 tensor: a copy reads
    and writes every byte, so GB/s = 2 x bytes / best_s / 1e9."""

    gbs: float
    mib: int
    best_s: float
    repeats: int
    device: str
    threads: int | None


def memory_bandwidth(device: str = "cpu", *, threads: int | None = None, mib: int = 256,
                     repeats: int = 5) -> Bandwidth:
    """Measure the device's copy bandwidth the way `matmul_peak` measures compute: one warm-up,
    then the best of `repeats` timed copies (synchronised on CUDA)."""
    dev = check_device(device)
    check_positive("repeats", repeats)
    check_positive("mib", mib)
    with torch_threads(threads if dev.type == "cpu" else None) as used:
        src = torch.ones(mib * 2**20 // 4, device=dev)
        dst = torch.empty_like(src)

        def timed() -> float:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            begin = time.perf_counter()
            dst.copy_(src)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            return max(time.perf_counter() - begin, 1e-9)

        timed()
        best = min(timed() for _ in range(repeats))
    return Bandwidth(gbs=2.0 * src.numel() * 4 / best / 1e9, mib=mib, best_s=best, repeats=repeats,
                     device=str(dev), threads=used if dev.type == "cpu" else None)
