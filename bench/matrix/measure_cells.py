"""Measure one cell: call the pure measuring functions of `bench.measure` and turn their results
into tidy rows. Nothing here writes files."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch

import models
from bench.checkpoint import checkpoint_mib
from bench.matrix.cells import Cell
from bench.matrix.spec import METRICS, MatrixSpec
from bench.measure import compute, interleaved, machine, memory, params, sampling

Row = dict[str, Any]


@lru_cache(maxsize=2)
def _cached_model(name: str, overrides: tuple[tuple[str, Any], ...]) -> torch.nn.Module:
    return models.build(name, **dict(overrides)).eval()


def _overrides(spec: MatrixSpec, name: str, **extra: Any) -> tuple[tuple[str, Any], ...]:
    overrides = {**spec.overrides.get(name, {}), **extra}
    if spec.channels != 3:
        overrides.setdefault("channels", spec.channels)
    frozen = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return tuple(sorted(frozen.items()))


def build_model(spec: MatrixSpec, name: str, **extra: Any) -> torch.nn.Module:
    """The preset with the matrix's overrides (cached: counters do not modify the model)."""
    return _cached_model(name, _overrides(spec, name, **extra))


def fresh_model(spec: MatrixSpec, name: str) -> torch.nn.Module:
    """A new instance of the preset with the matrix's overrides (eval mode, not cached)."""
    return models.build(name, **dict(_overrides(spec, name))).eval()


def solver_of(spec: MatrixSpec, name: str) -> tuple[str | None, int | None]:
    config = models.preset_config(name, **spec.overrides.get(name, {}))
    if isinstance(config, models.CUNetConfig):
        return config.solver, config.solver_steps
    return None, None


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
    return [_row(cell, "flops_torch", count.flops, counter="torch.utils.flop_counter", method=method)]


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
    # the ODE functions' own cost needs counting here.
    ode_only = sum(
        compute.per_evaluation_macs(model, stage.ode.func, shape, counter="fvcore")
        for _, stage in model.stages()
    )
    rows.append(_row(cell, "macs_per_eval", ode_only, unit="MACs", stat="ode functions",
                     counter="fvcore", method="one evaluation of every block's ODE function, summed"))
    return rows


def measure_checkpoint(spec: MatrixSpec, cell: Cell) -> list[Row]:
    size = checkpoint_mib(build_model(spec, cell.model), shape=_shape(spec, cell))
    return [_row(cell, "checkpoint_mib", size, counter="torch.save",
                 method="training checkpoint (the paper's 'MB'): model + schedule + EMA + Adam, 1 step")]


def _memory(spec: MatrixSpec, cell: Cell, mode: str, metric: str) -> list[Row]:
    peak = memory.peak_memory(
        cell.model, overrides=spec.overrides.get(cell.model, {}), device=cell.device,
        shape=_shape(spec, cell), batch=cell.batch_size, mode=mode, threads=spec.threads,
    )
    method = peak.method + (" (lower bound)" if peak.lower_bound else "")
    return [_row(cell, metric, peak.peak_mib, counter="memory", method=method)]


def measure_peak_infer(spec: MatrixSpec, cell: Cell) -> list[Row]:
    return _memory(spec, cell, "inference", "peak_infer_mib")


def measure_peak_train(spec: MatrixSpec, cell: Cell) -> list[Row]:
    return _memory(spec, cell, "train", "peak_train_mib")


def measure_latency(spec: MatrixSpec, cell: Cell) -> list[Row]:
    """All the cell's models timed round-robin: per model the median/p90/min over its calls and
    its same-run ratio to the reference model."""
    names = list(cell.models)
    reference = spec.latency.reference_for(names)
    # Fresh models, not the two-entry cache: all of them are alive at once here.
    nets = {name: fresh_model(spec, name) for name in names}
    result = interleaved.interleaved_latency(
        nets, reference, plan=spec.latency.plan(len(nets)), batch=cell.batch_size,
        channels=spec.channels, resolution=cell.resolution, device=cell.device,
        dtype=getattr(torch, cell.dtype), threads=spec.threads,
    )
    timer = next(iter(result.stats.values())).timer if result.stats else "timer"
    how = (f"{timer}; {len(result.stats)} models round-robin, {result.rounds} rounds x "
           f"{spec.latency.calls_per_round} calls; warm-up {spec.latency.warmup}; inference_mode")
    rows: list[Row] = []
    for name in nets:
        if name in result.failed:
            rows += [_failed(cell, metric, result.failed[name], model=name)
                     for metric in ("latency_ms", "latency_ratio")]
            continue
        s = result.stats[name]
        rows += [_row(cell, "latency_ms", v, stat=stat, counter="wall clock", n=s.n, method=how,
                      model=name)
                 for stat, v in (("median", s.median_ms), ("p90", s.p90_ms), ("min", s.min_ms))]
        if result.reference is None:
            rows.append(_failed(cell, "latency_ratio", f"reference {reference} failed: "
                                f"{result.failed[reference]}", model=name))
        else:
            rows.append(_row(cell, "latency_ratio", result.ratios[name], unit=f"x {reference}",
                             stat="median", counter="wall clock", n=result.rounds, model=name,
                             method=f"median over rounds of (round median / {reference}'s round "
                                    f"median in the same round); {how}"))
    return rows


def measure_sample_time(spec: MatrixSpec, cell: Cell) -> list[Row]:
    settings = spec.sampling
    result = sampling.time_per_sample(
        build_model(spec, cell.model), steps=cell.steps, batch=cell.batch_size,
        channels=spec.channels, resolution=cell.resolution, sampler=settings.sampler,
        device=cell.device, threads=spec.threads, repeats=settings.repeats, seed=spec.seed,
    )
    method = f"whole {settings.sampler} run / batch; {result.n} runs after a warm-up run"
    return [_row(cell, "sample_time_s", v, stat=stat, counter="wall clock", n=result.n,
                 sampler=settings.sampler, method=method)
            for stat, v in (("median", result.median_s), ("p90", result.p90_s), ("min", result.min_s))]


def measure_peak_gflops(spec: MatrixSpec, cell: Cell) -> list[Row]:
    peak = machine.matmul_peak(cell.device, threads=spec.threads)
    return [_row(cell, "peak_gflops", peak.gflops, stat="max", counter="matmul",
                 method=f"best of {peak.repeats} float32 {peak.size}x{peak.size} matmuls")]


MEASURERS: dict[str, Callable[[MatrixSpec, Cell], list[Row]]] = {
    "params": measure_params,
    "macs_thop": measure_thop,
    "macs_fvcore": measure_fvcore,
    "flops_torch": measure_flop_counter,
    "nfe": measure_nfe,
    "checkpoint_mib": measure_checkpoint,
    "peak_infer_mib": measure_peak_infer,
    "peak_train_mib": measure_peak_train,
    "latency_ms": measure_latency,
    "sample_time_s": measure_sample_time,
    "peak_gflops": measure_peak_gflops,
}
