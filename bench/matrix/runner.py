"""Run a matrix: measure every cell not yet in measurements.csv, record failures, keep going.

Rows are added (and the CSV rewritten atomically) after every cell, so an interrupted run loses
at most the cell in flight and resumes from there.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Collection
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

import models
from bench.context import run_context
from bench.errors import UsageError, failure_reason
from bench.files import atomic_write_text
from bench.matrix.cells import GROUP_OF, GROUPS, Cell, expand
from bench.matrix.metrics import METRIC_OF, METRIC_REGISTRY, current_name
from bench.matrix.spec import METRICS, MatrixSpec, validate_models
from bench.measure.allocator import steady_allocator
from bench.results.paths import ensure_writable_dir
from bench.results.schema import context_row
from bench.results.store import MeasurementStore, merge_rank_files, rank_file_name
from bench.train.distributed import DistContext, init_distributed

ENVIRONMENT = "environment.json"


def _context_columns(spec: MatrixSpec, cell: Cell, env: dict[str, Any], model: str) -> dict[str, Any]:
    known = spec.preset_of(model) in models.available() or model in spec.factories
    # (a model of an old CSV that no longer exists: its rows keep their context, not a config)
    return context_row(
        env, model=model, source=spec.source_of(model) if known else None, device=cell.device,
        batch_size=cell.batch_size, resolution=cell.resolution, channels=spec.channels,
        dtype=cell.dtype, mode=cell.modes[0] if len(cell.modes) == 1 else None,
        threads=spec.threads, steps=cell.steps, seed=spec.seed, cell=cell.key, profile=spec.name)


def _skip_reason(spec: MatrixSpec, cell: Cell) -> str | None:
    limit = spec.cpu_max_batch_pixels
    if (limit and cell.device == "cpu" and cell.batch_size and cell.resolution
            and METRIC_OF[cell.group].pixel_cap and cell.batch_size * cell.resolution**2 > limit):
        return (f"skipped: batch {cell.batch_size} x {cell.resolution}^2 pixels is above "
                f"cpu_max_batch_pixels={limit}")
    return None


def check_shardable(spec: MatrixSpec) -> None:
    """Refuse CPU timings under torchrun: ranks on one machine share its cores, so their latencies
    disturb each other and mean nothing. Counts, sizes and memory shard fine."""
    # times (the registry's timing metrics): on a CPU, ranks of one machine share its cores
    timed = [m.name for m in METRIC_REGISTRY if m.timing and any(n in spec.metrics for n in m.metrics)]
    if "cpu" in spec.devices and timed:
        raise UsageError(f"under torchrun the CPU ranks share cores, so CPU timings ({', '.join(timed)}) "
                         "would disturb each other; run them in one process, or shard only CUDA devices "
                         "and deterministic metrics")


def _cells_of_changed_models(spec: MatrixSpec, store: MeasurementStore, keys: set[str]) -> set[str]:
    """This matrix's finished cells holding a row whose stored `config` is not the model's
    configuration now (another --model-arg, a changed TOML): resuming them would report the old
    network's numbers under today's settings. Rows without a stored config are kept."""
    frame = store.frame
    if frame.empty or "config" not in frame:
        return set()
    now = {}
    for model in spec.models:
        try:
            now[model] = json.dumps(spec.source_of(model).config(), sort_keys=True, default=str)
        except Exception:  # noqa: BLE001 - a model that cannot be described now: nothing to compare
            continue
    stored = frame["config"].where(frame["config"].notna(), "").astype(str)
    ours = frame["cell"].astype(str).isin(keys) & frame["model"].astype(str).isin(list(now)) \
        & (stored != "")
    differs = ours & (stored != frame["model"].astype(str).map(now))
    return set(frame.loc[differs, "cell"].astype(str))


def _device_index(cell: Cell) -> int | None:
    return torch.cuda.current_device() if cell.device == "cuda" and torch.cuda.is_available() else None


def _failed_rows(cell: Cell, reason: str) -> list[dict[str, Any]]:
    return [{"model": model, "metric": m, "value": None, "unit": METRICS[m], "stat": "value",
             "status": "failed", "error": reason, "mode": mode}
            for model in cell.models for m in cell.metrics for mode in cell.modes]


def measure_cell(spec: MatrixSpec, cell: Cell) -> list[dict[str, Any]]:
    """Rows of one cell; a failure becomes one 'failed' row per metric with the reason."""
    reason = _skip_reason(spec, cell)
    if reason is None:
        try:
            return METRIC_OF[cell.group].measurer()(spec, cell)
        except Exception as error:  # noqa: BLE001 - any failure of one cell must not stop the run
            reason = failure_reason(error)
            if cell.device == "cuda":
                torch.cuda.empty_cache()
    return _failed_rows(cell, reason)


def run_matrix(spec: MatrixSpec, out_dir: Path, *, retry_failed: bool = False,
               progress: bool = True, remeasure: Collection[str] = ()) -> dict[str, Any]:
    """Measure every cell of `spec` into `out_dir/measurements.csv`; returns the run summary.

    `remeasure`: metrics whose earlier rows (and those of the metrics measured with them, even from
    cells the matrix no longer has) are dropped first, so they are measured again."""
    validate_models(spec)  # every model builds and takes the inputs, before anything is written
    out_dir = Path(out_dir)
    forget = _remeasured_metrics(remeasure)
    ensure_writable_dir(out_dir, "--out")
    ctx = _start_ranks(spec)
    opening_notices = _recover_rank_files(ctx, out_dir)
    torch.set_num_threads(spec.threads)
    allocator_pinned = steady_allocator()
    env = run_context()
    store = MeasurementStore(out_dir)
    cells, notes = expand(spec)
    notes = opening_notices + notes + _apply_resume_policy(spec, store, cells, forget=forget,
                                                           retry_failed=retry_failed)
    done = store.done_cells()
    todo = [c for c in cells if c.key not in done]
    mine = todo[ctx.rank::ctx.world_size]
    started = time.perf_counter()
    failures = _measure_cells(spec, mine, ctx, out_dir, store, env, progress=progress)
    if ctx.is_distributed:
        failures = _gather_ranks(ctx, out_dir, store, failures)
        if not ctx.is_main:
            ctx.close()
            return {"rank": ctx.rank, "cells_measured_now": len(mine)}
    if forget and not todo:
        store.save()  # nothing was re-measured (the metric is not in this matrix): drop the stale rows
    summary = {
        "profile": spec.name, "description": spec.description, "source": spec.source,
        "cells_total": len(cells), "cells_measured_now": len(todo),
        "cells_resumed": len(cells) - len(todo), "failed_rows_now": failures,
        "wall_time_s": round(time.perf_counter() - started, 2), "threads": spec.threads,
        "glibc_allocator_pinned": allocator_pinned, "notes": notes, "world_size": ctx.world_size,
        "spec": asdict(spec), "environment": env,
    }
    _write_environment(out_dir, summary)
    ctx.close()
    return summary


def _start_ranks(spec: MatrixSpec) -> DistContext:
    """This process's rank (a world of one without torchrun); under torchrun, refuse CPU timings
    and give each rank its own GPU."""
    ctx = init_distributed("cpu")  # object collectives only (gloo)
    if ctx.is_distributed:
        check_shardable(spec)
        if torch.cuda.is_available():
            torch.cuda.set_device(ctx.local_rank % torch.cuda.device_count())  # "cuda" = this rank's GPU
    return ctx


def _recover_rank_files(ctx: DistContext, out_dir: Path) -> list[str]:
    """Rows a crashed torchrun run left in its rank files count as finished: rank 0 merges them
    before anything is measured. Returns the store's notices (damaged rows set aside)."""
    notices: list[str] = []
    if ctx.is_main:
        opened = MeasurementStore(out_dir)  # also sets damaged rows aside (see MeasurementStore)
        merge_rank_files(out_dir, opened)
        notices = opened.notices
    ctx.barrier()
    return notices


def _apply_resume_policy(spec: MatrixSpec, store: MeasurementStore, cells: list[Cell], *,
                         forget: set[str], retry_failed: bool) -> list[str]:
    """Drop the finished cells that must be measured again: those of --remeasure metrics, failed
    ones with --retry-failed (this matrix's only), and those measured with another configuration
    of their model. Returns notes on what was dropped."""
    if forget and not store.frame.empty:
        stale = store.frame["metric"].isin(forget) | store.frame["cell"].astype(str).str.split(
            "|").str[0].isin(forget)
        store.drop_cells(set(store.frame.loc[stale, "cell"].astype(str)))
    if retry_failed and not store.frame.empty:
        failed = set(store.frame.loc[store.frame["status"] == "failed", "cell"].astype(str))
        # only this matrix's cells: another matrix's cells in the same directory keep their rows
        store.drop_cells(failed & {c.key for c in cells})
    changed = _cells_of_changed_models(spec, store, {c.key for c in cells})
    if not changed:
        return []
    store.drop_cells(changed)
    return [f"{len(changed)} finished cell(s) measured again: their model's configuration "
            "differs from the one their rows were measured with"]


def _measure_cells(spec: MatrixSpec, cells: list[Cell], ctx: DistContext, out_dir: Path,
                   store: MeasurementStore, env: dict[str, Any], *, progress: bool) -> int:
    """Measure `cells` one by one, appending each one's rows as soon as it is done; returns the
    number of failed rows. Under torchrun each rank appends to its own file (merged by rank 0)."""
    sink = MeasurementStore(out_dir, rank_file_name(ctx.rank)) if ctx.is_distributed else store
    failures = 0
    bar = tqdm(cells, desc=spec.name, unit="cell", disable=not progress or not ctx.is_main,
               dynamic_ncols=True)
    rank_error: str | None = None
    for cell in bar:
        bar.set_postfix_str(cell.key, refresh=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if rank_error is None:
            try:
                measured = measure_cell(spec, cell)
            except Exception as error:  # noqa: BLE001 - this rank is broken; record, do not hang the rest
                rank_error = f"rank {ctx.rank} failed: {failure_reason(error)}"
        if rank_error is not None:
            measured = _failed_rows(cell, rank_error)
        rows = [{**_context_columns(spec, cell, env, row.get("model", cell.model)), **row,
                 "rank": ctx.rank, "device_index": _device_index(cell), "timestamp": stamp}
                for row in measured]
        failures += sum(r["status"] == "failed" for r in rows)
        sink.add(rows)
        warning = busy_warning(cell, rows)
        if warning:  # every rank: each measures its own cells
            tqdm.write(warning, file=sys.stderr)
    bar.close()
    return failures


def busy_warning(cell: Cell, rows: list[dict[str, Any]]) -> str | None:
    """One line when a row of the finished cell was timed while other work held more than
    `bench.measure.load.BUSY_SHARE` of the cores (its `busy` column), else None."""
    busy = [r for r in rows if r.get("busy") is True]
    if not busy:
        return None
    worst = max(busy, key=lambda r: r.get("load_other") or 0.0)
    share = worst.get("load_other") or 0.0
    return (f"warning: {cell.key} was timed while other work held {100 * share:.0f} % of "
            f"{os.cpu_count()} cores; its times are not to be trusted (re-measure with "
            f"--remeasure {worst['metric']} on a quieter machine)")


def _gather_ranks(ctx: DistContext, out_dir: Path, store: MeasurementStore, failures: int) -> int:
    """Wait for every rank, merge their files into measurements.csv (rank 0); the total failures."""
    ctx.barrier()
    failures = sum(ctx.all_gather_objects(failures))
    if ctx.is_main:
        merge_rank_files(out_dir, store)
    ctx.barrier()
    return failures


def _remeasured_metrics(names: Collection[str]) -> set[str]:
    names = [current_name(n) for n in names]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UsageError(f"--remeasure: unknown metric {', '.join(unknown)}; available: "
                         f"{', '.join(METRICS)}")
    groups = {GROUP_OF[n] for n in names}
    return {m for g in groups for m in GROUPS[g]} | groups


def _write_environment(out_dir: Path, summary: dict[str, Any]) -> None:
    path = out_dir / ENVIRONMENT
    previous: list[dict[str, Any]] = []
    if path.exists():
        try:
            old = json.loads(path.read_text())
            previous = old.get("earlier_invocations", []) + [
                {k: old.get(k) for k in ("wall_time_s", "cells_measured_now", "environment")}
            ]
        except (json.JSONDecodeError, AttributeError):
            previous = []
    summary = {**summary, "earlier_invocations": previous}
    atomic_write_text(path, json.dumps(summary, indent=2, default=str) + "\n")
