"""Wall time per generated sample of a whole sampling run (`models.diffusion.sample`).

time per sample = wall time of one `sample(...)` call at `steps` steps for a batch, divided by
the batch size; median/p90/min/mean over `repeats` runs after one untimed warm-up run of
`warmup_steps` steps. Every run uses the same seed, so every run does the same work.

Modes (`bench.measure.modes`): `eager` is the sampler loop as the paper ran it; `compile` runs the
same loop with the torch.compile'd denoiser (compiled during the untimed warm-up run); `cudagraph`
replays one captured step graph per step (`bench.measure.graphed_sampling`). A non-eager mode's
samples are compared with eager samples of the same seed (`max_abs_err`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import models
from bench.errors import UsageError
from bench.measure.graphed_sampling import GraphedSampler
from bench.measure.latency import measure_latency
from bench.measure.modes import ModeError, check_modes
from bench.measure.workload import (
    build_diffusion,
    check_device,
    check_positive,
    eval_mode,
    on_device,
    torch_threads,
)
from models.diffusion.samplers import SAMPLERS  # the one registry of samplers

SAMPLE_TOLERANCE = {"float32": 1e-2, "bfloat16": 0.25, "float16": 0.1}
"""Largest accepted max |mode samples - eager samples| (same seed; samples lie in [-1, 1]): a whole
run compounds the per-call rounding differences of a compiled or bfloat16 denoiser."""


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
    mode: str = "eager"
    max_abs_err: float = 0.0
    """max |samples - eager samples| of the same seed (0 for eager)."""
    how: str = ""


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
    mode: str = "eager",
) -> SamplingTime:
    """Median/p90 wall seconds per sample of `sample_fn` (default `models.diffusion.sample`) in
    execution `mode` (eager, compile, cudagraph)."""
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
    check_modes([mode])
    work = on_device(model, dev, dtype)
    denoiser: Any = work
    how = "eager sampler loop"
    max_abs_err = 0.0

    def run(n_steps: int, net: Any = None) -> Any:
        return sample_fn(
            net if net is not None else denoiser, diffusion, shape, steps=n_steps, sampler=sampler,
            seed=seed, device=str(dev), dtype=dtype,
        )

    with torch_threads(threads) as used, eval_mode(work), torch.inference_mode():
        timed_run = lambda: run(steps)  # noqa: E731
        if mode == "compile":
            denoiser = torch.compile(work)
            how = "eager sampler loop, torch.compile'd denoiser (compiled in the warm-up run)"
        elif mode == "cudagraph":
            if dev.type != "cuda":
                raise ModeError("mode cudagraph needs a CUDA device; use modes eager or compile on the CPU")
            if models.capture_safe(work) is False:
                raise ModeError("mode cudagraph: this model reads tensors on the host during a forward "
                                "and cannot be captured (for the cU-Nets set solver_backend = 'native')")
            graphed = GraphedSampler(work, diffusion, shape, steps=steps, sampler=sampler, seed=seed,
                                     device=dev, dtype=dtype)
            timed_run = graphed.run
            how = f"one captured step graph replayed {graphed.n_steps} times, no host sync between steps"
        run(warmup_steps)
        if mode != "eager":
            reference = run(steps, work)
            max_abs_err = float((timed_run() - reference).abs().max())
            limit = SAMPLE_TOLERANCE.get(str(dtype).removeprefix("torch."), 1e-2)
            if not max_abs_err <= limit:
                raise ModeError(f"mode {mode} samples differ from eager samples of the same seed: "
                                f"max abs error {max_abs_err:.3g} > {limit:g} (samples lie in [-1, 1])")
        stats = measure_latency(
            timed_run, device=str(dev), warmup=0,
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
        mode=mode,
        max_abs_err=max_abs_err,
        how=how,
    )
