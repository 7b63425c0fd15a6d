"""Measure the gate's deterministic counts with the matrix's own cells and measurers.

Every count comes from `bench.matrix.runner.measure_cell`, so for the same model and context the
gate's counts are the numbers `python -m bench run` writes, except NFE: the matrix's NFE cell also
counts fvcore MACs per evaluation, three fvcore passes the gate does not need, so the gate reads
the NFE of one forward pass with `bench.measure.compute.call_nfe` instead (the same total).
Latency is timed by the same code as the matrix's latency cell (`bench.gate.run`), but two timings
of one model never agree exactly: the gate compares same-run ratios within a tolerance, and
confirms a failure with a second run.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from bench.errors import UsageError, failure_reason
from bench.gate.baseline import Context
from bench.gate.compare import COUNT_METRICS, INSTRUCTIONS
from bench.matrix.cells import Cell, expand
from bench.matrix.measure_cells import build_model
from bench.matrix.runner import measure_cell
from bench.matrix.spec import METRICS, MatrixSpec, parse_spec, validate_models
from bench.measure import compute
from bench.measure.workload import torch_threads
from bench.results.schema import context_row
from models.errors import ModelInputError
from models.source import model_source

Row = dict[str, Any]


def gate_spec(names: list[str], context: Context,
              overrides: Mapping[str, Mapping[str, Any]] | None = None) -> MatrixSpec:
    """The matrix description of one gate run: `names` at the baseline's context."""
    raw = {
        "matrix": {
            "models": names, "metrics": list(COUNT_METRICS), "resolutions": [context.resolution],
            "batch_sizes": [context.batch_size], "devices": [context.device],
            "threads": context.threads, "channels": context.channels,
        },
        "overrides": {name: dict(values) for name, values in (overrides or {}).items()},
    }
    spec = parse_spec(raw, name="check")
    validate_models(spec)  # a model that cannot be built fails in one line, not as failed rows
    return spec


def context_columns(spec: MatrixSpec, model: str, env: Mapping[str, Any], *,
                    batch_size: int | None, cell: str) -> Row:
    """The context columns of a gate row (the same ones the matrix runner writes)."""
    return context_row(env, model=model, source=spec.source_of(model), device=spec.devices[0],
                       batch_size=batch_size, resolution=spec.resolutions[0],
                       channels=spec.channels, dtype="float32", threads=spec.threads,
                       seed=spec.seed, cell=cell, profile=spec.name)


def _nfe_rows(spec: MatrixSpec, cell: Cell) -> list[Row]:
    try:
        count = compute.call_nfe(build_model(spec, cell.model),
                                 (spec.channels, cell.resolution, cell.resolution))
    except (RuntimeError, ValueError, UsageError, ModelInputError, MemoryError) as error:
        return [{"metric": "nfe", "value": None, "unit": METRICS["nfe"], "stat": "value",
                 "status": "failed", "error": failure_reason(error)}]
    if count is None:
        return []
    return [{"metric": "nfe", "value": count.total, "unit": METRICS["nfe"], "stat": "value",
             "status": "ok", "counter": "ODE-function calls",
             "method": "total over all blocks of one forward pass"}]


def count_cells(spec: MatrixSpec, wanted: Mapping[str, Collection[str]] | None = None) -> list[Cell]:
    """The count cells of `spec`, model by model (each model is built once: the matrix's model
    cache holds two); `wanted` (model -> metrics) keeps only those, None keeps all."""
    cells, _ = expand(spec)
    order = {name: i for i, name in enumerate(spec.models)}
    cells = [c for c in cells if c.group in COUNT_METRICS
             and (wanted is None or c.group in wanted.get(c.model, ()))]
    return sorted(cells, key=lambda c: order[c.model])


def measure_counts(spec: MatrixSpec, cells: list[Cell], env: Mapping[str, Any],
                   timestamp: str) -> list[Row]:
    """Rows of every cell: the headline value of each count metric (failed rows included)."""
    rows: list[Row] = []
    with torch_threads(spec.threads):
        for cell in cells:
            measured = _nfe_rows(spec, cell) if cell.group == "nfe" else measure_cell(spec, cell)
            context = context_columns(spec, cell.model, env, batch_size=cell.batch_size,
                                      cell=cell.key)
            rows += [{**context, **row, "timestamp": timestamp} for row in measured
                     if row["metric"] in COUNT_METRICS and row.get("stat", "value") == "value"]
    return rows


def instruction_spec(names: list[str], context: Context,
                     overrides: Mapping[str, Mapping[str, Any]] | None = None) -> MatrixSpec:
    """The matrix description of the gate's instruction counts: `names` at `context` (the
    baseline's INSTRUCTION_CONTEXT), each preset at its family's small configuration under this
    run's overrides (`ModelSource.small`), a user's factory with its kwargs as given."""
    small = {name: model_source(name, (overrides or {}).get(name)).small().arguments
             for name in names}
    raw = {
        "matrix": {
            "models": names, "metrics": [INSTRUCTIONS], "resolutions": [context.resolution],
            "batch_sizes": [context.batch_size], "devices": ["cpu"], "threads": 1,
            "channels": context.channels,
        },
        "overrides": {name: values for name, values in small.items() if values},
    }
    spec = parse_spec(raw, name="check")
    validate_models(spec)
    return spec


def measure_instruction_rows(spec: MatrixSpec, env: Mapping[str, Any], timestamp: str) -> list[Row]:
    """The instruction cell of `spec` (every model in one valgrind run): totals and functions."""
    cells, _ = expand(spec)
    rows: list[Row] = []
    for cell in cells:
        for row in measure_cell(spec, cell):
            context = context_columns(spec, row["model"], env, batch_size=cell.batch_size,
                                      cell=cell.key)
            rows.append({**context, **row, "timestamp": timestamp})
    return rows
