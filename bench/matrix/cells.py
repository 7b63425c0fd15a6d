"""Expand a matrix description into cells: the unit of measurement, of resuming and of failure.

A cell measures one group of metrics for one model in one context; its `key` is stable across runs,
so a resumed run skips cells whose rows are already in measurements.csv. The exception is latency:
one cell times every model of the matrix in one context round-robin (`bench.measure.interleaved`),
so that the models' times, and their ratios, come from the same stretch of machine load.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.matrix.metrics import (
    GROUP_OF,
    GROUPS,
    METRIC_OF,
    PAPER_PIXELS,
    PAPER_RESOLUTION,
    PER_MACHINE,
    PER_MODEL,
    SAMPLING_BATCH,
    Metric,
    unvaried_axes,
)
from bench.matrix.spec import MatrixSpec
from bench.results.keys import cell_key

MACHINE = "machine"
"""The model name of a PER_MACHINE cell."""
__all__ = ["GROUPS", "GROUP_OF", "Cell", "expand"]


@dataclass(frozen=True)
class Cell:
    group: str
    metrics: tuple[str, ...]
    model: str
    device: str = "cpu"
    resolution: int | None = None
    batch_size: int | None = None
    dtype: str = "float32"
    steps: int | None = None
    members: tuple[str, ...] = ()
    """The models of a cell that measures several together (latency); empty otherwise."""
    modes: tuple[str, ...] = ("eager",)
    """Execution modes measured in this cell (latency: all of them round-robin)."""

    @property
    def models(self) -> tuple[str, ...]:
        """Every model this cell measures."""
        return self.members or (self.model,)

    @property
    def key(self) -> str:
        """The cell's resume key (`bench.results.keys.cell_key`)."""
        # eager-only keys stay as before modes existed (resume)
        modes = () if self.modes == ("eager",) else ("+".join(self.modes),)
        return cell_key(self.group, self.model, device=self.device, resolution=self.resolution,
                        batch=self.batch_size, dtype=self.dtype, steps=self.steps, extra=modes)


def cuda_available() -> bool:
    return torch.cuda.is_available()


def expand(spec: MatrixSpec) -> tuple[list[Cell], list[str]]:
    """The cells of `spec` in registry order (cheap counts first) and notes on what was skipped.

    Every rule comes from the metric's declaration (`bench.matrix.metrics.Metric`): its scope, the
    axes it varies over, the values of the others, which models and (device, dtype) pairs it
    applies to."""
    groups = [g for g in GROUPS if any(m in spec.metrics for m in GROUPS[g])]
    devices = [d for d in spec.devices if d != "cuda" or cuda_available()]
    notes = [] if devices == spec.devices else ["cuda requested but not available: CUDA cells skipped"]
    notes += unvaried_axes(spec.metrics, asked_axes(spec))
    cells: list[Cell] = []
    for group in groups:
        metric = METRIC_OF[group]
        metrics = tuple(m for m in GROUPS[group] if m in spec.metrics)
        notes += _unmeasurable_notes(spec, metric, devices)
        if metric.scope == PER_MODEL:
            for model in spec.models:
                cells += _model_cells(spec, metric, metrics, model, devices, notes)
        else:
            cells += _shared_cells(spec, metric, metrics, devices)
    return cells, notes


def _axis_values(spec: MatrixSpec, metric: Metric, axis: str, devices: list[str]) -> list:
    """The values `axis` takes in the cells of `metric` (one fixed value unless it varies)."""
    if axis in metric.axes:
        return {"device": devices, "dtype": spec.dtypes, "resolution": spec.resolutions,
                "batch": spec.batch_sizes}[axis]
    value = metric.value_of(axis)
    if value == PAPER_RESOLUTION:
        value = PAPER_PIXELS if PAPER_PIXELS in spec.resolutions else spec.resolutions[0]
    elif value == SAMPLING_BATCH:
        value = spec.sampling.batch
    return [value]


def _contexts(spec: MatrixSpec, metric: Metric, devices: list[str]) -> list[tuple]:
    """(device, dtype, resolution, batch) of every cell context, pairs the metric cannot measure
    left out."""
    values = [_axis_values(spec, metric, axis, devices) for axis in ("device", "dtype", "resolution",
                                                                    "batch")]
    return [(d, t, r, b) for d in values[0] for t in values[1] for r in values[2] for b in values[3]
            if metric.measurable is None or metric.measurable(d, t) is None]


def _model_cells(spec: MatrixSpec, metric: Metric, metrics: tuple[str, ...], model: str,
                 devices: list[str], notes: list[str]) -> list[Cell]:
    """A per-model metric's cells for `model`: one per context, mode and steps value it varies over."""
    if metric.applies_to and not getattr(spec.source_of(model), metric.applies_to)():
        return []
    modes = spec.modes_for(model) if "mode" in metric.axes else [metric.value_of("mode")]
    steps: list = [metric.value_of("steps")]
    if "steps" in metric.axes:
        steps = spec.sampling.steps_for(model) or spec.sampling.steps_for(spec.preset_of(model))
        if not steps:
            notes.append(f"{metric.name} not measured for {model}: [sampling] steps has no entry "
                         f"for it (add steps = {{ \"{model}\" = [100] }})")
    return [Cell(metric.name, metrics, model, device=d, resolution=r, batch_size=b, dtype=t,
                 steps=s, modes=(m,))
            for d, t, r, b in _contexts(spec, metric, devices) for m in modes for s in steps]


def _shared_cells(spec: MatrixSpec, metric: Metric, metrics: tuple[str, ...],
                  devices: list[str]) -> list[Cell]:
    """Cells of a metric measured once per context for every model together (PER_CONTEXT: every
    mode round-robin in the one cell) or once per machine (PER_MACHINE)."""
    if metric.scope == PER_MACHINE:
        return [Cell(metric.name, metrics, MACHINE, device=d, resolution=r, batch_size=b, dtype=t)
                for d, t, r, b in _contexts(spec, metric, devices)]
    members = tuple(spec.models)
    modes = tuple(spec.modes) if "mode" in metric.axes else (metric.value_of("mode"),)
    return [Cell(metric.name, metrics, "+".join(members), device=d, resolution=r, batch_size=b,
                 dtype=t, members=members, modes=modes)
            for d, t, r, b in _contexts(spec, metric, devices)]


def _unmeasurable_notes(spec: MatrixSpec, metric: Metric, devices: list[str]) -> list[str]:
    """One note per reason the metric is not measured for some asked (device, dtype) pairs."""
    if metric.measurable is None:
        return []
    by_reason: dict[str, list[str]] = {}
    for d in devices:
        for t in spec.dtypes:
            reason = metric.measurable(d, t)
            if reason:
                by_reason.setdefault(reason, []).append(f"{t} on {d}")
    return [f"{metric.name} not measured for {', '.join(sorted(pairs))}: {reason}"
            for reason, pairs in by_reason.items()]


def asked_axes(spec: MatrixSpec) -> dict[str, list]:
    """The axes this matrix varies beyond a single default value (what a metric may ignore)."""
    asked = {"device": spec.devices, "dtype": spec.dtypes, "resolution": spec.resolutions,
             "batch": spec.batch_sizes, "mode": spec.modes}
    defaults = {"device": ["cpu"], "dtype": ["float32"], "mode": ["eager"]}
    return {axis: values for axis, values in asked.items()
            if len(values) > 1 or values != defaults.get(axis, values)}
