"""Wall time per generated sample of a whole sampling run (`models.diffusion.sample`).

time per sample = wall time of one `sample(...)` call at `steps` steps for a batch, divided by
the batch size; median/p90/min/mean over `repeats` runs after one untimed warm-up run of
`warmup_steps` steps. Every run uses the same seed, so every run does the same work.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.errors import UsageError
from bench.measure.latency import measure_latency
from bench.measure.workload import (
    build_diffusion,
    check_device,
    check_positive,
    eval_mode,
    on_device,
    torch_threads,
)

SAMPLERS = ("ddpm", "ddim")


@dataclass(frozen=True)
class SamplingTime:
    """Seconds per generated sample (run time / batch) over `n` timed runs of `steps` steps."""

    median_s: float
    p90_s: float
    min_s: float
    mean_s: float
    n: int
    steps: int
    batch: int
    sampler: str
    device: str
    threads: int


def time_per_sample(
    model: nn.Module,
    *,
    steps: int,
    batch: int = 1,
    channels: int = 3,
    resolution: int = 64,
    sampler: str = "ddpm",
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    threads: int | None = None,
    repeats: int = 3,
    seed: int = 0,
    warmup_steps: int = 1,
    schedule: str = "sigmoid",
    prediction: str = "v",
    diffusion: nn.Module | None = None,
    sample_fn: Callable[..., Any] | None = None,
) -> SamplingTime:
    """Median/p90 wall seconds per sample of `sample_fn` (default `models.diffusion.sample`)."""
    check_positive("steps", steps)
    check_positive("batch", batch)
    check_positive("repeats", repeats)
    check_positive("warmup_steps", warmup_steps)
    if sampler not in SAMPLERS:
        raise UsageError(f"unknown sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
    dev = check_device(device)
    if sample_fn is None:
        from models.diffusion import sample as sample_fn
    if diffusion is None:
        diffusion = build_diffusion(schedule, prediction).to(dev)
    else:
        diffusion = copy.deepcopy(diffusion).to(dev)
    side = check_positive("resolution", resolution)
    shape = (batch, check_positive("channels", channels), side, side)
    work = on_device(model, dev, dtype)

    def run(n_steps: int) -> Any:
        return sample_fn(
            work, diffusion, shape, steps=n_steps, sampler=sampler, seed=seed,
            device=str(dev), dtype=dtype,
        )

    with torch_threads(threads) as used, eval_mode(work), torch.inference_mode():
        run(warmup_steps)
        stats = measure_latency(
            lambda: run(steps), device=str(dev), warmup=0,
            min_repeats=repeats, max_repeats=repeats, budget_s=0.0,
        )
    per_sample = 1e-3 / batch
    return SamplingTime(
        median_s=stats.median_ms * per_sample,
        p90_s=stats.p90_ms * per_sample,
        min_s=stats.min_ms * per_sample,
        mean_s=stats.mean_ms * per_sample,
        n=stats.n,
        steps=steps,
        batch=batch,
        sampler=sampler,
        device=str(dev),
        threads=used,
    )
