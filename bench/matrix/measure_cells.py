"""Measure one cell: call the pure measuring functions of `bench.measure` and turn their results
into tidy rows. Nothing here writes files."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch

from bench.checkpoint import checkpoint_mib
from bench.errors import failure_reason
from bench.matrix.cells import Cell
from bench.matrix.metrics import METRIC_REGISTRY
from bench.matrix.spec import METRICS, MatrixSpec
from bench.measure import breakdown, compute, interleaved, machine, memory, modes, params, sampling
from bench.measure.allocator import steady_allocator
from bench.measure.workload import check_device, denoiser_inputs, torch_threads
from models.source import ModelSource

Row = dict[str, Any]


@lru_cache(maxsize=2)
def _cached_model(source: ModelSource) -> torch.nn.Module:
    return source.build().eval()


def build_model(spec: MatrixSpec, name: str, **extra: Any) -> torch.nn.Module:
    """The matrix model `name` with the matrix's overrides (cached: counters do not modify it)."""
    source = spec.source_of(name)
    source = source.with_arguments(**extra) if extra else source
    try:
        hash(source)
    except TypeError:  # a factory kwarg that is a table (dict): built afresh, not cached
        return source.build().eval()
    return _cached_model(source)


def fresh_model(spec: MatrixSpec, name: str) -> torch.nn.Module:
    """A new instance of the matrix model `name` with its overrides (eval mode, not cached)."""
    return spec.source_of(name).build().eval()


def model_config(spec: MatrixSpec, name: str) -> dict[str, Any]:
    """The model's full configuration, as stored with every row: the preset's family and every
    field, or the factory reference and its keyword arguments."""
    return spec.source_of(name).config()


def solver_of(spec: MatrixSpec, name: str) -> tuple[str | None, int | None, str | None]:
    """(method, steps per block, backend) of a continuous model; Nones for a discrete one."""
    return spec.source_of(name).solver()


def _row(cell: Cell, metric: str, value: Any, *, stat: str = "value", **extra: Any) -> Row:
    unit = extra.pop("unit", "")
    return {"metric": metric, "value": value, "unit": METRICS.get(metric, unit), "stat": stat,
            "status": "ok", **extra}


def _failed(cell: Cell, metric: str, reason: str, **extra: Any) -> Row:
    return {"metric": metric, "value": None, "unit": METRICS.get(metric, ""), "stat": "value",
            "status": "failed", "error": reason, **extra}


def _shape(spec: MatrixSpec, cell: Cell) -> tuple[int, int, int]:
    return (spec.channels, cell.resolution, cell.resolution)


def measure_params(spec: MatrixSpec, cell: Cell) -> list[Row]:
    count = params.count_params(build_model(spec, cell.model))
    rows = {
        "params": _row(cell, "params", count.total, counter="numel",
                       method="all parameters, frozen included"),
        "params_trainable": _row(cell, "params_trainable", count.trainable, counter="numel",
                                 method=f"requires_grad; frozen: {count.frozen}"),
        "param_mib": _row(cell, "param_mib", count.mib, counter="element_size",
                          method="parameter storage at float32; buffers excluded"),
    }
    return [rows[m] for m in cell.metrics]


def _gaps(mapping: dict[str, int]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(mapping.items())) or "none"


def measure_thop(spec: MatrixSpec, cell: Cell) -> list[Row]:
    count = compute.thop_macs(build_model(spec, cell.model), _shape(spec, cell))
    method = (f"thop leaf-module MACs (the paper's 'GFLOPS'); skips functional matmul/softmax/norm; "
              f"modules without a rule: {_gaps(count.uncounted_modules)}")
    return [_row(cell, "macs_thop", count.macs, counter="thop", method=method)]


def measure_fvcore(spec: MatrixSpec, cell: Cell) -> list[Row]:
    count = compute.fvcore_macs(build_model(spec, cell.model), _shape(spec, cell))
    method = f"fvcore FlopCountAnalysis (1 per MAC); unsupported ops: {_gaps(count.unsupported_ops)}"
    return [_row(cell, "macs_fvcore", count.macs, counter="fvcore", method=method)]


def measure_flop_counter(spec: MatrixSpec, cell: Cell) -> list[Row]:
    count = compute.flop_counter_flops(build_model(spec, cell.model), _shape(spec, cell))
    method = (f"torch.utils.flop_counter (2 per MAC); ops without a formula: "
              f"{_gaps(count.uncounted_ops)}")
    traffic = compute.bytes_moved(build_model(spec, cell.model), _shape(spec, cell))
    return [_row(cell, "flops_torch", count.flops, counter="torch.utils.flop_counter", method=method),
            _row(cell, "bytes_moved", traffic.bytes, unit="bytes", counter="dispatch",
                 method="unfused upper bound: every operator reads its tensor inputs and writes its "
                        "outputs once (weights included; views free); float32, batch 1")]


def measure_nfe(spec: MatrixSpec, cell: Cell) -> list[Row]:
    model = build_model(spec, cell.model)
    shape = _shape(spec, cell)
    nfe = compute.call_nfe(model, shape)
    if nfe is None:
        return []
    rows = [_row(cell, "nfe", nfe.total, counter="ODE-function calls", method="total over all blocks")]
    rows += [_row(cell, "nfe", n, stat=f"block {name}", counter="ODE-function calls")
             for name, n in nfe.blocks.items()]
    # The amortised figure (whole-call MACs / NFE) follows from the macs_fvcore and nfe rows; only
    # the ODE functions' own cost needs counting here, for a model that names them (the
    # protocol's optional `ode_functions()`).
    functions = getattr(model, "ode_functions", None)
    if not callable(functions):
        return rows
    ode_only = sum(compute.per_evaluation_macs(model, function, shape, counter="fvcore")
                   for _, function in functions())
    rows.append(_row(cell, "macs_per_eval", ode_only, unit="MACs", stat="ode functions",
                     counter="fvcore", method="one evaluation of every block's ODE function, summed"))
    return rows


def measure_checkpoint(spec: MatrixSpec, cell: Cell) -> list[Row]:
    size = checkpoint_mib(build_model(spec, cell.model), shape=_shape(spec, cell))
    return [_row(cell, "checkpoint_mib", size, counter="torch.save",
                 method="training checkpoint (the paper's 'MB'): model + schedule + EMA + Adam, 1 step")]


def _memory(spec: MatrixSpec, cell: Cell, mode: str, metric: str) -> list[Row]:
    source = spec.source_of(cell.model)
    peak = memory.peak_memory(
        source.name, overrides=source.arguments, device=cell.device, factory=source.factory,
        shape=_shape(spec, cell), batch=cell.batch_size, mode=mode, threads=spec.threads,
        dtype=cell.dtype,
    )
    method = peak.method + (" (lower bound)" if peak.lower_bound else "")
    return [_row(cell, metric, peak.peak_mib, counter="memory", method=method)]


def measure_peak_infer(spec: MatrixSpec, cell: Cell) -> list[Row]:
    return _memory(spec, cell, "inference", "peak_infer_mib")


def measure_peak_train(spec: MatrixSpec, cell: Cell) -> list[Row]:
    return _memory(spec, cell, "train", "peak_train_mib")


def measure_latency(spec: MatrixSpec, cell: Cell) -> list[Row]:
    """Every (model, mode) pair of the cell timed round-robin: per pair the median/p90/min over its
    calls, its same-run ratio to the reference model in the same mode, and its speed-up over the
    same model's eager calls. Each non-eager mode is checked against eager first."""
    names = list(cell.models)
    reference = spec.latency.reference_for(names)
    dev = check_device(cell.device)
    dtype = getattr(torch, cell.dtype)
    shape = (spec.channels, cell.resolution, cell.resolution)
    x, t = denoiser_inputs(shape, batch=cell.batch_size, timestep=500, device=dev, dtype=dtype)
    steady_allocator()
    calls: dict[str, Any] = {}
    failed: dict[str, str] = {}
    prepared_rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        used = stack.enter_context(torch_threads(spec.threads))
        stack.enter_context(torch.inference_mode())
        for name in names:
            # Fresh models, not the two-entry cache: all of them are alive at once here.
            net = fresh_model(spec, name).to(device=dev, dtype=dtype)
            reference_out = None
            for mode in spec.modes_for(name):
                key = f"{name}|{mode}"
                try:
                    if mode != "eager" and reference_out is None:
                        reference_out = net(x, t).clone()
                    prepared = modes.prepare(net, mode, x, t, reference_out)
                except Exception as error:  # noqa: BLE001 - a mode that fails fails its pair only
                    failed[key] = failure_reason(error)
                    continue
                calls[key] = prepared.call
                prepared_rows += _mode_rows(cell, name, prepared)
        timed = interleaved.round_robin(calls, plan=spec.latency.plan(max(len(calls), 1)), device=dev)
    failed.update(timed.failed)
    timer = "cuda-event" if dev.type == "cuda" else "perf_counter"
    how = (f"{timer}; {len(timed.calls)} (model, mode) pairs round-robin, {len(timed.per_round)} "
           f"rounds x {spec.latency.calls_per_round} calls; warm-up {spec.latency.warmup}; "
           f"inference_mode; {used} threads")
    to_reference = {key: f"{reference}|{key.split('|')[1]}" for key in timed.calls}
    to_eager = {key: f"{key.split('|')[0]}|eager" for key in timed.calls if not key.endswith("|eager")}
    ratios = interleaved.paired_ratios(timed.per_round, to_reference) if timed.per_round else {}
    speedups = interleaved.paired_ratios(timed.per_round, to_eager) if timed.per_round else {}
    rows: list[Row] = list(prepared_rows)
    for name in names:
        for mode in spec.modes_for(name):
            key = f"{name}|{mode}"
            where = {"model": name, "mode": mode}
            if key in failed:
                rows += [_failed(cell, metric, failed[key], **where)
                         for metric in ("latency_ms", "latency_ratio")]
                continue
            values = timed.calls[key]
            s = interleaved.stats_of(values, timer)
            rows += [_row(cell, "latency_ms", v, stat=stat, counter="wall clock", n=s.n, method=how,
                          **where)
                     for stat, v in (("median", s.median_ms), ("p90", s.p90_ms), ("min", s.min_ms))]
            if key in ratios:
                rows.append(_row(cell, "latency_ratio", ratios[key], unit=f"x {reference}",
                                 stat="median", counter="wall clock", n=len(timed.per_round),
                                 method=f"median over rounds of (round median / {reference}'s round "
                                        f"median in the same round and mode); {how}", **where))
            else:
                rows.append(_failed(cell, "latency_ratio", f"reference {reference} in mode {mode} "
                                    f"failed: {failed.get(to_reference[key], 'not timed')}", **where))
            if key in speedups:
                rows.append(_row(cell, "mode_speedup", 1.0 / speedups[key], unit="x eager",
                                 stat="median", counter="wall clock", n=len(timed.per_round),
                                 method=f"median over rounds of (eager round median / {mode} round "
                                        f"median of the same model); {how}", **where))
    return rows


def _mode_rows(cell: Cell, name: str, prepared: modes.Prepared) -> list[Row]:
    """compile_s and the error against eager of one prepared (model, mode) pair."""
    if prepared.mode == "eager":
        return []
    where = {"model": name, "mode": prepared.mode}
    rows = [_row(cell, "mode_max_abs_err", prepared.max_abs_err, unit="abs", stat="max",
                 counter="vs eager", method=f"max |{prepared.mode} - eager| on the timed input; "
                 f"{prepared.notes}", **where),
            _row(cell, "mode_max_rel_err", prepared.max_rel_err, unit="rel", stat="max",
                 counter="vs eager", method=f"max |{prepared.mode} - eager| / max |eager|; "
                 f"accepted up to {modes.TOLERANCE.get(cell.dtype, 1e-3):g} for {cell.dtype}", **where)]
    if prepared.compile_s is not None:
        rows.append(_row(cell, "compile_s", prepared.compile_s, stat="value", counter="wall clock",
                         method=f"first call of torch.compile'd model (inductor), incl. one run; "
                                f"{prepared.notes}", **where))
    return rows


def measure_sample_time(spec: MatrixSpec, cell: Cell) -> list[Row]:
    settings = spec.sampling
    mode = cell.modes[0]
    result = sampling.time_per_sample(
        build_model(spec, cell.model), steps=cell.steps, batch=cell.batch_size,
        channels=spec.channels, resolution=cell.resolution, sampler=settings.sampler,
        device=cell.device, dtype=getattr(torch, cell.dtype), threads=spec.threads,
        repeats=settings.repeats, seed=spec.seed, mode=mode,
    )
    method = (f"whole {settings.sampler} run / batch; {result.n} runs after a warm-up run; "
              f"{result.how}")
    rows = [_row(cell, "sample_time_s", v, stat=stat, counter="wall clock", n=result.n,
                 sampler=settings.sampler, method=method, mode=mode)
            for stat, v in (("median", result.median_s), ("p90", result.p90_s), ("min", result.min_s))]
    if mode != "eager":
        rows.append(_row(cell, "sample_max_abs_err", result.max_abs_err, unit="abs", stat="max",
                         counter="vs eager", sampler=settings.sampler, mode=mode,
                         method="max |samples - eager samples|, same seed (samples in [-1, 1])"))
    return rows


def measure_peak_gflops(spec: MatrixSpec, cell: Cell) -> list[Row]:
    peak = machine.matmul_peak(cell.device, threads=spec.threads, dtype=getattr(torch, cell.dtype))
    rows = [_row(cell, "peak_gflops", peak.gflops, stat="max", counter="matmul",
                 method=f"best of {peak.repeats} {cell.dtype} {peak.size}x{peak.size} matmuls")]
    if cell.dtype == "float32":  # bandwidth does not depend on the dtype: once per device
        bw = machine.memory_bandwidth(cell.device, threads=spec.threads)
        rows.append(_row(cell, "peak_bandwidth_gbs", bw.gbs, unit="GB/s", stat="max", counter="copy",
                         method=f"best of {bw.repeats} copies of {bw.mib} MiB (2 x bytes / time)"))
    return rows


def measure_breakdown(spec: MatrixSpec, cell: Cell) -> list[Row]:
    """Where one call's time goes (bench.measure.breakdown); profiled calls are never timed calls."""
    mode = cell.modes[0]
    with torch_threads(spec.threads):
        result = breakdown.breakdown_denoiser(
            fresh_model(spec, cell.model), device=check_device(cell.device),
            dtype=getattr(torch, cell.dtype), batch=cell.batch_size, resolution=cell.resolution,
            channels=spec.channels, mode=mode)
    return [{**row, "status": "ok", "counter": "torch.profiler", "n": result.calls, "mode": mode}
            for row in breakdown.breakdown_rows(result)]


measure_profile = measure_breakdown
"""The name metrics.py still gives the torch.profiler metric's measurer (until the metric is renamed)."""


MEASURERS: dict[str, Callable[[MatrixSpec, Cell], list[Row]]] = {
    metric.name: metric.measurer() for metric in METRIC_REGISTRY
}
"""Cell group -> its measuring function: a view of the metric registry (`bench.matrix.metrics`)."""
