"""Pure comparison of the gate's measurements with a baseline: numbers in, verdicts out.

Counts (parameters, MACs, FLOPs, NFE, checkpoint size) are deterministic, so they must match the
baseline exactly; moving in either direction fails, because the baseline is only ever changed on
purpose (`--update`). Instruction counts (callgrind Ir) are deterministic up to a spread of about
0.1 %, so they are compared within a tolerance of their own (1 % by default), either way, and only
against counts from the same CPU family. Latency is compared as a ratio to a reference model
measured in the same run, within a relative tolerance, in both directions: a ratio that falls can
mean that the reference got slower, which no other comparison would show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bench.matrix.metrics import GATE_EXACT, METRIC_REGISTRY, ratio_gated, relative_gated

COUNT_METRICS: tuple[str, ...] = tuple(m.name for m in METRIC_REGISTRY if m.gate == GATE_EXACT)
"""Deterministic metrics the gate checks, in report order (the registry's exact-gated metrics)."""

RELATIVE_SLACK: dict[str, float] = {m.name: m.gate_slack for m in METRIC_REGISTRY if m.gate_slack}
"""Counts that may move by this fraction: a checkpoint's size includes torch.save's zip container
and pickled metadata, which can differ by a few bytes with nothing about the model changed."""

RATIO_METRICS: dict[str, str] = {row: metric.name for row, metric in ratio_gated().items()}
"""Rows the gate compares as same-run ratios (the registry's ratio-gated metrics' gate rows) ->
the metric they are derived from."""

LATENCY_RATIO = next(row for row, metric in RATIO_METRICS.items() if metric == "latency_ms")
"""Per-call latency of a model divided by the reference model's, measured in one interleaved run."""

LATENCY_MS = RATIO_METRICS[LATENCY_RATIO]
"""Absolute per-call median, stored for information only: it is never gated (machines differ)."""

RELATIVE_METRICS: dict[str, float] = {name: m.gate_tolerance_pct for name, m in relative_gated().items()}
"""Metrics compared within a tolerance of their own -> its default in percent (instructions: 1)."""

INSTRUCTIONS = "instructions"

GATED_METRICS: tuple[str, ...] = COUNT_METRICS + tuple(RELATIVE_METRICS) + tuple(RATIO_METRICS)
KNOWN_METRICS: tuple[str, ...] = GATED_METRICS + tuple(dict.fromkeys(RATIO_METRICS.values()))

Key = tuple[str, str]
"""(model, metric)."""

OK = "ok"
REGRESSED = "regressed"
CHANGED = "changed"
MISSING = "missing"
FAILED = "failed"
NOT_COMPARABLE = "not comparable"
"""Measured on another CPU than the baseline (latency), or another CPU family (instructions): no
verdict, said with the baseline's CPU; not a failure."""
NOT_MEASURED = "not measured"
"""Could not be measured here for a reason outside the code (valgrind missing); said, not a failure."""
INCONCLUSIVE = "inconclusive (busy)"
"""A latency ratio out of tolerance in both runs, timed while other work held more than
`bench.measure.load.BUSY_SHARE` of the cores: no verdict; re-run on a quieter machine."""
PASSING = (OK, NOT_COMPARABLE, NOT_MEASURED, INCONCLUSIVE)


@dataclass(frozen=True)
class Finding:
    """The verdict on one (model, metric) of the baseline.

    verdict: 'ok'; 'regressed' (more parameters/compute/NFE/MiB/instructions, or slower
    relative to the reference); 'changed' (a move in the good direction, still a failure for
    counts, and for instructions and latency beyond the tolerance); 'missing' (nothing measured
    now); 'failed' (the measurement raised; `note` says why); 'not comparable' and 'not measured'
    (no verdict; `note` says why; not failures).
    """

    model: str
    metric: str
    baseline: float
    now: float | None
    verdict: str
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict not in PASSING

    @property
    def change_pct(self) -> float | None:
        """Relative change in percent; None when nothing was measured or the baseline is 0."""
        if self.now is None or self.baseline == 0:
            return None
        return (self.now / self.baseline - 1.0) * 100.0


def compare_count(model: str, metric: str, baseline: float, now: float | None) -> Finding:
    """Exact comparison (within RELATIVE_SLACK for the metrics listed there); more is worse."""
    if now is None or math.isnan(now):
        return Finding(model, metric, baseline, None, MISSING)
    slack = RELATIVE_SLACK.get(metric, 0.0) * abs(baseline)
    if abs(now - baseline) <= slack:
        return Finding(model, metric, baseline, now, OK)
    return Finding(model, metric, baseline, now, REGRESSED if now > baseline else CHANGED)


def compare_ratio(model: str, baseline: float, now: float | None, tolerance: float,
                  metric: str = LATENCY_RATIO) -> Finding:
    """A value within `tolerance` (a fraction, 0.1 = 10 %) of the baseline's, either way: a
    same-run ratio, or a relative-gated metric (instructions)."""
    if now is None or math.isnan(now):
        return Finding(model, metric, baseline, None, MISSING)
    change = now / baseline - 1.0
    if abs(change) <= tolerance:
        return Finding(model, metric, baseline, now, OK)
    return Finding(model, metric, baseline, now, REGRESSED if change > 0 else CHANGED)


def compare(
    baseline: Mapping[Key, float],
    now: Mapping[Key, float | None],
    *,
    tolerance: float,
    errors: Mapping[Key, str] | None = None,
    tolerances: Mapping[str, float] | None = None,
    withheld: Mapping[Key, tuple[str, str]] | None = None,
) -> list[Finding]:
    """One finding per gated (model, metric) of `baseline`, in the baseline's order.

    `now` holds this run's values (a key may be absent: not measured); `errors` the reason of
    measurements that raised; `tolerance` is the latency ratios' (a fraction), `tolerances` those
    of the relative-gated metrics (metric -> fraction; default: the registry's); `withheld` the
    keys that get no verdict (key -> (NOT_COMPARABLE or NOT_MEASURED, why)). Keys of `now` that
    the baseline lacks are ignored: the baseline decides what is gated.
    """
    errors = errors or {}
    withheld = withheld or {}
    relative = {name: pct / 100.0 for name, pct in RELATIVE_METRICS.items()}
    relative.update(tolerances or {})
    findings = []
    for key, base in baseline.items():
        model, metric = key
        if key in withheld:
            verdict, why = withheld[key]
            findings.append(Finding(model, metric, base, now.get(key), verdict, why))
        elif key in errors:
            findings.append(Finding(model, metric, base, None, FAILED, errors[key]))
        elif metric in COUNT_METRICS:
            findings.append(compare_count(model, metric, base, now.get(key)))
        elif metric in relative:
            findings.append(compare_ratio(model, base, now.get(key), relative[metric], metric))
        elif metric in RATIO_METRICS:
            findings.append(compare_ratio(model, base, now.get(key), tolerance, metric))
    return findings


@dataclass(frozen=True)
class FunctionChange:
    """One function's instruction count in the baseline and now (None: not among the functions
    kept, `bench.measure.instructions.TOP_FUNCTIONS`)."""

    function: str
    before: int | None
    after: int | None

    @property
    def delta(self) -> int:
        return (self.after or 0) - (self.before or 0)


def function_changes(before: Mapping[str, int], after: Mapping[str, int], top: int = 5
                     ) -> list[FunctionChange]:
    """The `top` functions whose instruction counts moved most (absolute change), largest first.

    Each side keeps only its largest functions, so a function missing from one side may simply
    have been just below that side's cut: it is shown only when its count on the other side
    exceeds the smallest count the first side kept (then it really appeared or vanished)."""
    floor_before = min(before.values(), default=0)
    floor_after = min(after.values(), default=0)
    names = list(dict.fromkeys([*before, *after]))
    changes = [FunctionChange(name, before.get(name), after.get(name)) for name in names]
    changes = [c for c in changes if c.delta != 0
               and not (c.before is None and (c.after or 0) <= floor_before)
               and not (c.after is None and (c.before or 0) <= floor_after)]
    return sorted(changes, key=lambda c: -abs(c.delta))[:top]


def confirm(first: Finding, second: Finding) -> Finding:
    """Combine two independent latency findings of one model: of two runs, keep the one closer to
    the baseline, so that a ratio fails only when it is out of tolerance twice. Noise rarely is;
    a real regression always is."""
    if not first.failed:
        return first
    first_change = abs(first.change_pct) if first.change_pct is not None else math.inf
    second_change = abs(second.change_pct) if second.change_pct is not None else math.inf
    kept = second if second_change <= first_change else first
    earlier = f"{first.change_pct:+.1f} %" if first.change_pct is not None else first.verdict
    note = f"re-measured: first run {earlier}"
    return Finding(kept.model, kept.metric, kept.baseline, kept.now, kept.verdict,
                   "; ".join(n for n in (kept.note, note) if n))


def reference_hint(findings: list[Finding], reference: str) -> str | None:
    """A note when every other model's latency ratio fell beyond tolerance: then the likelier
    story is that the reference model became slower."""
    ratios = [f for f in findings if f.metric == LATENCY_RATIO and f.model != reference]
    if ratios and all(f.verdict == CHANGED for f in ratios):
        return (f"every latency ratio fell: the reference model '{reference}' itself probably "
                f"became slower")
    return None


@dataclass(frozen=True)
class Change:
    """One difference between an old and a new baseline (for `--update`)."""

    model: str
    metric: str
    old: float | None
    new: float | None

    @property
    def kind(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed"

    @property
    def change_pct(self) -> float | None:
        if self.old is None or self.new is None or self.old == 0:
            return None
        return (self.new / self.old - 1.0) * 100.0


def baseline_changes(old: Mapping[Key, float], new: Mapping[Key, float]) -> list[Change]:
    """Gated values that an update adds, removes or changes (exactly: any difference counts)."""
    keys = list(new) + [k for k in old if k not in new]
    changes = []
    for key in keys:
        if key[1] not in GATED_METRICS:
            continue
        before, after = old.get(key), new.get(key)
        if before is None or after is None or before != after:
            changes.append(Change(key[0], key[1], before, after))
    return changes
