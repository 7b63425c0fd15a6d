"""Measure one cell: call the pure measuring functions of `bench.measure` and turn their results
into tidy rows. Nothing here writes files."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from bench.checkpoint import checkpoint_mib
from bench.errors import failure_reason
from bench.matrix.cells import Cell
from bench.matrix.spec import METRICS, MatrixSpec
from bench.measure import breakdown, compute, interleaved, machine, memory, modes, params, sampling
from bench.measure.load import MachineLoad, load_columns
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


def _row(metric: str, value: Any, *, stat: str = "value", **extra: Any) -> Row:
    unit = extra.pop("unit", "")
    return {"metric": metric, "value": value, "unit": METRICS.get(metric, unit), "stat": stat,
            "status": "ok", **extra}


def _failed(metric: str, reason: str, **extra: Any) -> Row:
    return {"metric": metric, "value": None, "unit": METRICS.get(metric, ""), "stat": "value",
            "status": "failed", "error": reason, **extra}


def _shape(spec: MatrixSpec, cell: Cell) -> tuple[int, int, int]:
    return (spec.channels, cell.resolution, cell.resolution)


def measure_params(spec: MatrixSpec, cell: Cell) -> list[Row]:
    count = params.count_params(build_model(spec, cell.model))
    rows = {
        "params": _row("params", count.total, counter="numel",
                       method="all parameters, frozen included"),
        "params_trainable": _row("params_trainable", count.trainable, counter="numel",
                                 method=f"requires_grad; frozen: {count.frozen}"),
        "param_mib": _row("param_mib", count.mib, counter="element_size",
                          method="parameter storage at float32; buffers excluded"),
    }
    return [rows[m] for m in cell.metrics]


def _gaps(mapping: dict[str, int]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(mapping.items())) or "none"


def measure_thop(spec: MatrixSpec, cell: Cell) -> list[Row]:
    count = compute.thop_macs(build_model(spec, cell.model), _shape(spec, cell))
    method = (f"thop leaf-module MACs (the paper's 'GFLOPS'); skips functional matmul/softmax/norm; "
              f"modules without a rule: {_gaps(count.uncounted_modules)}")
    return [_row("macs_thop", count.macs, counter="thop", method=method)]


def measure_fvcore(spec: MatrixSpec, cell: Cell) -> list[Row]:
    count = compute.fvcore_macs(build_model(spec, cell.model), _shape(spec, cell))
    method = f"fvcore FlopCountAnalysis (1 per MAC); unsupported ops: {_gaps(count.unsupported_ops)}"
    return [_row("macs_fvcore", count.macs, counter="fvcore", method=method)]


def measure_flop_counter(spec: MatrixSpec, cell: Cell) -> list[Row]:
    count = compute.flop_counter_flops(build_model(spec, cell.model), _shape(spec, cell))
    method = (f"torch.utils.flop_counter (2 per MAC); ops without a formula: "
              f"{_gaps(count.uncounted_ops)}")
    traffic = compute.bytes_moved(build_model(spec, cell.model), _shape(spec, cell))
    return [_row("flops_torch", count.flops, counter="torch.utils.flop_counter", method=method),
            _row("bytes_moved", traffic.bytes, unit="bytes", counter="dispatch",
                 method="unfused upper bound: every operator reads its tensor inputs and writes its "
                        "outputs once (weights included; views free); float32, batch 1")]


def measure_nfe(spec: MatrixSpec, cell: Cell) -> list[Row]:
    model = build_model(spec, cell.model)
    shape = _shape(spec, cell)
    nfe = compute.call_nfe(model, shape)
    if nfe is None:
        return []
    rows = [_row("nfe", nfe.total, counter="ODE-function calls", method="total over all blocks")]
    rows += [_row("nfe", n, stat=f"block {name}", counter="ODE-function calls")
             for name, n in nfe.blocks.items()]
    # The amortised figure (whole-call MACs / NFE) follows from the macs_fvcore and nfe rows; only
    # the ODE functions' own cost needs counting here, for a model that names them (the
    # protocol's optional `ode_functions()`).
    functions = getattr(model, "ode_functions", None)
    if not callable(functions):
        return rows
    ode_only = sum(compute.per_evaluation_macs(model, function, shape, counter="fvcore")
                   for _, function in functions())
    rows.append(_row("macs_per_eval", ode_only, unit="MACs", stat="ode functions",
                     counter="fvcore", method="one evaluation of every block's ODE function, summed"))
    return rows


def measure_checkpoint(spec: MatrixSpec, cell: Cell) -> list[Row]:
    size = checkpoint_mib(build_model(spec, cell.model), shape=_shape(spec, cell))
    return [_row("checkpoint_mib", size, counter="torch.save",
                 method="training checkpoint (the paper's 'MB'): model + schedule + EMA + Adam, 1 step")]


def _memory(spec: MatrixSpec, cell: Cell, phase: memory.Phase, metric: str) -> list[Row]:
    peak = memory.peak_memory(
        spec.source_of(cell.model), device=cell.device, shape=_shape(spec, cell),
        batch=cell.batch_size, phase=phase, threads=spec.threads, dtype=cell.dtype,
    )
    method = peak.method + (" (lower bound)" if peak.lower_bound else "")
    return [_row(metric, peak.peak_mib, counter="memory", method=method)]


def measure_peak_infer(spec: MatrixSpec, cell: Cell) -> list[Row]:
    return _memory(spec, cell, "inference", "peak_infer_mib")


def measure_peak_train(spec: MatrixSpec, cell: Cell) -> list[Row]:
    return _memory(spec, cell, "train", "peak_train_mib")


def pair_key(model: str, mode: str) -> str:
    """The key of one (model, mode) pair in a latency timing."""
    return f"{model}|{mode}"


def _split_key(key: str) -> tuple[str, str]:
    model, _, mode = key.rpartition("|")
    return model, mode


@dataclass(frozen=True)
class TimedPairs:
    """One round-robin timing of (model, mode) pairs, keyed by `pair_key`."""

    timing: interleaved.RoundRobinTiming
    """Statistics and same-round ratios to the reference model in the same mode."""
    prepared: dict[str, modes.Prepared]
    """Pair -> its prepared call (compile time and error against eager)."""
    failed: dict[str, str]
    """Pair -> why it was not timed (its mode failed to prepare, or its warm-up call raised)."""
    reference: str
    threads: int

    @property
    def speedups(self) -> dict[str, float]:
        """Non-eager pair -> median over rounds of (eager round median / its round median)."""
        to_eager = {key: pair_key(_split_key(key)[0], "eager") for key in self.timing.stats
                    if _split_key(key)[1] != "eager"}
        return {key: 1.0 / ratio for key, ratio in self.timing.ratios_to(to_eager).items()}

    @property
    def load(self) -> MachineLoad | None:
        """How busy the machine was over the timed rounds (`timing.load`; None without psutil)."""
        return self.timing.load


def time_pairs(spec: MatrixSpec, names: list[str], reference: str, *,
               plan: Callable[[int], interleaved.InterleavePlan], device: str, dtype: str,
               resolution: int, batch: int) -> TimedPairs:
    """Every (model, mode) pair of `names` (modes: `spec.modes_for`) timed round-robin on one
    input (`interleaved.time_round_robin`): the latency measurement of the matrix's latency cell
    and of the gate (`bench.gate.run`), which differ only in the rows they make of it.
    `plan(n)`: the plan for timing n pairs."""
    dev = check_device(device)
    x, t = denoiser_inputs((spec.channels, resolution, resolution), batch=batch, timestep=500,
                           device=dev, dtype=getattr(torch, dtype))
    with contextlib.ExitStack() as stack:
        used = stack.enter_context(torch_threads(spec.threads))
        stack.enter_context(torch.inference_mode())
        prepared, failed = _prepare_pairs(spec, names, x, t)
        to_reference = {key: pair_key(reference, _split_key(key)[1]) for key in prepared}
        timing = interleaved.time_round_robin({key: p.call for key, p in prepared.items()},
                                              to_reference, plan=plan(len(prepared)), device=dev)
    return TimedPairs(timing, prepared, {**failed, **timing.failed}, reference, used)


def _prepare_pairs(spec: MatrixSpec, names: list[str], x: torch.Tensor, t: torch.Tensor
                   ) -> tuple[dict[str, modes.Prepared], dict[str, str]]:
    """(pair -> its prepared call, pair -> why its mode failed); each non-eager mode is checked
    against the model's eager output. Call inside `torch.inference_mode()`."""
    prepared: dict[str, modes.Prepared] = {}
    failed: dict[str, str] = {}
    for name in names:
        # Fresh models, not the two-entry cache: all of them are alive at once here.
        net = fresh_model(spec, name).to(device=x.device, dtype=x.dtype)
        eager_out = None
        for mode in spec.modes_for(name):
            key = pair_key(name, mode)
            try:
                if mode != "eager" and eager_out is None:
                    eager_out = net(x, t).clone()
                prepared[key] = modes.prepare(net, mode, x, t, eager_out)
            except Exception as error:  # noqa: BLE001 - a mode that fails fails its pair only
                failed[key] = failure_reason(error)
    return prepared, failed


def measure_latency(spec: MatrixSpec, cell: Cell) -> list[Row]:
    """Every (model, mode) pair of the cell timed round-robin (`time_pairs`): per pair the
    median/p90/min over its calls, its same-run ratio to the reference model in the same mode, and
    its speed-up over the same model's eager calls."""
    names = list(cell.models)
    pairs = time_pairs(spec, names, spec.latency.reference_for(names), plan=spec.latency.plan,
                       device=cell.device, dtype=cell.dtype, resolution=cell.resolution,
                       batch=cell.batch_size)
    rows = [row for key, prepared in pairs.prepared.items()
            for row in _mode_rows(cell.dtype, _split_key(key)[0], prepared)]
    how = _latency_method(spec, pairs)
    speedups = pairs.speedups
    for name in names:
        for mode in spec.modes_for(name):
            rows += _pair_rows(pairs, name, mode, how, speedups)
    return rows


def _latency_method(spec: MatrixSpec, pairs: TimedPairs) -> str:
    timing = pairs.timing
    return (f"{timing.timer}; {len(timing.stats)} (model, mode) pairs round-robin, {timing.rounds} "
            f"rounds x {spec.latency.calls_per_round} calls; warm-up {spec.latency.warmup}; "
            f"inference_mode; {pairs.threads} threads")


def _pair_rows(pairs: TimedPairs, name: str, mode: str, how: str, speedups: dict[str, float]
               ) -> list[Row]:
    """latency_ms (median, p90, min), latency_ratio and mode_speedup of one (model, mode) pair."""
    key = pair_key(name, mode)
    where = {"model": name, "mode": mode}
    reference = pairs.reference
    if key in pairs.failed:  # never timed: no load of its own
        return [_failed(metric, pairs.failed[key], **where) for metric in ("latency_ms", "latency_ratio")]
    where.update(load_columns(pairs.load))  # every timed row says how busy the machine was
    s = pairs.timing.stats[key]
    rounds = pairs.timing.rounds
    rows = [_row("latency_ms", v, stat=stat, counter="wall clock", n=s.n, method=how, **where)
            for stat, v in (("median", s.median_ms), ("p90", s.p90_ms), ("min", s.min_ms))]
    if key in pairs.timing.ratios:
        rows.append(_row("latency_ratio", pairs.timing.ratios[key], unit=f"x {reference}",
                         stat="median", counter="wall clock", n=rounds,
                         method=f"median over rounds of (round median / {reference}'s round "
                                f"median in the same round and mode); {how}", **where))
    else:
        why = pairs.failed.get(pair_key(reference, mode), "not timed")
        rows.append(_failed("latency_ratio", f"reference {reference} in mode {mode} failed: {why}",
                            **where))
    if key in speedups:
        rows.append(_row("mode_speedup", speedups[key], unit="x eager", stat="median",
                         counter="wall clock", n=rounds,
                         method=f"median over rounds of (eager round median / {mode} round "
                                f"median of the same model); {how}", **where))
    return rows


def _mode_rows(dtype: str, name: str, prepared: modes.Prepared) -> list[Row]:
    """compile_s and the error against eager of one prepared (model, mode) pair."""
    if prepared.mode == "eager":
        return []
    where = {"model": name, "mode": prepared.mode}
    rows = [_row("mode_max_abs_err", prepared.max_abs_err, unit="abs", stat="max",
                 counter="vs eager", method=f"max |{prepared.mode} - eager| on the timed input; "
                 f"{prepared.notes}", **where),
            _row("mode_max_rel_err", prepared.max_rel_err, unit="rel", stat="max",
                 counter="vs eager", method=f"max |{prepared.mode} - eager| / max |eager|; "
                 f"accepted up to {modes.TOLERANCE.get(dtype, 1e-3):g} for {dtype}", **where)]
    if prepared.compile_s is not None:
        rows.append(_row("compile_s", prepared.compile_s, stat="value", counter="wall clock",
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
    load = load_columns(result.load)
    rows = [_row("sample_time_s", v, stat=stat, counter="wall clock", n=result.n,
                 sampler=settings.sampler, method=method, mode=mode, **load)
            for stat, v in (("median", result.median_s), ("p90", result.p90_s), ("min", result.min_s))]
    if mode != "eager":
        rows.append(_row("sample_max_abs_err", result.max_abs_err, unit="abs", stat="max",
                         counter="vs eager", sampler=settings.sampler, mode=mode,
                         method="max |samples - eager samples|, same seed (samples in [-1, 1])"))
    return rows


def measure_peak_gflops(spec: MatrixSpec, cell: Cell) -> list[Row]:
    peak = machine.matmul_peak(cell.device, threads=spec.threads, dtype=getattr(torch, cell.dtype))
    rows = [_row("peak_gflops", peak.gflops, stat="max", counter="matmul",
                 method=f"best of {peak.repeats} {cell.dtype} {peak.size}x{peak.size} matmuls")]
    if cell.dtype == "float32":  # bandwidth does not depend on the dtype: once per device
        bw = machine.memory_bandwidth(cell.device, threads=spec.threads)
        rows.append(_row("peak_bandwidth_gbs", bw.gbs, unit="GB/s", stat="max", counter="copy",
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
