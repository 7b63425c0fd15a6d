"""Expand a matrix description into cells: the unit of measurement, of resuming and of failure.

A cell measures one group of metrics for one model in one context; its `key` is stable across runs,
so a resumed run skips cells whose rows are already in measurements.csv. The exception is latency:
one cell times every model of the matrix in one context round-robin (`bench.measure.interleaved`),
so that the models' times, and their ratios, come from the same stretch of machine load.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.matrix.spec import MatrixSpec

PAPER_RESOLUTION = 64
# Metrics measured together in one cell (they come from the same work).
GROUPS: dict[str, tuple[str, ...]] = {
    "params": ("params", "params_trainable", "param_mib"),
    "macs_thop": ("macs_thop",),
    "macs_fvcore": ("macs_fvcore",),
    "flops_torch": ("flops_torch",),
    "nfe": ("nfe",),
    "checkpoint_mib": ("checkpoint_mib",),
    "peak_infer_mib": ("peak_infer_mib",),
    "peak_train_mib": ("peak_train_mib",),
    "latency_ms": ("latency_ms",),
    "sample_time_s": ("sample_time_s",),
    "peak_gflops": ("peak_gflops",),
    "profile": ("profile",),
}
MODE_GROUPS = ("latency_ms", "sample_time_s", "profile")
"""Groups measured per execution mode; every other group is mode-independent (counts, sizes) or
measured in eager mode only (memory), which the run's notes say when other modes are asked for."""
GROUP_OF = {metric: group for group, metrics in GROUPS.items() for metric in metrics}


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
        parts = [self.group, self.model, self.device, self.resolution, self.batch_size, self.dtype,
                 self.steps]
        if self.modes != ("eager",):  # eager-only keys stay as before modes existed (resume)
            parts.append("+".join(self.modes))
        return "|".join("" if p is None else str(p) for p in parts)


def cuda_available() -> bool:
    return torch.cuda.is_available()


def expand(spec: MatrixSpec) -> tuple[list[Cell], list[str]]:
    """The cells of `spec` in a sensible order (cheap counts first) and notes on what was skipped."""
    groups = [g for g in GROUPS if any(m in spec.metrics for m in GROUPS[g])]
    devices = [d for d in spec.devices if d != "cuda" or cuda_available()]
    notes = [] if devices == spec.devices else ["cuda requested but not available: CUDA cells skipped"]
    if spec.modes != ["eager"]:
        eager_only = [g for g in groups if g in ("peak_infer_mib", "peak_train_mib")]
        if eager_only:
            notes.append(f"{', '.join(eager_only)} measured in eager mode only (modes {spec.modes} "
                         "apply to latency_ms and sample_time_s)")
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
                cells += [Cell(group, metrics, model, device=d, resolution=r, batch_size=b)
                          for d in devices for r in spec.resolutions for b in spec.batch_sizes]
            elif group == "profile":
                cells += [Cell(group, metrics, model, device=d, resolution=r, batch_size=b, dtype=t,
                               modes=(m,))
                          for d in devices for t in spec.dtypes for r in spec.resolutions
                          for b in spec.batch_sizes for m in spec.modes_for(model)]
            elif group == "sample_time_s":
                steps = spec.sampling.steps_for(model) or spec.sampling.steps_for(spec.preset_of(model))
                cells += [Cell(group, metrics, model, device=d, resolution=_paper_resolution(spec),
                               batch_size=spec.sampling.batch, steps=s, dtype=t, modes=(m,))
                          for d in devices for t in spec.dtypes for m in spec.modes_for(model)
                          for s in steps]
    return cells, notes


def _reports_nfe(spec: MatrixSpec, model: str) -> bool:
    """Whether the model reports ODE-function evaluations (the protocol's `last_nfe`)."""
    return spec.source_of(model).reports_nfe()


def _paper_resolution(spec: MatrixSpec) -> int:
    return PAPER_RESOLUTION if PAPER_RESOLUTION in spec.resolutions else spec.resolutions[0]
