"""Peak memory of ONE denoiser inference call and of ONE training step, in MiB (2**20 bytes).

Three methods, each named in `MemoryPeak.method`:

* "cpu-subprocess-rss" (`peak_memory_subprocess`, the CPU default): a FRESH Python process builds
  the model from its stored configuration (`ModelSource.config()`, rebuilt with
  `models.source.build_stored`) and does the work once. peak = RSS high-water
  mark (Linux VmHWM, reset right before the model is built) minus the RSS at that moment, i.e. weights +
  activations + saved tensors + gradients/Adam state (train) + allocator/workspace + any memory
  touched by first-call initialisation. A fresh process with a reset high-water mark makes the
  peak belong to this work alone (without the reset, e.g. off Linux, `lower_bound` may be set).
* "cuda-max-allocated" (`peak_memory_cuda`): `torch.cuda.max_memory_allocated` after
  `reset_peak_memory_stats`, minus the bytes allocated before the model copy was moved to the
  device: weights included, CUDA context and caching-allocator slack not.
* "cpu-profiler-tensors" (`peak_memory_profiler`, in-process, cheap): weights (parameters +
  buffers) plus the peak of the running sum of the CPU allocations/frees that
  `torch.profiler.profile(profile_memory=True)` records during the work; counts tensor memory
  only (no interpreter, allocator or library overhead).

The work is one of two phases, inference or training (`Phase`): a word of its own, since "mode"
means the execution mode (eager, compile, cudagraph) everywhere else.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from bench.errors import UsageError
from bench.measure.workload import (
    build_diffusion,
    check_device,
    check_positive,
    check_shape,
    denoiser_inputs,
)
from bench.units import MIB
from models.source import ModelSource

Phase = Literal["inference", "train"]
"""What is measured: one inference call, or one training step."""
REPO_ROOT = Path(__file__).resolve().parents[2]


class MemoryProbeError(RuntimeError):
    """The memory measurement itself failed (probe crashed, timed out, or API missing)."""


@dataclass(frozen=True)
class MemoryPeak:
    """Peak memory of one call (phase "inference") or one training step (phase "train").

    `peak_mib` follows `method` (see the module docstring); `weights_mib` = parameters + buffers;
    `baseline_mib` = what was subtracted (RSS or allocated bytes before the model), if any;
    `lower_bound` = True when the process had already been higher before the work started, so the
    reported peak may be an underestimate.
    """

    peak_mib: float
    phase: str
    device: str
    method: str
    batch: int
    input_shape: tuple[int, int, int]
    weights_mib: float
    baseline_mib: float | None
    threads: int | None
    lower_bound: bool = False


def peak_memory(
    source: ModelSource,
    *,
    device: str = "cpu",
    shape: Sequence[int] = (3, 64, 64),
    batch: int = 1,
    phase: Phase = "inference",
    threads: int | None = None,
    schedule: str = "sigmoid",
    prediction: str = "v",
    lr: float = 2e-4,
    timeout_s: float = 600.0,
    dtype: str = "float32",
) -> MemoryPeak:
    """Peak memory of the model `source` builds: fresh CPU subprocess on "cpu", allocator peak on
    CUDA. `dtype` bfloat16: inference with the weights and input in bfloat16; training as `bench
    train` runs it (float32 weights, bf16 autocast), which exists on CUDA only
    (`check_memory_dtype`)."""
    check_memory_dtype(device, phase, dtype)
    dev = check_device(device)
    if dev.type == "cpu":
        return peak_memory_subprocess(
            source, shape=shape, batch=batch, phase=phase, threads=threads, schedule=schedule,
            prediction=prediction, lr=lr, timeout_s=timeout_s, dtype=dtype,
        )
    return peak_memory_cuda(
        source.build(), shape=shape, batch=batch, phase=phase, device=str(dev),
        schedule=schedule, prediction=prediction, lr=lr, dtype=dtype,
    )


def check_memory_dtype(device: str, phase: str, dtype: str) -> None:
    """UsageError for a dtype the memory measurement cannot honour: training on a CPU runs float32
    whatever is asked (`bench.measure.train_step.AMP_DEVICES`), so its bfloat16 peak would be a
    float32 peak under another name."""
    from bench.measure.train_step import AMP_DEVICES

    if dtype not in ("float32", "bfloat16"):
        raise UsageError(f"memory dtype must be float32 or bfloat16, got {dtype!r}")
    kind = str(device).split(":")[0]
    if phase == "train" and dtype != "float32" and kind not in AMP_DEVICES:
        raise UsageError(f"{dtype} training memory is not measured on {kind}: training there runs "
                         f"in float32 (bf16 autocast is used on {', '.join(AMP_DEVICES)} only)")


def peak_memory_subprocess(
    source: ModelSource,
    *,
    shape: Sequence[int] = (3, 64, 64),
    batch: int = 1,
    phase: Phase = "inference",
    threads: int | None = None,
    schedule: str = "sigmoid",
    prediction: str = "v",
    lr: float = 2e-4,
    timeout_s: float = 600.0,
    dtype: str = "float32",
) -> MemoryPeak:
    """CPU peak in a fresh process (method "cpu-subprocess-rss"); the process rebuilds the model
    from `source.config()`, so it builds what the source builds here."""
    spec = {
        "model": source.config(),
        "shape": list(check_shape(shape)),
        "batch": check_positive("batch", batch),
        "phase": _check_phase(phase),
        "threads": None if threads is None else check_positive("threads", threads),
        "schedule": schedule,
        "prediction": prediction,
        "lr": float(lr),
        "dtype": dtype,
    }
    try:
        payload = json.dumps(spec)
    except TypeError:
        raise UsageError(f"model arguments must be JSON values, got {source.arguments!r}") from None
    result = _run_probe(payload, timeout_s, f"{phase} of {source.name!r}")
    peak = max(0, result["peak_bytes"] - result["baseline_bytes"])
    return MemoryPeak(
        peak_mib=peak / MIB,
        phase=phase,
        device="cpu",
        method="cpu-subprocess-rss" + (" (float32 weights cast after build: included)"
                                       if result.get("cast_after_build") else ""),
        batch=batch,
        input_shape=check_shape(shape),
        weights_mib=result["weights_bytes"] / MIB,
        baseline_mib=result["baseline_bytes"] / MIB,
        threads=threads,
        lower_bound=not result.get("reset") and result["peak_bytes"] <= result["prior_peak_bytes"],
    )


def _die_with_parent() -> None:
    """In the probe child before exec (Linux): the kernel sends it SIGKILL when the parent dies,
    so a probe never outlives a killed run, even one killed with SIGKILL."""
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _run_probe(payload: str, timeout_s: float, what: str) -> dict[str, Any]:
    env = dict(os.environ)
    # the repository, and the caller's working directory (where a user's factory module may live)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.getcwd(), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "bench.measure._memprobe", payload]
    try:
        done = subprocess.run(
            command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    except subprocess.TimeoutExpired:
        raise MemoryProbeError(f"memory probe timed out after {timeout_s:g} s ({what})") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise MemoryProbeError(
            f"memory probe failed ({what}), exit {done.returncode}: {tail}"
        ) from None
    if not result.get("ok"):
        message = f"memory probe failed ({what}): {result.get('message')}"
        raise UsageError(message) if result.get("kind") == "usage" else MemoryProbeError(message)
    return result


def peak_memory_cuda(
    model: nn.Module,
    *,
    shape: Sequence[int] = (3, 64, 64),
    batch: int = 1,
    phase: Phase = "inference",
    device: str = "cuda",
    schedule: str = "sigmoid",
    prediction: str = "v",
    lr: float = 2e-4,
    diffusion: nn.Module | None = None,
    dtype: str = "float32",
) -> MemoryPeak:
    """CUDA allocator peak of the work on a device copy of `model` (method "cuda-max-allocated")."""
    dev = check_device(device)
    if dev.type != "cuda":
        raise UsageError(f"peak_memory_cuda needs a CUDA device, got {device!r}")
    _check_phase(phase)
    x, t = denoiser_inputs(shape, batch=batch, device=dev)
    if phase == "train":
        diffusion = build_diffusion(schedule, prediction) if diffusion is None else diffusion
        diffusion = copy.deepcopy(diffusion).to(dev)
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    baseline = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    # bfloat16 inference: copied to the device in bfloat16 (never a float32 device copy)
    cast = getattr(torch, dtype) if phase == "inference" and dtype != "float32" else None
    work = copy.deepcopy(model).to(device=dev, dtype=cast) if cast else copy.deepcopy(model).to(dev)
    _do_work(work, phase, x, t, diffusion, lr, dtype)
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev) - baseline
    result = MemoryPeak(
        peak_mib=peak / MIB,
        phase=phase,
        device=str(dev),
        method="cuda-max-allocated",
        batch=batch,
        input_shape=check_shape(shape),
        weights_mib=_weights_bytes(work) / MIB,
        baseline_mib=baseline / MIB,
        threads=None,
    )
    del work
    torch.cuda.empty_cache()
    return result


def peak_memory_profiler(
    model: nn.Module,
    *,
    shape: Sequence[int] = (3, 64, 64),
    batch: int = 1,
    phase: Phase = "inference",
    schedule: str = "sigmoid",
    prediction: str = "v",
    lr: float = 2e-4,
    diffusion: nn.Module | None = None,
) -> MemoryPeak:
    """In-process CPU tensor peak via the profiler's memory events (method
    "cpu-profiler-tensors"): weights + peak running sum of allocations during the work."""
    from torch.profiler import ProfilerActivity, profile

    _check_phase(phase)
    x, t = denoiser_inputs(shape, batch=batch)
    if phase == "train" and diffusion is None:
        diffusion = build_diffusion(schedule, prediction)
    work = copy.deepcopy(model).cpu()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _do_work(work, phase, x, t, diffusion, lr)
    try:
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        deltas = sorted((e.start_ns(), e.nbytes()) for e in events)
    except AttributeError as error:
        raise MemoryProbeError(f"this torch has no profiler memory events ({error})") from None
    running = highest = 0
    for _, nbytes in deltas:
        running += nbytes
        highest = max(highest, running)
    weights = _weights_bytes(work)
    return MemoryPeak(
        peak_mib=(weights + highest) / MIB,
        phase=phase,
        device="cpu",
        method="cpu-profiler-tensors",
        batch=batch,
        input_shape=check_shape(shape),
        weights_mib=weights / MIB,
        baseline_mib=None,
        threads=torch.get_num_threads(),
    )


def _do_work(
    model: nn.Module,
    phase: str,
    x: torch.Tensor,
    t: torch.Tensor,
    diffusion: Any,
    lr: float,
    dtype: str = "float32",
) -> None:
    """The measured work: one inference call (weights and input in `dtype`), or one step of
    `bench train` (float32 weights; bfloat16 = its autocast)."""
    from bench.measure.train_step import make_optimizer, train_step

    if phase == "train":
        optimizer = make_optimizer(model, lr)
        train_step(model, diffusion, optimizer, x, amp=dtype == "bfloat16")
    else:
        model.eval()
        if dtype != "float32":
            model.to(getattr(torch, dtype))
            x = x.to(getattr(torch, dtype))
        with torch.inference_mode():
            model(x, t)


def _weights_bytes(model: nn.Module) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(p.numel() * p.element_size() for p in tensors)


def _check_phase(phase: str) -> str:
    if phase not in ("inference", "train"):
        raise UsageError(f"memory phase must be 'inference' or 'train', got {phase!r}")
    return phase
