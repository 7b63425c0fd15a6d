"""One gate run: what to measure (from the baseline and the options), measuring it, and the
verdicts (`run_check`) or the new baseline (`run_update`). Printing is the command's job.

Counts and instruction counts are measured by the matrix's own cells (`bench.gate.counts`);
latency is timed by the matrix latency cell's own measurement (`bench.matrix.measure_cells.
time_pairs`, eager mode), of which the gate keeps the same-run ratios (gated) and the medians of
the round medians (shown).

What is comparable: counts everywhere; instruction counts only on the CPU family that wrote them
(math libraries may pick kernels by CPU); latency ratios only on the CPU model that wrote them
(ratios between a wide U-Net and the many-small-kernel cU-Nets move between microarchitectures by
up to 15 %). What is not comparable gets the verdict 'not comparable' with the baseline's CPU, never
a false regression."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import models
from bench.context import run_context
from bench.errors import UsageError
from bench.gate import compare as cmp
from bench.gate.baseline import (
    DEFAULT_BASELINE,
    INSTRUCTION_CONTEXT,
    RATIO_UNIT_PREFIX,
    Baseline,
    Context,
    Machine,
    gated_family,
    load_baseline,
    write_baseline,
)
from bench.gate.counts import (
    context_columns,
    count_cells,
    gate_spec,
    instruction_spec,
    measure_counts,
    measure_instruction_rows,
)
from bench.matrix.cells import Cell
from bench.matrix.instruction_cells import FUNCTION_STAT
from bench.matrix.measure_cells import pair_key, time_pairs
from bench.matrix.spec import MatrixSpec, available_threads
from bench.measure import instructions as callgrind
from bench.measure.interleaved import InterleavePlan
from bench.measure.load import load_columns

Row = dict[str, Any]
DEFAULT_REFERENCE = "unet"
DEFAULT_THREADS = 1
"""Threads of a new baseline. One, not the paper's two: on a busy machine (a shared CI runner, or
other processes on the cores) a multi-threaded op waits at every barrier for a descheduled thread,
which slows small ops - and thus small models - far more than large ones (a width-4 cU-Net call
measured 21 ms with one thread and 3.4 s with two on a loaded 2-core VM), so ratios measured with
several threads on a busy machine are noise. One thread measures the work each model does, which is
what a regression changes. The counts do not depend on threads."""


@dataclass(frozen=True)
class GateOptions:
    baseline: Path = DEFAULT_BASELINE
    tolerance_pct: float = 10.0
    instructions_tolerance_pct: float = cmp.RELATIVE_METRICS[cmp.INSTRUCTIONS]
    skip_instructions: bool = False
    reference: str | None = None
    """None: the baseline's reference model (DEFAULT_REFERENCE for a new baseline)."""
    models: tuple[str, ...] | None = None
    skip_latency: bool = False
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Model -> config overrides applied to this run only (what-if runs and tests); never stored."""
    plan: InterleavePlan = InterleavePlan()


@dataclass(frozen=True)
class GateLatency:
    """The gate's view of one latency timing (`bench.matrix.measure_cells.time_pairs`, the matrix
    latency cell's own measurement, in eager mode), model by model."""

    reference: str | None
    """The model the ratios are taken to; None when it failed (then there are no ratios)."""
    ratios: dict[str, float]
    """Model -> median over rounds of (its round median / the reference's round median)."""
    median_ms: dict[str, float]
    """Model -> median over rounds of its round medians (information only, not gated)."""
    timed: list[str]
    """The models timed (their warm-up call ran)."""
    failed: dict[str, str]
    """Model -> why it was not timed."""
    rounds: int
    plan: InterleavePlan
    load: Any = None
    """`bench.measure.load.MachineLoad` over the timed rounds (None: not measured)."""


@dataclass
class Measured:
    rows: list[Row]
    values: dict[cmp.Key, float]
    errors: dict[cmp.Key, str]
    seconds: dict[str, float]
    latency: GateLatency | None = None
    env: dict[str, Any] = field(default_factory=dict)

    @property
    def functions(self) -> dict[str, dict[str, int]]:
        """Model -> its largest functions' instruction counts, as measured now."""
        found: dict[str, dict[str, int]] = {}
        for row in self.rows:
            stat = str(row.get("stat") or "")
            if row["metric"] == cmp.INSTRUCTIONS and stat.startswith(FUNCTION_STAT):
                found.setdefault(row["model"], {})[stat[len(FUNCTION_STAT):]] = int(row["value"])
        return found


@dataclass
class CheckResult:
    findings: list[cmp.Finding]
    measured: Measured
    models: list[str]
    reference: str | None
    notes: list[str]
    function_changes: dict[str, list[cmp.FunctionChange]] = field(default_factory=dict)
    """Model -> the functions whose instruction counts moved most (for failing instruction counts)."""

    @property
    def passed(self) -> bool:
        return not any(f.failed for f in self.findings)


@dataclass
class UpdateResult:
    changes: list[cmp.Change]
    path: Path
    rows_written: int
    measured: Measured
    models: list[str]
    notes: list[str]


def validate_tolerance(tolerance_pct: float, flag: str = "--tolerance") -> float:
    """The tolerance as a fraction; UsageError unless 0 < PCT < 1000 and finite."""
    if not (isinstance(tolerance_pct, int | float) and math.isfinite(tolerance_pct)
            and 0 < tolerance_pct < 1000):
        raise UsageError(f"{flag} must be a percentage above 0 and below 1000, got {tolerance_pct!r}")
    return tolerance_pct / 100.0


def this_machine(env: Mapping[str, Any], threads: int | None = None) -> Machine:
    return Machine(cpu=env.get("cpu_model"), family=env.get("cpu_family"), threads=threads)


def latency_incomparable(baseline: Machine, here: Machine) -> str | None:
    """Why latency ratios from `baseline`'s CPU cannot be judged on this one (None: they can).

    The CPU is its name and its vendor family/model: cloud VMs name two AMD generations alike
    ('AMD EPYC', family 25 and 26), and their latency ratios differ by more than the tolerance.
    A baseline without a recorded family (an older file) is judged by the name alone."""
    if baseline.cpu is None:
        return "not comparable (the baseline does not record its CPU; rewrite it with --update)"
    if baseline.cpu != here.cpu or (baseline.family is not None and baseline.family != here.family):
        return f"not comparable (baseline from {_cpu(baseline)}; this CPU is {_cpu(here)})"
    return None


def _cpu(machine: Machine) -> str:
    return f"{machine.cpu} [{machine.family}]" if machine.family else str(machine.cpu)


def instructions_incomparable(baseline: Machine, here: Machine) -> str | None:
    """Why instruction counts from `baseline`'s CPU family cannot be judged here (None: they can)."""
    if baseline.family is None:
        return "not comparable (the baseline does not record its CPU family; rewrite it with --update)"
    if baseline.family != here.family:
        return (f"not comparable (counted on {baseline.describe()}; this CPU is {here.cpu} "
                f"[{here.family}]; compare against a revision instead: bench check --against HEAD~1, "
                "or add this family's counts: bench check --update --skip-latency)")
    return None


def _known_models(names: tuple[str, ...]) -> list[str]:
    """Presets (registry order) and user models (factory references, as given)."""
    unknown = [n for n in names if not models.is_model_name(n)]
    if unknown:
        raise UsageError(f"unknown model(s) {', '.join(unknown)}; available: "
                         f"{', '.join(models.available())}, or your own as 'package.module:callable'")
    return models.in_model_order(list(names))


def _measure(spec: MatrixSpec, cells: list[Cell], latency_models: list[str], reference: str,
             plan: InterleavePlan, context: Context, *, instruction_models: list[str] = (),
             instruction_context: Context = INSTRUCTION_CONTEXT,
             overrides: Mapping[str, Mapping[str, Any]] | None = None,
             env: dict[str, Any] | None = None) -> Measured:
    env = env or run_context()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    started = time.perf_counter()
    rows = measure_counts(spec, cells, env, stamp)
    seconds = {"counts": time.perf_counter() - started}
    if instruction_models:
        started = time.perf_counter()
        counted = instruction_spec(list(instruction_models), instruction_context, overrides)
        rows += measure_instruction_rows(counted, env, stamp)
        seconds["instructions"] = time.perf_counter() - started
    latency = None
    if latency_models:
        started = time.perf_counter()
        latency = _time(spec, latency_models, reference, plan, context)
        rows += _latency_rows(spec, latency, reference, env, stamp)
        seconds["latency"] = time.perf_counter() - started
    totals = [r for r in rows if not str(r.get("stat") or "").startswith(FUNCTION_STAT)]
    values = {(r["model"], r["metric"]): float(r["value"]) for r in totals if r["status"] == "ok"}
    errors = {(r["model"], r["metric"]): str(r.get("error")) for r in totals if r["status"] != "ok"}
    return Measured(rows, values, errors, seconds, latency, env)


def _time(spec: MatrixSpec, names: list[str], reference: str, plan: InterleavePlan,
          context: Context) -> GateLatency:
    """`names` and the reference timed as the matrix's latency cell times them (`spec` runs every
    model in eager mode only), at the baseline's context."""
    pairs = time_pairs(spec, names if reference in names else [reference, *names], reference,
                       plan=lambda _: plan, device=context.device, dtype="float32",
                       resolution=context.resolution, batch=context.batch_size)
    model = {pair_key(name, "eager"): name for name in [reference, *names]}
    timing = pairs.timing
    reference_key = pair_key(reference, "eager")
    return GateLatency(
        reference=reference if reference_key in timing.stats else None,
        ratios={model[key]: ratio for key, ratio in timing.ratios.items()},
        median_ms={model[key]: ms for key, ms in timing.median_ms.items()},
        timed=[model[key] for key in timing.stats],
        failed={model[key]: why for key, why in pairs.failed.items()},
        rounds=timing.rounds,
        plan=timing.plan,
        load=getattr(timing, "load", None),
    )


def _latency_rows(spec: MatrixSpec, latency: GateLatency, reference_name: str,
                  env: Mapping[str, Any], stamp: str) -> list[Row]:
    plan = latency.plan
    rounds = latency.rounds
    rows = []
    for name, ratio in latency.ratios.items():
        cell = Cell("latency_ms", ("latency_ms",), name, device=spec.devices[0],
                    resolution=spec.resolutions[0], batch_size=spec.batch_sizes[0])
        context = context_columns(spec, name, env, batch_size=spec.batch_sizes[0], cell=cell.key)
        common = {**context, "stat": "median", "status": "ok", "counter": "wall clock",
                  "timestamp": stamp, **load_columns(latency.load)}
        rows.append({
            **common, "metric": cmp.LATENCY_RATIO, "value": round(ratio, 5),
            "unit": f"{RATIO_UNIT_PREFIX}{latency.reference}", "n": rounds,
            "method": (f"median over {rounds} interleaved rounds of (median of {plan.calls} "
                       f"calls / {latency.reference}'s median in the same round); warm-up "
                       f"{plan.warmup} per round; inference_mode"),
        })
        rows.append({
            **common, "metric": cmp.LATENCY_MS, "value": round(latency.median_ms[name], 4),
            "unit": "ms", "n": rounds * plan.calls,
            "method": (f"median over {rounds} rounds of the median of {plan.calls} calls; "
                       "information only, not gated"),
        })
    for name in [*latency.failed, *(latency.timed if latency.reference is None else [])]:
        reason = (latency.failed.get(name)
                  or f"reference {reference_name} failed: {latency.failed[reference_name]}")
        context = context_columns(spec, name, env, batch_size=spec.batch_sizes[0], cell="latency")
        rows += [{**context, "metric": metric, "value": None, "unit": unit, "stat": "median",
                  "status": "failed", "error": reason, "timestamp": stamp}
                 for metric, unit in ((cmp.LATENCY_RATIO, RATIO_UNIT_PREFIX + reference_name),
                                      (cmp.LATENCY_MS, "ms"))]
    return rows


def _reference(options: GateOptions, baseline: Baseline | None, update: bool) -> str:
    stored = baseline.reference if baseline else None
    reference = options.reference or stored or DEFAULT_REFERENCE
    _known_models((reference,))
    if not update and stored and reference != stored:
        raise UsageError(f"baseline latency ratios are relative to '{stored}', not '{reference}'; "
                         f"pass --reference {stored}, or --update to re-base them")
    return reference


def run_check(options: GateOptions) -> CheckResult:
    """Measure what the baseline gates and compare (see `bench.gate.compare`)."""
    tolerance = validate_tolerance(options.tolerance_pct)
    instructions_tolerance = validate_tolerance(options.instructions_tolerance_pct,
                                                "--instructions-tolerance")
    env = run_context()
    here = this_machine(env)
    baseline = load_baseline(options.baseline, family=here.family)
    names = baseline.models
    if options.models:
        chosen = _known_models(options.models)
        absent = [n for n in chosen if n not in names]
        if absent:
            raise UsageError(f"model(s) {', '.join(absent)} have no rows in {baseline.path}; add them "
                             f"with 'python -m bench check --update --models ...'")
        names = chosen
    reference = _reference(options, baseline, update=False)
    gated = {k: v for k, v in baseline.values.items() if k[0] in names and k[1] in cmp.GATED_METRICS}
    notes: list[str] = []
    withheld: dict[cmp.Key, tuple[str, str]] = {}
    if options.skip_latency:
        gated = {k: v for k, v in gated.items() if k[1] != cmp.LATENCY_RATIO}
        notes.append("latency not checked (--skip-latency)")
    elif baseline.reference is None:
        notes.append(f"{baseline.path} has no latency rows: latency not checked")
    else:
        why = latency_incomparable(baseline.latency_machine, here)
        if why:
            withheld.update({k: (cmp.NOT_COMPARABLE, why) for k in gated if k[1] == cmp.LATENCY_RATIO})
            notes.append(f"latency {why}")
    counted = [k for k in gated if k[1] == cmp.INSTRUCTIONS]
    if options.skip_instructions:
        gated = {k: v for k, v in gated.items() if k[1] != cmp.INSTRUCTIONS}
        notes.append("instruction counts not checked (--skip-instructions)")
    elif not counted:
        notes.append(f"{baseline.path} has no instruction counts: instructions not checked "
                     "(add them with --update)")
    else:
        why = (instructions_incomparable(baseline.instruction_machine, here)
               or callgrind.unavailable())
        if why:
            verdict = cmp.NOT_COMPARABLE if why.startswith("not comparable") else cmp.NOT_MEASURED
            withheld.update({k: (verdict, why) for k in counted})
            notes.append(f"instruction counts {why}")
    wanted: dict[str, set[str]] = {}
    for model, metric in gated:
        wanted.setdefault(model, set()).add(metric)
    latency_models = [n for n in names if (n, cmp.LATENCY_RATIO) in gated
                      and (n, cmp.LATENCY_RATIO) not in withheld]
    instruction_models = [n for n in names if (n, cmp.INSTRUCTIONS) in gated
                          and (n, cmp.INSTRUCTIONS) not in withheld]
    spec = gate_spec(models.in_model_order([*names, reference]), baseline.context,
                     options.overrides)
    measured = _measure(spec, count_cells(spec, wanted), latency_models, reference, options.plan,
                        baseline.context, instruction_models=instruction_models,
                        instruction_context=baseline.instruction_context,
                        overrides=options.overrides, env=env)
    findings = cmp.compare(gated, measured.values, tolerance=tolerance, errors=measured.errors,
                           tolerances={cmp.INSTRUCTIONS: instructions_tolerance}, withheld=withheld)
    findings = _confirm_latency(findings, spec, reference, options.plan, baseline.context, tolerance,
                                measured)
    hint = cmp.reference_hint(findings, reference)
    if hint:
        notes.append(hint)
    busy = _busy_note(measured.latency)
    if busy:
        notes.append(busy)
    now_functions = measured.functions
    moved = {f.model: cmp.function_changes(baseline.functions.get(f.model, {}),
                                           now_functions.get(f.model, {}))
             for f in findings if f.metric == cmp.INSTRUCTIONS and f.failed and f.now is not None}
    return CheckResult(findings, measured, names, reference if latency_models else None, notes,
                       moved)


def _busy_note(latency: GateLatency | None) -> str | None:
    """A warning when other work held more than the stated share of the cores while timing."""
    load = latency.load if latency else None
    if load is None or not getattr(load, "busy", False):
        return None
    return (f"BUSY: latency was timed while {load.describe()}; its ratios are not to be trusted "
            "(with more torch threads than free cores a call can become tens of times slower)")


def _confirm_latency(findings: list[cmp.Finding], spec: MatrixSpec, reference: str, plan: InterleavePlan,
                     context: Context, tolerance: float, measured: Measured) -> list[cmp.Finding]:
    """Re-time the models whose ratio is out of tolerance (with the reference) once more, and keep
    a failure only if the second run confirms it (`compare.confirm`). A failure timed while other
    work held more than `bench.measure.load.BUSY_SHARE` of the cores is 'inconclusive (busy)': said
    loudly, not failed, since on a loaded machine a one-thread call can be slowed by any factor."""
    suspects = [f.model for f in findings if f.metric == cmp.LATENCY_RATIO and f.failed
                and f.verdict != cmp.FAILED]
    if not suspects:
        return findings
    started = time.perf_counter()
    again = _time(spec, suspects, reference, plan, context)
    measured.seconds["latency re-run"] = time.perf_counter() - started
    busy = [t.load for t in (measured.latency, again) if t and t.load is not None and t.load.busy]
    confirmed = []
    for finding in findings:
        if finding.metric == cmp.LATENCY_RATIO and finding.model in suspects:
            if finding.model in again.ratios:
                second = cmp.compare_ratio(finding.model, finding.baseline,
                                           again.ratios[finding.model], tolerance)
                finding = cmp.confirm(finding, second)
            if busy and finding.failed:
                finding = cmp.Finding(finding.model, finding.metric, finding.baseline, finding.now,
                                      cmp.INCONCLUSIVE, "; ".join(
                                          n for n in (finding.note, f"timed while {busy[0].describe()}")
                                          if n))
        confirmed.append(finding)
    return confirmed


def run_update(options: GateOptions) -> UpdateResult:
    """Measure every gated metric of the chosen models and rewrite the baseline atomically."""
    path = Path(options.baseline)
    env = run_context()
    here = this_machine(env)
    old = load_baseline(path, family=here.family) if path.exists() else None
    if options.models:
        names = _known_models(options.models)
    else:
        names = old.models if old else models.available()
    reference = _reference(options, old, update=True)
    context = old.context if old else Context(threads=min(DEFAULT_THREADS, available_threads()))
    spec = gate_spec(models.in_model_order([*names, reference]), context, options.overrides)
    cells = count_cells(spec, {name: cmp.COUNT_METRICS for name in names})
    latency_models = [] if options.skip_latency else names
    instruction_models = [] if options.skip_instructions else names
    reason = callgrind.unavailable() if instruction_models else None
    if reason:
        raise UsageError(f"cannot count instructions: {reason}; or pass --skip-instructions to write "
                         "a baseline without them")
    instruction_context = old.instruction_context if old else INSTRUCTION_CONTEXT
    measured = _measure(spec, cells, latency_models, reference, options.plan, context,
                        instruction_models=instruction_models,
                        instruction_context=instruction_context, overrides=options.overrides,
                        env=env)
    failed = [r for r in measured.rows if r["status"] != "ok"]
    if failed:
        first = failed[0]
        raise UsageError(f"cannot write a baseline: {first['model']} {first['metric']} failed "
                         f"({first.get('error')})")
    rows = list(measured.rows)
    notes = []
    if options.skip_latency and old and old.reference == reference:
        kept = [r for r in old.rows if r["metric"] in (cmp.LATENCY_RATIO, cmp.LATENCY_MS)
                and (r["model"] in names or r["model"] == reference)]
        rows = rows + kept
        if kept:
            notes.append(f"latency rows kept from the earlier baseline (not re-measured): {len(kept)}")
    if options.skip_instructions and old:
        kept = [r for r in old.rows if r["metric"] == cmp.INSTRUCTIONS and r["model"] in names]
        rows = rows + kept
        if kept:
            notes.append(f"instruction rows kept from the earlier baseline (not re-measured): "
                         f"{len(kept)}")
    elif old:  # this CPU family's counts were measured now; other families' sets stay
        kept = [r for r in old.rows if r["metric"] == cmp.INSTRUCTIONS and r["model"] in names
                and r.get("cpu_family") not in (None, here.family)]
        rows = rows + kept
        if kept:
            families = ", ".join(sorted({str(r["cpu_family"]) for r in kept}))
            notes.append(f"instruction counts of other CPU families kept (not re-measured here): "
                         f"{families}; after an intended change, update them on such a machine "
                         "too, or its check fails")
    if options.overrides:
        flags = " ".join(f"--override {m}:{k}={v}" for m, kv in options.overrides.items()
                         for k, v in kv.items())
        notes.append(f"written with overrides; only a check with the same flags ({flags}) matches it")
    order = models.in_model_order([r["model"] for r in rows])
    rows.sort(key=lambda r: order.index(r["model"]))  # stable: each model's metrics keep their order
    # the changes, as the next check on this machine will see them: of several CPU families'
    # instruction counts, the set gated here
    shown = gated_family(dict.fromkeys(str(r["cpu_family"]) for r in rows
                                       if r["metric"] == cmp.INSTRUCTIONS and r.get("cpu_family")),
                         here.family)
    new_values = {(r["model"], r["metric"]): float(r["value"]) for r in rows
                  if not str(r.get("stat") or "").startswith(FUNCTION_STAT)
                  and (r["metric"] != cmp.INSTRUCTIONS or r.get("cpu_family") in (None, shown))}
    changes = cmp.baseline_changes(old.values if old else {}, new_values)
    written = write_baseline(path, rows)
    return UpdateResult(changes, path, written, measured, names, notes)
