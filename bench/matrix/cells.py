"""Expand a matrix description into cells: the unit of measurement, of resuming and of failure.

A cell measures one group of metrics for one model in one context; its `key` is stable across runs,
so a resumed run skips cells whose rows are already in measurements.csv. The exception is latency:
one cell times every model of the matrix in one context round-robin (`bench.measure.interleaved`),
so that the models' times, and their ratios, come from the same stretch of machine load.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.matrix.metrics import GROUP_OF, GROUPS, METRIC_OF, unvaried_axes
from bench.matrix.spec import MatrixSpec
from bench.measure.train_step import AMP_DEVICES
from bench.results.keys import cell_key

PAPER_RESOLUTION = 64
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
    """The cells of `spec` in a sensible order (cheap counts first) and notes on what was skipped."""
    groups = [g for g in GROUPS if any(m in spec.metrics for m in GROUPS[g])]
    devices = [d for d in spec.devices if d != "cuda" or cuda_available()]
    notes = [] if devices == spec.devices else ["cuda requested but not available: CUDA cells skipped"]
    notes += unvaried_axes(spec.metrics, asked_axes(spec))
    if "peak_train_mib" in spec.metrics:
        skipped = sorted({f"{t} on {d}" for d in devices for t in spec.dtypes
                          if not _memory_measurable("peak_train_mib", d, t)})
        if skipped:
            notes.append(f"peak_train_mib not measured for {', '.join(skipped)}: training there runs "
                         f"in float32 (bench train's bf16 autocast is used on "
                         f"{', '.join(AMP_DEVICES)} only)")
    count_resolutions = spec.resolutions
    cells: list[Cell] = []
    for group in groups:
        metrics = tuple(m for m in GROUPS[group] if m in spec.metrics)
        if group == "peak_gflops":
            # float32 keeps its old key; another dtype's peak is a cell of its own
            cells += [Cell(group, metrics, "machine", device=d, dtype=t)
                      for d in devices for t in spec.dtypes]
            continue
        if group == "latency_ms":
            members = tuple(spec.models)
            cells += [Cell(group, metrics, "+".join(members), device=d, resolution=r, batch_size=b,
                           dtype=t, members=members, modes=tuple(spec.modes))
                      for d in devices for t in spec.dtypes
                      for r in spec.resolutions for b in spec.batch_sizes]
            continue
        for model in spec.models:
            continuous = _reports_nfe(spec, model)
            if group == "nfe" and not continuous:
                continue
            if group in ("params", "checkpoint_mib"):
                cells.append(Cell(group, metrics, model, resolution=_paper_resolution(spec)))
            elif group in ("macs_thop", "macs_fvcore", "flops_torch", "nfe"):
                cells += [Cell(group, metrics, model, resolution=r, batch_size=1)
                          for r in count_resolutions]
            elif group in ("peak_infer_mib", "peak_train_mib"):
                cells += [Cell(group, metrics, model, device=d, resolution=r, batch_size=b, dtype=t)
                          for d in devices for t in spec.dtypes for r in spec.resolutions
                          for b in spec.batch_sizes if _memory_measurable(group, d, t)]
            elif group == "profile":
                cells += [Cell(group, metrics, model, device=d, resolution=r, batch_size=b, dtype=t,
                               modes=(m,))
                          for d in devices for t in spec.dtypes for r in spec.resolutions
                          for b in spec.batch_sizes for m in spec.modes_for(model)]
            elif group == "sample_time_s":
                steps = spec.sampling.steps_for(model) or spec.sampling.steps_for(spec.preset_of(model))
                if not steps:
                    notes.append(f"sample_time_s not measured for {model}: [sampling] steps has no "
                                 f"entry for it (add steps = {{ \"{model}\" = [100] }})")
                cells += [Cell(group, metrics, model, device=d, resolution=_paper_resolution(spec),
                               batch_size=spec.sampling.batch, steps=s, dtype=t, modes=(m,))
                          for d in devices for t in spec.dtypes for m in spec.modes_for(model)
                          for s in steps]
            else:  # a metric added to the registry: one cell per value of each axis it declares
                cells += _declared_cells(spec, METRIC_OF[group], metrics, model, devices)
    return cells, notes


def _declared_cells(spec: MatrixSpec, metric, metrics: tuple[str, ...], model: str,
                    devices: list[str]) -> list[Cell]:
    """Cells of a per-model metric from its declared axes alone (an axis it does not declare
    takes one value: cpu, float32, the paper's resolution, batch 1, eager)."""
    axes = metric.axes
    return [Cell(metric.name, metrics, model, device=d, resolution=r, batch_size=b, dtype=t,
                 modes=(m,))
            for d in (devices if "device" in axes else ["cpu"])
            for t in (spec.dtypes if "dtype" in axes else ["float32"])
            for r in (spec.resolutions if "resolution" in axes else [_paper_resolution(spec)])
            for b in (spec.batch_sizes if "batch" in axes else [1])
            for m in (spec.modes_for(model) if "mode" in axes else ["eager"])]


def _memory_measurable(group: str, device: str, dtype: str) -> bool:
    return not (group == "peak_train_mib" and dtype != "float32" and device not in AMP_DEVICES)


def asked_axes(spec: MatrixSpec) -> dict[str, list]:
    """The axes this matrix varies beyond a single default value (what a metric may ignore)."""
    asked = {"device": spec.devices, "dtype": spec.dtypes, "resolution": spec.resolutions,
             "batch": spec.batch_sizes, "mode": spec.modes}
    defaults = {"device": ["cpu"], "dtype": ["float32"], "mode": ["eager"]}
    return {axis: values for axis, values in asked.items()
            if len(values) > 1 or values != defaults.get(axis, values)}


def _reports_nfe(spec: MatrixSpec, model: str) -> bool:
    """Whether the model reports ODE-function evaluations (the protocol's `last_nfe`)."""
    return spec.source_of(model).reports_nfe()


def _paper_resolution(spec: MatrixSpec) -> int:
    return PAPER_RESOLUTION if PAPER_RESOLUTION in spec.resolutions else spec.resolutions[0]
