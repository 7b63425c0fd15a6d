"""The metric registry: every metric the matrix can measure, declared once, with every rule for it.

A metric names its unit, the function that measures it (a "module:function" taking (spec, cell)
and returning rows, resolved when first used so this module imports nothing of the measuring side),
the metrics measured in the same cell (the same work), and how its cells are formed: its scope (one
cell per model, one cell timing every model of a context together, or one per machine), the axes it
varies over, the value each other axis takes, which models and which (device, dtype) pairs it applies
to, whether the CPU pixel cap applies, which of its values count something, and how the gate treats
it. The cell expansion (`bench.matrix.cells`), the runner, the reports and the gate read only these
declarations. A new metric is one file with its measuring function plus one `Metric(...)` line below
(or `register_metric(...)` at run time).

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

# How a metric's cells are formed (Metric.scope).
PER_MODEL = "model"
"""One cell per model and per value of each axis the metric varies over."""
PER_CONTEXT = "context"
"""One cell per context (device, dtype, resolution, batch) measuring every model of the matrix in
every mode together (latency: round-robin, so that ratios come from the same stretch of load)."""
PER_MACHINE = "machine"
"""One cell per device and dtype, of the machine rather than a model (its model is 'machine')."""
SCOPES = (PER_MODEL, PER_CONTEXT, PER_MACHINE)

# Symbolic values an axis the metric does not vary over can take (Metric.fixed).
PAPER_RESOLUTION = "paper resolution"
"""The paper's 64x64 when the matrix has it, else the matrix's first resolution."""
SAMPLING_BATCH = "sampling batch"
"""The matrix's [sampling] batch."""
PAPER_PIXELS = 64
FIXED_DEFAULTS: Mapping[str, Any] = {"device": "cpu", "dtype": "float32",
                                     "resolution": PAPER_RESOLUTION, "batch": 1, "mode": "eager",
                                     "steps": None}
"""What an axis takes when a metric neither varies over it nor fixes it (None: not part of the
cell)."""

GATE_EXACT = "exact"
"""The gate compares the value exactly (within `gate_slack` as a fraction)."""
GATE_RELATIVE = "relative"
"""The gate compares the value within a relative tolerance of its own (`gate_tolerance_pct`, changed
with the gate's --<metric>-tolerance): deterministic up to a small spread, like instruction counts."""
GATE_RATIO = "ratio"
"""The gate compares the metric's `gate_row` (a ratio to a reference model timed in the same run)
within the gate's --tolerance."""


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
    derived: tuple[str, ...] = ()
    """Rows the cell writes besides its metrics that cannot be asked for on their own."""
    unvaried: Mapping[str, str] = field(default_factory=dict)
    """Axis -> why the metric does not vary over it (said in the run's notes)."""
    scope: str = PER_MODEL
    """PER_MODEL, PER_CONTEXT or PER_MACHINE: how many models one cell measures."""
    fixed: Mapping[str, Any] = field(default_factory=dict)
    """Axis -> the value it takes in every cell (a number, None for 'not part of the cell', or
    PAPER_RESOLUTION / SAMPLING_BATCH); unlisted axes not in `axes` take FIXED_DEFAULTS."""
    applies_to: str | None = None
    """A `ModelSource` question (method name) that must answer True for a model to get cells,
    e.g. 'continuous': the model is asked, never its class."""
    measurable: Callable[[str, str], str | None] | None = None
    """(device, dtype) -> why the metric is not measured there, or None where it is; every
    skipped pair is said in the run's notes."""
    pixel_cap: bool = False
    """The matrix's cpu_max_batch_pixels applies (the cell holds batch x resolution^2 activations)."""
    integers: tuple[str, ...] = ()
    """Its metrics that count something: a fractional value of one is damage, not a number."""
    gate: str | None = None
    """GATE_EXACT, GATE_RATIO or None (not gated)."""
    gate_slack: float = 0.0
    gate_tolerance_pct: float = 0.0
    """GATE_RELATIVE: the default tolerance in percent."""
    gate_row: str | None = None
    """GATE_RATIO: the derived row the gate compares (e.g. latency_ratio)."""
    timing: bool = False
    """A time: on a CPU, torchrun ranks sharing the cores would disturb it."""
    aliases: tuple[str, ...] = ()
    """Former names of this metric (and of its cell group): still accepted in a matrix and read
    from older results, for one release."""

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"metric {self.name}: scope {self.scope!r} is not one of {SCOPES}")
        unknown = [a for a in (*self.axes, *self.fixed) if a not in AXES]
        if unknown:
            raise ValueError(f"metric {self.name}: unknown axes {unknown}; valid: {AXES}")
        if self.gate == GATE_RELATIVE and not self.gate_tolerance_pct > 0:
            raise ValueError(f"metric {self.name}: a relative-gated metric names its tolerance")
        if self.gate == GATE_RATIO and not self.gate_row:
            raise ValueError(f"metric {self.name}: a ratio-gated metric names its gate_row")

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric of this cell, this one first."""
        return (self.name, *self.also)

    def value_of(self, axis: str) -> Any:
        """The value a non-varied axis takes in every cell of this metric."""
        return self.fixed.get(axis, FIXED_DEFAULTS[axis])

    def measurer(self) -> Callable[..., list[dict[str, Any]]]:
        module, _, function = self.measure.partition(":")
        return getattr(importlib.import_module(module), function)


def _train_memory_measurable(device: str, dtype: str) -> str | None:
    """bfloat16 training memory is bench train's bf16 autocast, which runs on CUDA only."""
    from bench.measure.train_step import AMP_DEVICES

    if dtype == "float32" or device in AMP_DEVICES:
        return None
    return (f"training there runs in float32 (bench train's bf16 autocast is used on "
            f"{', '.join(AMP_DEVICES)} only)")


_CELLS = "bench.matrix.measure_cells"
_COUNT = {"dtype": "a count: the same at every dtype", "device": "a count: the same on every device",
          "mode": "a count: the same in every execution mode",
          "batch": "counted at batch 1 (it scales with the batch)"}
_SIZE = {"dtype": "stored at float32, as trained", "device": "a file size: the same on every device",
         "mode": "a file size: the same in every execution mode",
         "resolution": "weights and optimizer state: the same at every resolution",
         "batch": "weights and optimizer state: the same at every batch"}
_MACHINE = {"resolution": "a property of the machine", "batch": "a property of the machine",
            "mode": "a property of the machine"}
_MEMORY_AXES = ("device", "dtype", "resolution", "batch")
_TIMED_AXES = ("device", "dtype", "resolution", "batch", "mode")

METRIC_REGISTRY: list[Metric] = [
    # parameters (numel), trainable ones, float32 storage
    Metric("params", "count", f"{_CELLS}:measure_params", also=("params_trainable", "param_mib"),
           also_units={"param_mib": "MiB"}, fixed={"batch": None},
           unvaried={**_COUNT, "resolution": "a count of weights: the same at every resolution",
                     "batch": "a count of weights: the same at every batch"},
           integers=("params", "params_trainable"), gate=GATE_EXACT),
    # thop leaf-module MACs at batch 1 (the paper's 'GFLOPS')
    Metric("macs_thop", "MACs", f"{_CELLS}:measure_thop", axes=("resolution",), unvaried=_COUNT,
           integers=("macs_thop",), gate=GATE_EXACT),
    # fvcore FlopCountAnalysis at batch 1 (1 per MAC)
    Metric("macs_fvcore", "MACs", f"{_CELLS}:measure_fvcore", axes=("resolution",), unvaried=_COUNT,
           integers=("macs_fvcore",), gate=GATE_EXACT),
    # torch.utils.flop_counter at batch 1 (2 per MAC) and an unfused bytes estimate
    Metric("flops_torch", "FLOPs", f"{_CELLS}:measure_flop_counter", axes=("resolution",),
           unvaried=_COUNT, integers=("flops_torch",), gate=GATE_EXACT),
    # ODE-function evaluations of one call, for models that report them (the protocol's last_nfe)
    Metric("nfe", "evaluations", f"{_CELLS}:measure_nfe", axes=("resolution",),
           unvaried={**_COUNT, "batch": "counted at batch 1 (fixed-step solvers: any batch)"},
           applies_to="continuous", integers=("nfe",), gate=GATE_EXACT),
    # training checkpoint size (the paper's 'MB'): model + EMA + Adam + schedule
    Metric("checkpoint_mib", "MiB", f"{_CELLS}:measure_checkpoint", fixed={"batch": None},
           unvaried=_SIZE, gate=GATE_EXACT, gate_slack=0.001),
    # peak memory of one inference call (weights and input in the cell's dtype)
    Metric("peak_infer_mib", "MiB", f"{_CELLS}:measure_peak_infer", axes=_MEMORY_AXES,
           unvaried={"mode": "measured in eager mode"}, pixel_cap=True),
    # peak memory of one training step (bench train's step; bfloat16 = autocast)
    Metric("peak_train_mib", "MiB", f"{_CELLS}:measure_peak_train", axes=_MEMORY_AXES,
           unvaried={"mode": "measured in eager mode"}, measurable=_train_memory_measurable,
           pixel_cap=True),
    # per-call time, every model of a context round-robin in one cell
    Metric("latency_ms", "ms", f"{_CELLS}:measure_latency", axes=_TIMED_AXES, scope=PER_CONTEXT,
           pixel_cap=True, gate=GATE_RATIO, gate_row="latency_ratio", timing=True),
    # time to generate one sample at batch [sampling] batch (a whole sampler run)
    Metric("sample_time_s", "s", f"{_CELLS}:measure_sample_time",
           axes=("device", "dtype", "mode", "steps"), fixed={"batch": SAMPLING_BATCH}, timing=True,
           unvaried={"resolution": "timed at the paper's 64x64 (or the matrix's first resolution)",
                     "batch": "timed at [sampling] batch"}),
    # the machine's matmul peak (and memory bandwidth) for the roofline
    Metric("peak_gflops", "GFLOP/s", f"{_CELLS}:measure_peak_gflops", axes=("device", "dtype"),
           derived=("peak_bandwidth_gbs",), scope=PER_MACHINE, fixed={"resolution": None,
                                                                      "batch": None}, timing=True,
           unvaried=_MACHINE),
    # callgrind instructions of one eager forward (valgrind's AVX2 path), every model in one run
    Metric("instructions", "instructions", "bench.matrix.instruction_cells:measure_instructions",
           axes=("resolution", "batch"), scope=PER_CONTEXT,
           fixed={"device": "cpu", "dtype": "float32", "mode": "eager"},
           unvaried={"device": "counted on the CPU, under valgrind",
                     "dtype": "counted in float32", "mode": "counted in eager mode"},
           integers=("instructions",), gate=GATE_RELATIVE, gate_tolerance_pct=1.0),
    # torch.profiler: where one call's time goes, per block and kind of work (formerly 'profile')
    Metric("breakdown", "ms", f"{_CELLS}:measure_breakdown", axes=_TIMED_AXES, pixel_cap=True,
           timing=True, aliases=("profile",)),
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

ALIASES: dict[str, str] = {alias: m.name for m in METRIC_REGISTRY for alias in m.aliases}
"""A metric's former name -> its name now (accepted for one release, with a note)."""

INTEGER_METRICS: set[str] = {name for m in METRIC_REGISTRY for name in m.integers}
"""Metrics whose values count something (a fractional one is refused as damage)."""


def machine_metrics() -> frozenset[str]:
    """Rows of the machine rather than of a model (their `model` is 'machine')."""
    return frozenset(name for m in METRIC_REGISTRY if m.scope == PER_MACHINE
                     for name in (*m.metrics, *m.derived))


def register_metric(metric: Metric) -> Metric:
    """Add a metric at run time (a plugin, a test); the same as one more line in METRIC_REGISTRY.
    ValueError if one of its names is taken."""
    taken = [name for name in metric.metrics if name in UNITS]
    if taken:
        raise ValueError(f"metric name(s) {taken} already registered")
    METRIC_REGISTRY.append(metric)
    METRIC_OF[metric.name] = metric
    GROUPS[metric.name] = metric.metrics
    INTEGER_METRICS.update(metric.integers)
    ALIASES.update({alias: metric.name for alias in metric.aliases})
    for name in metric.metrics:
        GROUP_OF[name] = metric.name
        UNITS[name] = metric.also_units.get(name, metric.unit)
    return metric


def current_name(name: str) -> str:
    """A metric (or cell group) name as the registry names it now: a former name (an alias) maps
    to the metric it became; any other name is returned as it is."""
    return ALIASES.get(name, name)


def renamed(names: list[str]) -> list[str]:
    """Notes for the former metric names among `names`, one each."""
    return [f"metric '{n}' is now '{ALIASES[n]}' (the old name is accepted for one release)"
            for n in dict.fromkeys(names) if n in ALIASES]


def relative_gated() -> dict[str, Metric]:
    """Name -> declaration of every metric the gate compares within a tolerance of its own."""
    return {m.name: m for m in METRIC_REGISTRY if m.gate == GATE_RELATIVE}


def ratio_gated() -> dict[str, Metric]:
    """gate_row -> the metric it is derived from, for every ratio-gated metric."""
    return {m.gate_row: m for m in METRIC_REGISTRY if m.gate == GATE_RATIO and m.gate_row}


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
