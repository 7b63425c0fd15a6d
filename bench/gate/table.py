"""Plain-text tables of the gate's findings (pipe-separated, so CI logs and Markdown read them)."""

from __future__ import annotations

from collections.abc import Sequence

from bench.gate.compare import (
    COUNT_METRICS,
    INSTRUCTIONS,
    LATENCY_RATIO,
    OK,
    Change,
    Finding,
    FunctionChange,
)


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """Aligned columns; `right[i]` right-aligns column i (numbers)."""
    widths = [max([len(str(h)), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2))
                          for w, r in zip(widths, right, strict=True)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def format_value(metric: str, value: float | None) -> str:
    """Counts with thousands separators, MiB to 2 decimals, ratios to 3, times to 1."""
    if value is None:
        return "-"
    if metric == "checkpoint_mib":
        return f"{value:,.2f}"
    if metric == LATENCY_RATIO:
        return f"{value:.3f}"
    if metric == "latency_ms":
        return f"{value:.1f}"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.4g}"


def format_change(pct: float | None) -> str:
    """Signed percent; tiny changes (a count off by one) keep a significant digit."""
    if pct is None:
        return "-"
    if pct == 0:
        return "0.0 %"
    if abs(pct) < 0.01:
        return f"{pct:+.1e} %"
    return f"{pct:+.2f} %" if abs(pct) < 0.1 else f"{pct:+.1f} %"


def findings_table(findings: Sequence[Finding]) -> str:
    """The failing findings: model, metric, baseline, now, change, verdict (and why, if known)."""
    rows = [[f.model, f.metric, format_value(f.metric, f.baseline), format_value(f.metric, f.now),
             format_change(f.change_pct), f.verdict, f.note] for f in findings if f.failed]
    headers = ["model", "metric", "baseline", "now", "change", "verdict", "note"]
    right = [False, False, True, True, True, False, False]
    if not any(row[-1] for row in rows):
        headers, right, rows = headers[:-1], right[:-1], [row[:-1] for row in rows]
    return render(headers, rows, right)


def summary_table(findings: Sequence[Finding], models: Sequence[str],
                  latency_ms: dict[str, float], reference: str | None) -> str:
    """One line per model: how many counts matched, its instruction count's change, and its
    latency ratio then and now."""
    rows = []
    for model in models:
        mine = [f for f in findings if f.model == model]
        counts = [f for f in mine if f.metric in COUNT_METRICS]
        ratio = next((f for f in mine if f.metric == LATENCY_RATIO), None)
        counted = next((f for f in mine if f.metric == INSTRUCTIONS), None)
        rows.append([
            model,
            f"{sum(not f.failed for f in counts)}/{len(counts)} equal" if counts else "-",
            _verdict_or(counted, lambda f: format_change(f.change_pct)),
            format_value("latency_ms", latency_ms.get(model)),
            format_value(LATENCY_RATIO, ratio.baseline) if ratio else "-",
            _verdict_or(ratio, lambda f: format_value(LATENCY_RATIO, f.now)),
            _verdict_or(ratio, lambda f: format_change(f.change_pct)),
            _status(mine),
        ])
    unit = f"x {reference}" if reference else "ratio"
    return render(["model", "counts", "instructions", "ms now", f"baseline {unit}", f"now {unit}",
                   "change", "status"],
                  rows, [False, False, True, True, True, True, True, False])


def _status(findings: Sequence[Finding]) -> str:
    """FAIL if anything failed; else the first verdict that is no verdict ('inconclusive (busy)',
    'not comparable', 'not measured'), so that a pass with a caveat says so; else ok."""
    if any(f.failed for f in findings):
        return "FAIL"
    caveat = next((f.verdict for f in findings if f.verdict != OK), None)
    return caveat or "ok"


def _verdict_or(finding: Finding | None, shown) -> str:
    """'-' without a finding, the verdict where there is none to show (not comparable, not
    measured), else `shown(finding)`."""
    if finding is None:
        return "-"
    if finding.now is None and finding.verdict != OK:
        return finding.verdict
    return shown(finding)


def function_changes_text(model: str, finding: Finding, changes: Sequence[FunctionChange]) -> str:
    """The lines a failing instruction count prints: the model, the change, and the functions whose
    counts moved most."""
    lines = [f"{model}: instructions {format_value(INSTRUCTIONS, finding.baseline)} -> "
             f"{format_value(INSTRUCTIONS, finding.now)} ({format_change(finding.change_pct)}); "
             f"the functions that changed most:"]
    for change in changes:
        before = "-" if change.before is None else f"{change.before:,}"
        after = "-" if change.after is None else f"{change.after:,}"
        lines.append(f"  {change.delta:+,} Ir  {change.function}  ({before} -> {after})")
    if not changes:
        lines.append("  (no function's count moved among the ones kept)")
    return "\n".join(lines)


def changes_table(changes: Sequence[Change]) -> str:
    """What `--update` changed: model, metric, old, new, change, and added/removed/changed."""
    rows = [[c.model, c.metric, format_value(c.metric, c.old), format_value(c.metric, c.new),
             format_change(c.change_pct), c.kind] for c in changes]
    return render(["model", "metric", "old", "new", "change", "kind"], rows,
                  [False, False, True, True, True, False])
