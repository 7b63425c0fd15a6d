"""The row schema of the suite's tidy results: one row per measurement.

Every harness (matrix, gate, quality sweep, training, profiler) writes rows of the one shape `Row`
declares, in the column order `COLUMNS`, to a run directory's `measurements.csv`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypedDict


class Row(TypedDict, total=False):
    """One measurement: what (model, metric, value, unit, stat, counter), whether it worked
    (status 'ok' or 'failed', then `error` says why), and the full context it was measured in.
    Every harness (matrix, gate, quality sweep, training, profiler) writes rows of this one shape;
    `context_row` builds the context part."""

    model: str
    metric: str
    value: float | int | None
    unit: str
    stat: str
    counter: str | None
    status: str
    error: str | None
    device: str | None
    batch_size: int | None
    resolution: int | None
    channels: int | None
    dtype: str | None
    mode: str | None
    threads: int | None
    solver: str | None
    solver_steps: int | None
    solver_backend: str | None
    steps: int | None
    sampler: str | None
    seed: int | None
    train_seed: int | None
    """The training seed of the checkpoint scored (quality profiles with several trainings per model)."""
    band: str | None
    """The timestep band of a per-noise-level metric, e.g. "t100-199" (denoising error)."""
    dataset: str | None
    n: int | None
    feature_extractor: str | None
    checkpoint: str | None
    method: str | None
    config: str | None
    """The model's full configuration as JSON (`models.ModelSource.config()`)."""
    cell: str | None
    """The resume key (`cell_key`)."""
    profile: str | None
    torch: str | None
    git_commit: str | None
    host: str | None
    cpu: str | None
    """The CPU's model name (/proc/cpuinfo), e.g. "AMD EPYC 7B13"."""
    cpu_family: str | None
    """Vendor, family and model numbers ("AuthenticAMD 25/1"): instruction counts are compared only
    within one family (math libraries may choose kernels by CPU)."""
    load_other: float | None
    """Timed rows: the share of the machine's cores that other processes held while it was timed
    (their CPU time / (wall time x cores)), from psutil."""
    load_steal: float | None
    """Timed rows: the share of core time the hypervisor took (steal), from psutil."""
    busy: bool | None
    """Timed rows: True when other work held more than `bench.measure.load.BUSY_SHARE` of the cores
    while it was timed (the timing is not to be trusted)."""
    rank: int | None
    device_index: int | None
    timestamp: str | None


COLUMNS: list[str] = list(Row.__annotations__)
"""Column order of measurements.csv."""


def context_row(env: Mapping[str, Any], *, model: str, source: Any = None,
                **context: Any) -> dict[str, Any]:
    """The context columns of a row: `model`, what `source` (a `models.ModelSource`) says of it
    (solver, full configuration), the versions, commit and host of `env` (`bench.context.
    run_context()`), and the given `context` columns. A name that is not a column is a bug here,
    not a silently dropped value (ValueError)."""
    unknown = sorted(set(context) - set(COLUMNS))
    if unknown:
        raise ValueError(f"not result columns: {unknown}")
    row: dict[str, Any] = {"model": model}
    if source is not None:
        solver, solver_steps, backend = source.solver()
        row.update(solver=solver, solver_steps=solver_steps, solver_backend=backend,
                   config=json.dumps(source.config(), sort_keys=True, default=str))
    versions = env.get("versions") or {}
    row.update(torch=versions.get("torch"), git_commit=env.get("git_commit"), host=env.get("hostname"),
               cpu=env.get("cpu_model"), cpu_family=env.get("cpu_family"))
    row.update(context)
    return row


MEASUREMENTS = "measurements.csv"

SWEEP_WALL_PER_IMAGE = "sweep_wall_per_image_s"
"""The quality sweep's wall time of generating its n images (in batches) divided by n: not the
matrix's `sample_time_s` (time per sample at [sampling] batch), so it has its own name."""
