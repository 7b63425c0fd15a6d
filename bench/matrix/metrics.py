"""The metric registry: every metric the matrix can measure, declared once.

A metric names its unit, the axes of the matrix it varies over, the function that measures it (a
"module:function" taking (spec, cell) and returning rows, resolved when first used so this module
imports nothing of the measuring side), the metrics measured in the same cell (the same work), and
how the gate treats it. `spec` (which names are valid, their units), the cell expansion
(`bench.matrix.cells`), the measuring dispatch (`bench.matrix.measure_cells.MEASURERS`) and the gate
(`bench.gate.compare`) are views of `METRIC_REGISTRY`. A new metric is one file with its measuring
function plus one `Metric(...)` line below.

An axis the matrix asks for that a metric does not vary over is said in the run's notes and in
environment.json (`unvaried_axes`), never silently measured as something else.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

AXES = ("device", "dtype", "resolution", "batch", "mode", "steps")
"""Axes of the matrix a metric can vary over."""

GATE_EXACT = "exact"
"""The gate compares the value exactly (within `gate_slack` as a fraction)."""
GATE_RATIO = "ratio"
"""The gate compares the value as a ratio to a reference model timed in the same run, within the
gate's --tolerance."""


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    measure: str
    """'module:function' measuring this metric's cell: (spec, cell) -> rows."""
    axes: tuple[str, ...] = ()
    """The axes (of AXES) it varies over; every other asked-for axis gets a note with `unvaried`."""
    also: tuple[str, ...] = ()
    """Further metrics measured in the same cell (they come from the same work)."""
    also_units: Mapping[str, str] = field(default_factory=dict)
    """Units of the `also` metrics that differ from `unit`."""
    unvaried: Mapping[str, str] = field(default_factory=dict)
    """Axis -> why the metric does not vary over it (said in the run's notes)."""
    gate: str | None = None
    """GATE_EXACT, GATE_RATIO or None (not gated)."""
    gate_slack: float = 0.0
    timing: bool = False
    """A time: on a CPU, torchrun ranks sharing the cores would disturb it."""
    description: str = ""

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric of this cell, this one first."""
        return (self.name, *self.also)

    def measurer(self) -> Callable[..., list[dict[str, Any]]]:
        module, _, function = self.measure.partition(":")
        return getattr(importlib.import_module(module), function)


_CELLS = "bench.matrix.measure_cells"
_COUNT = {"dtype": "a count: the same at every dtype", "device": "a count: the same on every device",
          "mode": "a count: the same in every execution mode",
          "batch": "counted at batch 1 (it scales with the batch)"}
_SIZE = {"dtype": "stored at float32, as trained", "device": "a file size: the same on every device",
         "mode": "a file size: the same in every execution mode",
         "resolution": "weights and optimizer state: the same at every resolution",
         "batch": "weights and optimizer state: the same at every batch"}

METRIC_REGISTRY: list[Metric] = [
    Metric("params", "count", f"{_CELLS}:measure_params", also=("params_trainable", "param_mib"),
           also_units={"param_mib": "MiB"},
           unvaried={**_COUNT, "resolution": "a count of weights: the same at every resolution",
                     "batch": "a count of weights: the same at every batch"},
           gate=GATE_EXACT, description="parameters (numel), trainable ones, float32 storage"),
    Metric("macs_thop", "MACs", f"{_CELLS}:measure_thop", axes=("resolution",), unvaried=_COUNT,
           gate=GATE_EXACT, description="thop leaf-module MACs at batch 1 (the paper's 'GFLOPS')"),
    Metric("macs_fvcore", "MACs", f"{_CELLS}:measure_fvcore", axes=("resolution",), unvaried=_COUNT,
           gate=GATE_EXACT, description="fvcore FlopCountAnalysis at batch 1 (1 per MAC)"),
    Metric("flops_torch", "FLOPs", f"{_CELLS}:measure_flop_counter", axes=("resolution",),
           unvaried=_COUNT, gate=GATE_EXACT,
           description="torch.utils.flop_counter at batch 1 (2 per MAC) and an unfused bytes estimate"),
    Metric("nfe", "evaluations", f"{_CELLS}:measure_nfe", axes=("resolution",),
           unvaried={**_COUNT, "batch": "counted at batch 1 (fixed-step solvers: any batch)"},
           gate=GATE_EXACT, description="ODE-function evaluations of one call (models that report them)"),
    Metric("checkpoint_mib", "MiB", f"{_CELLS}:measure_checkpoint", unvaried=_SIZE, gate=GATE_EXACT,
           gate_slack=0.001,
           description="training checkpoint size (the paper's 'MB'): model + EMA + Adam + schedule"),
    Metric("peak_infer_mib", "MiB", f"{_CELLS}:measure_peak_infer",
           axes=("device", "dtype", "resolution", "batch"),
           unvaried={"mode": "measured in eager mode"},
           description="peak memory of one inference call (weights and input in the cell's dtype)"),
    Metric("peak_train_mib", "MiB", f"{_CELLS}:measure_peak_train",
           axes=("device", "dtype", "resolution", "batch"),
           unvaried={"mode": "measured in eager mode"},
           description="peak memory of one training step (bench train's step; bfloat16 = autocast)"),
    Metric("latency_ms", "ms", f"{_CELLS}:measure_latency",
           axes=("device", "dtype", "resolution", "batch", "mode"), gate=GATE_RATIO, timing=True,
           description="per-call time, every model of a context round-robin in one cell"),
    Metric("sample_time_s", "s", f"{_CELLS}:measure_sample_time",
           axes=("device", "dtype", "mode", "steps"), timing=True,
           unvaried={"resolution": "timed at the paper's 64x64 (or the matrix's first resolution)",
                     "batch": "timed at [sampling] batch"},
           description="time to generate one sample at batch [sampling] batch (a whole sampler run)"),
    Metric("peak_gflops", "GFLOP/s", f"{_CELLS}:measure_peak_gflops", axes=("device", "dtype"),
           timing=True, unvaried={"resolution": "a property of the machine", "batch": "a property of "
                                  "the machine", "mode": "a property of the machine"},
           description="the machine's matmul peak (and memory bandwidth) for the roofline"),
    Metric("profile", "ms", f"{_CELLS}:measure_profile",
           axes=("device", "dtype", "resolution", "batch", "mode"), timing=True,
           description="torch.profiler per-block times of one call"),
]

METRIC_OF: dict[str, Metric] = {m.name: m for m in METRIC_REGISTRY}
"""Cell metric name -> its declaration."""

EXTRA_UNITS: dict[str, str] = {"compile_s": "s"}
"""Rows a cell writes besides its metrics (not requestable on their own)."""

UNITS: dict[str, str] = {
    **{name: m.also_units.get(name, m.unit) for m in METRIC_REGISTRY for name in m.metrics},
    **EXTRA_UNITS,
}
"""Every metric name a matrix may ask for (and compile_s), with its unit."""

GROUPS: dict[str, tuple[str, ...]] = {m.name: m.metrics for m in METRIC_REGISTRY}
"""Cell (named by its first metric) -> the metrics measured in it."""
GROUP_OF: dict[str, str] = {name: m.name for m in METRIC_REGISTRY for name in m.metrics}


def register_metric(metric: Metric) -> Metric:
    """Add a metric at run time (a plugin, a test); the same as one more line in METRIC_REGISTRY.
    ValueError if one of its names is taken."""
    taken = [name for name in metric.metrics if name in UNITS]
    if taken:
        raise ValueError(f"metric name(s) {taken} already registered")
    METRIC_REGISTRY.append(metric)
    METRIC_OF[metric.name] = metric
    GROUPS[metric.name] = metric.metrics
    for name in metric.metrics:
        GROUP_OF[name] = metric.name
        UNITS[name] = metric.also_units.get(name, metric.unit)
    return metric


def unvaried_axes(metrics: list[str], asked: Mapping[str, list[Any]]) -> list[str]:
    """One line per asked-for axis (with more than its default value) that some requested metric
    does not vary over: which metrics, and why."""
    lines = []
    cells = [METRIC_OF[name] for name in dict.fromkeys(GROUP_OF[m] for m in metrics if m in GROUP_OF)]
    for axis, values in asked.items():
        ignoring = [m for m in cells if axis not in m.axes]
        if not ignoring:
            continue
        reasons = "; ".join(f"{m.name}: {m.unvaried.get(axis, 'not varied')}" for m in ignoring)
        lines.append(f"{axis} {values} asked, but {len(ignoring)} metric(s) do not vary over it "
                     f"({reasons})")
    return lines
