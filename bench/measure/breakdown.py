"""The time breakdown of a denoiser call: where its time goes per block, per kind of work, and (on
CUDA) how much of the call the GPU is busy.

Built on `torch.profiler` ("breakdown" is the suite's one name for this; a "profile" is a benchmark
preset in bench/profiles/). Each profiled block is wrapped in a `record_function` range by module
hooks, so the model's code is not touched. The model names its blocks itself through an optional
`breakdown_blocks()` method (the model protocol's name, see models/factory.py) returning (name,
module) pairs (several modules may share a name, e.g. a time embedding made of two layers); a model
without it is timed per top-level child module.
Blocks nest: a cU-Net's ODE block contains its ODE function, and the block's *own* time (its time
minus the function's) is the solver's bookkeeping.

Per call (averaged over `calls` profiled calls after `warmup` unprofiled ones):
- block shares: each block's exclusive time, plus "rest" (the call's time outside every block),
  adding up to the profiled call time exactly;
- kinds of work: the self time of every operator, classified (convolution, matmul/attention,
  normalisation, elementwise/activation, memory/layout, solver bookkeeping for operators inside an
  ODE block but outside its function), plus "other" (Python and dispatch between operators), adding
  up to the call time;
- CUDA only: kernels per call, mean kernel duration, and GPU busy time (the union of kernel
  intervals) against the call's wall time; the idle rest is the launch-bound fraction.

Times are CPU wall time of the ranges on the CPU, and of the same ranges on CUDA (the host side:
what an eager batch-1 call is bound by); all include the profiler's own overhead, so profiled calls
are never latency samples.

Rows are named `breakdown_*` (ROW_PREFIX); results written before the rename hold the same rows as
`profile_*` (OLD_ROW_PREFIX), which `with_current_names` reads as today's names.
"""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn

ROW_PREFIX = "breakdown_"
OLD_ROW_PREFIX = "profile_"
"""The rows' prefix before the rename (committed results hold `profile_call_ms` etc.)."""
CALL_MS = ROW_PREFIX + "call_ms"
BLOCK_MS = ROW_PREFIX + "block_ms"
BLOCK_PCT = ROW_PREFIX + "block_pct"
KIND_MS = ROW_PREFIX + "kind_ms"
GPU_BUSY_MS = ROW_PREFIX + "gpu_busy_ms"
LAUNCH_BOUND_PCT = ROW_PREFIX + "launch_bound_pct"
KERNELS = ROW_PREFIX + "kernels"
MEAN_KERNEL_US = ROW_PREFIX + "mean_kernel_us"

CALL = "denoiser call"
PREFIX = "block:"

KIND_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("convolution", re.compile(r"conv|mkldnn_convolution|cudnn")),
    ("matmul/attention", re.compile(r"\b(aten::)?(mm|bmm|addmm|matmul|linear|einsum|baddbmm|"
                                    r"scaled_dot_product|_softmax|softmax)\b")),
    ("normalisation", re.compile(r"norm")),
    ("memory/layout", re.compile(r"copy|::to\b|_to_copy|contiguous|clone|::cat\b|empty|zeros|"
                                 r"upsample|interpolate|reshape|view|permute|transpose|expand|"
                                 r"index|pixel_unshuffle|stack|fill_")),
    ("elementwise/activation", re.compile(r".")),
]
"""First match wins; operator names come from the profiler (e.g. aten::convolution)."""
KINDS = ("convolution", "matmul/attention", "normalisation", "elementwise/activation",
         "memory/layout", "solver bookkeeping", "other")


def kind_of(op_name: str) -> str:
    """The kind of work of an operator name."""
    for kind, pattern in KIND_RULES:
        if pattern.search(op_name):
            return kind
    return "elementwise/activation"


def named_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) pairs to time: the model's own `breakdown_blocks()` (`profile_blocks()`, its
    name until this release, is still read), else its top-level children."""
    inner = getattr(model, "module", model)
    own = getattr(inner, "breakdown_blocks", None) or getattr(inner, "profile_blocks", None)
    if callable(own):
        return list(own())
    return list(inner.named_children())


@contextlib.contextmanager
def block_ranges(blocks: list[tuple[str, nn.Module]]) -> Iterator[None]:
    """record_function ranges around every block's forward, by hooks removed afterwards."""
    handles = []
    open_ranges: dict[int, list] = defaultdict(list)

    def enter(name: str) -> Callable:
        def hook(module: nn.Module, _args: object) -> None:
            scope = torch.profiler.record_function(PREFIX + name)
            scope.__enter__()
            open_ranges[id(module)].append(scope)
        return hook

    def leave(module: nn.Module, _args: object, _out: object) -> None:
        if open_ranges[id(module)]:
            open_ranges[id(module)].pop().__exit__(None, None, None)

    try:
        for name, module in blocks:
            handles.append(module.register_forward_pre_hook(enter(name)))
            handles.append(module.register_forward_hook(leave))
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class Breakdown:
    """Per-call averages of one model's profiled calls (milliseconds unless said otherwise)."""

    call_ms: float
    blocks: dict[str, float]
    """Block name -> exclusive ms per call (insertion order: execution order), plus 'rest'."""
    ode_blocks: list[str]
    """Block names that are ODE blocks (their exclusive time is solver bookkeeping)."""
    kinds: dict[str, float]
    """Kind of work -> ms per call (KINDS), adding up to call_ms."""
    calls: int
    device: str
    kernels_per_call: float | None = None
    mean_kernel_us: float | None = None
    gpu_busy_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def launch_bound_fraction(self) -> float | None:
        """Share of the call the GPU was idle (waiting for the host to launch work)."""
        if self.gpu_busy_ms is None or self.call_ms <= 0:
            return None
        return max(0.0, 1.0 - self.gpu_busy_ms / self.call_ms)

    def shares(self) -> dict[str, float]:
        """Block -> percent of the call (sums to 100)."""
        total = sum(self.blocks.values())
        return {name: 100.0 * ms / total for name, ms in self.blocks.items()} if total > 0 else {}


def _is_ode_block(module: nn.Module) -> bool:
    return hasattr(module, "func") and hasattr(module, "last_nfe")


def breakdown_call(fn: Callable[[], object], model: nn.Module, *, device: torch.device,
                   calls: int = 5, warmup: int = 3, trace_path: Path | None = None) -> Breakdown:
    """Profile `calls` calls of `fn` (one denoiser call, or one sampler step) after `warmup`
    unprofiled ones; `model` is the network whose blocks are named. Writes a Chrome/Perfetto
    trace to `trace_path` when given."""
    blocks = named_blocks(model)
    ode_names = [name for name, module in blocks if _is_ode_block(module)]
    for _ in range(warmup):
        fn()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize(device)
    with block_ranges(blocks), torch.profiler.profile(activities=activities) as prof:
        for _ in range(calls):
            with torch.profiler.record_function(CALL):
                fn()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
    if trace_path is not None:
        trace_path.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace_path))
    return _summarise(prof.events(), [n for n, _ in blocks], ode_names, calls, device)


def _duration_us(event) -> float:
    return float(event.time_range.end - event.time_range.start)


def _summarise(events, block_names: list[str], ode_names: list[str], calls: int,
               device: torch.device) -> Breakdown:
    call_events = [e for e in events if e.name == CALL]
    call_us = sum(_duration_us(e) for e in call_events)
    exclusive: dict[str, float] = {name: 0.0 for name in dict.fromkeys(block_names)}
    kinds: dict[str, float] = {kind: 0.0 for kind in KINDS}
    ops_us = 0.0

    def walk(event, block: str | None) -> float:
        """Visit `event`'s subtree; returns the time of its outermost profiled blocks (so that the
        enclosing block can subtract it)."""
        nonlocal ops_us
        name = event.name
        if name.startswith(PREFIX):
            own = name[len(PREFIX):]
            inner = sum(walk(child, own) for child in event.cpu_children)
            if own in exclusive:
                exclusive[own] += _duration_us(event) - inner
            return _duration_us(event)
        if name != CALL and not name.startswith("<"):
            self_us = float(event.self_cpu_time_total)
            kind = "solver bookkeeping" if block in ode_names else kind_of(name)
            kinds[kind] += self_us
            ops_us += self_us
        return sum(walk(child, block) for child in event.cpu_children)

    in_blocks = 0.0
    for call in call_events:
        in_blocks += sum(walk(child, None) for child in call.cpu_children)
    per_call = 1e-3 / max(calls, 1)
    blocks_ms = {name: us * per_call for name, us in exclusive.items()}
    blocks_ms["rest"] = max(call_us - sum(exclusive.values()), 0.0) * per_call
    kinds["other"] = max(call_us - ops_us, 0.0)
    result = Breakdown(call_ms=call_us * per_call, blocks=blocks_ms, ode_blocks=ode_names,
                           kinds={k: v * per_call for k, v in kinds.items()}, calls=calls,
                           device=str(device))
    if device.type == "cuda":
        _gpu_activity(result, events, call_events, calls)
    return result


def _gpu_activity(result: Breakdown, events, call_events, calls: int) -> None:
    """Kernels per call, mean kernel time and busy time (union of kernel intervals inside the
    calls' wall windows)."""
    kernels = [e for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA
               and not e.name.startswith(("Memcpy", "Memset"))]
    windows = [(c.time_range.start, c.time_range.end) for c in call_events]
    inside = [k for k in kernels if any(a <= k.time_range.start <= b for a, b in windows)]
    intervals = sorted((k.time_range.start, k.time_range.end) for k in inside)
    busy, current_start, current_end = 0.0, None, None
    for start, end in intervals:
        if current_end is None or start > current_end:
            if current_end is not None:
                busy += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        busy += current_end - current_start
    result.kernels_per_call = len(inside) / max(calls, 1)
    result.mean_kernel_us = (sum(k.time_range.end - k.time_range.start for k in inside) / len(inside)
                             if inside else 0.0)
    result.gpu_busy_ms = busy * 1e-3 / max(calls, 1)


BLOCK_CATEGORIES = ("ODE function", "ODE solver", "attention", "resnets", "time embedding",
                    "transitions & I/O", "rest")


def category_of(block: str) -> str:
    """The comparable category of a block name (for plots across architectures)."""
    for category in ("ODE function", "ODE solver", "attention", "resnets", "time embedding"):
        if category in block:
            return category
    return "rest" if block == "rest" else "transitions & I/O"


def breakdown_rows(result: Breakdown) -> list[dict[str, object]]:
    """Tidy rows (metric, value, unit, stat, method) of one breakdown; the caller adds context."""
    how = (f"torch.profiler, {result.calls} profiled calls after warm-up, per-call mean; includes "
           "profiler overhead (never a latency sample)")
    rows: list[dict[str, object]] = [
        {"metric": CALL_MS, "value": result.call_ms, "unit": "ms", "stat": "mean",
         "method": how}]
    shares = result.shares()
    for block, ms in result.blocks.items():
        method = f"{how}; category {category_of(block)}; exclusive time"
        rows.append({"metric": BLOCK_MS, "value": ms, "unit": "ms", "stat": block,
                     "method": method})
        rows.append({"metric": BLOCK_PCT, "value": shares.get(block, 0.0), "unit": "%",
                     "stat": block, "method": method})
    for kind, ms in result.kinds.items():
        rows.append({"metric": KIND_MS, "value": ms, "unit": "ms", "stat": kind,
                     "method": f"{how}; operators' self time by kind; 'other' = Python and dispatch"})
    if result.gpu_busy_ms is not None:
        rows += [
            {"metric": GPU_BUSY_MS, "value": result.gpu_busy_ms, "unit": "ms", "stat": "mean",
             "method": f"{how}; union of kernel intervals within the call"},
            {"metric": LAUNCH_BOUND_PCT, "value": 100.0 * (result.launch_bound_fraction or 0.0),
             "unit": "%", "stat": "mean", "method": f"{how}; 100 x (1 - GPU busy / call wall time)"},
            {"metric": KERNELS, "value": result.kernels_per_call, "unit": "count",
             "stat": "mean", "method": how},
            {"metric": MEAN_KERNEL_US, "value": result.mean_kernel_us, "unit": "us",
             "stat": "mean", "method": how},
        ]
    return rows


def breakdown_denoiser(net: nn.Module, *, device: torch.device, dtype: torch.dtype, batch: int,
                       resolution: int, channels: int = 3, mode: str = "eager", what: str = "call",
                       calls: int = 5, warmup: int = 3, trace_path: Path | None = None) -> Breakdown:
    """The breakdown of one denoiser call (or one DDPM sampler step: call + update) in `mode`; the mode's
    output is checked against eager first (`bench.measure.modes.prepare`)."""
    from bench.measure import modes
    from bench.measure.workload import build_diffusion, denoiser_inputs
    from models.diffusion.samplers import ddpm_step

    x, t = denoiser_inputs((channels, resolution, resolution), batch=batch, timestep=500,
                           device=device, dtype=dtype)
    net = net.to(device=device, dtype=dtype).eval()
    with torch.inference_mode():
        prepared = modes.prepare(net, mode, x, t)
        call = prepared.call
        if what == "sample-step":
            diffusion = build_diffusion()
            schedule = diffusion.respace(100)
            noise = torch.randn_like(x)
            step = 50

            def call() -> torch.Tensor:  # noqa: F811 - one sampler step around the prepared call
                return ddpm_step(prepared.call(), x, step, schedule, diffusion.prediction,
                                 lambda: noise)
        result = breakdown_call(call, net, device=device, calls=calls, warmup=warmup,
                                trace_path=trace_path)
    if mode != "eager":
        result.notes.append(f"mode {mode}: blocks are not seen inside compiled or replayed code, "
                            "so their time is under 'rest'")
    return result


def with_current_names(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with rows written before the rename (`profile_*`) named as today's (`breakdown_*`),
    so that readers handle old and new results alike."""
    metric = frame["metric"].astype(str)
    old = metric.str.startswith(OLD_ROW_PREFIX)
    if not old.any():
        return frame
    frame = frame.copy()
    frame.loc[old, "metric"] = ROW_PREFIX + metric[old].str.slice(len(OLD_ROW_PREFIX))
    return frame


def is_breakdown_metric(metric: pd.Series) -> pd.Series:
    """Which rows are breakdown rows, under the old name or the new."""
    text = metric.astype(str)
    return text.str.startswith(ROW_PREFIX) | text.str.startswith(OLD_ROW_PREFIX)
