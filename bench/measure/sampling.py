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

from bench.errors import UsageError
from bench.measure.graphed_sampling import GraphedSampler
from bench.measure.latency import time_calls
from bench.measure.load import MachineLoad, measure_load
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
    load: MachineLoad | None = None
    """How busy the machine was over the timed runs (`bench.measure.load`); None without psutil."""


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

    def run(n_steps: int, net: Any) -> Any:
        return sample_fn(net, diffusion, shape, steps=n_steps, sampler=sampler, seed=seed,
                         device=str(dev), dtype=dtype)

    with torch_threads(threads) as used, eval_mode(work), torch.inference_mode():
        if mode == "cudagraph":
            graphed = _graphed(work, diffusion, shape, steps=steps, sampler=sampler, seed=seed,
                               device=dev, dtype=dtype)
            timed_run = graphed.run
            how = f"one captured step graph replayed {graphed.n_steps} times, no host sync between steps"
            run(warmup_steps, work)
        else:
            denoiser = torch.compile(work) if mode == "compile" else work
            timed_run = lambda: run(steps, denoiser)  # noqa: E731
            how = ("eager sampler loop, torch.compile'd denoiser (compiled in the warm-up run)"
                   if mode == "compile" else "eager sampler loop")
            run(warmup_steps, denoiser)
        max_abs_err = 0.0
        if mode != "eager":
            eager = run(steps, work)
            max_abs_err = _error_against_eager(timed_run(), eager, mode, dtype)
        with measure_load() as load:  # over the timed runs only, not the warm-up
            stats = time_calls(timed_run, repeats, dev)
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
        load=load.result,
    )


def _graphed(work: nn.Module, diffusion: nn.Module, shape: tuple[int, int, int, int], *,
             steps: int, sampler: str, seed: int, device: torch.device, dtype: torch.dtype
             ) -> GraphedSampler:
    """The cudagraph mode's sampler; ModeError where it cannot run (the device, the model or the
    sampler: one decision, `bench.measure.graphed_sampling.check_graphable`)."""
    return GraphedSampler(work, diffusion, shape, steps=steps, sampler=sampler, seed=seed,
                          device=device, dtype=dtype)


def _error_against_eager(samples: torch.Tensor, eager: torch.Tensor, mode: str,
                         dtype: torch.dtype) -> float:
    """max |samples - eager samples| of the same seed; ModeError above `SAMPLE_TOLERANCE`."""
    max_abs_err = float((samples - eager).abs().max())
    limit = SAMPLE_TOLERANCE.get(str(dtype).removeprefix("torch."), 1e-2)
    if not max_abs_err <= limit:
        raise ModeError(f"mode {mode} samples differ from eager samples of the same seed: "
                        f"max abs error {max_abs_err:.3g} > {limit:g} (samples lie in [-1, 1])")
    return max_abs_err
