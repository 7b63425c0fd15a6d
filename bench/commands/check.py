"""`python -m bench check`: the efficiency regression gate.

Measures, in the baseline's context, every deterministic count the baseline holds (params, thop
and fvcore MACs, FlopCounterMode FLOPs, NFE, checkpoint MiB) and compares them exactly; counts the
instructions of one forward of each model's small configuration under valgrind and compares them
within --instructions-tolerance (with the baseline's set from this CPU family: it holds one per
family, and `--update` replaces only this family's); then times every model in one
interleaved run and compares each model's latency ratio to the reference within --tolerance (on
the CPU that wrote them; elsewhere 'not comparable'). Exit 0: everything holds; 1: something moved
(table of what); 2: bad input. `--update` rewrites the baseline on purpose and prints what changed;
`--against REV` compares the working tree with a git revision measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.commands.values import parse_cli_value
from bench.errors import UsageError
from bench.gate.baseline import DEFAULT_BASELINE
from bench.gate.compare import INSTRUCTIONS, RELATIVE_METRICS
from bench.gate.run import CheckResult, GateOptions, UpdateResult, run_check, run_update
from bench.gate.table import changes_table, findings_table, function_changes_text, summary_table
from bench.measure.interleaved import InterleavePlan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register this command's flags."""
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, metavar="FILE",
                        help=f"baseline CSV (default {DEFAULT_BASELINE})")
    parser.add_argument("--tolerance", type=float, default=10.0, metavar="PCT",
                        help="allowed change of a latency ratio in percent (default 10); "
                             "counts must match exactly")
    parser.add_argument("--instructions-tolerance", type=float,
                        default=RELATIVE_METRICS[INSTRUCTIONS], metavar="PCT",
                        help="allowed change of an instruction count in percent (default "
                             f"{RELATIVE_METRICS[INSTRUCTIONS]:g}); valgrind's AVX2 path, compared "
                             "only with the baseline's counts from this CPU family")
    parser.add_argument("--skip-instructions", action="store_true",
                        help="do not count instructions (with --update: keep the old rows)")
    parser.add_argument("--against", default=None, metavar="REV",
                        help="compare the working tree with git revision REV (e.g. HEAD~1, main), "
                             "both measured now: counts, instruction counts, and latency as "
                             "alternating processes; needs no baseline")
    parser.add_argument("--pairs", type=int, default=5, metavar="N",
                        help="with --against: latency process pairs (A, B, A, B, ...; default 5)")
    parser.add_argument("--reference", default=None, metavar="MODEL",
                        help="model the latency ratios are relative to (default: the baseline's; "
                             "unet for a new baseline)")
    parser.add_argument("--models", default=None, metavar="A,B",
                        help="check (or, with --update, write) only these models: presets or your "
                             "own as 'package.module:callable' (built with its defaults)")
    parser.add_argument("--update", action="store_true",
                        help="re-measure and rewrite the baseline on purpose, printing what changed")
    parser.add_argument("--skip-latency", action="store_true",
                        help="check the deterministic counts only (with --update: keep the old "
                             "latency rows)")
    parser.add_argument("--override", action="append", default=[], metavar="MODEL:KEY=VALUE",
                        help="change a preset's configuration for this run only, e.g. "
                             "cunet:num_filters=17 (what-if runs and tests; repeatable)")
    parser.add_argument("--save", type=Path, default=None, metavar="FILE",
                        help="also write the rows this check measured (counts, instruction counts "
                             "with their top functions, latency; the baseline's columns, with "
                             "their context and status) to FILE, to keep a run's numbers or "
                             "compare machines; the check itself still compares with --baseline")
    parser.add_argument("--rounds", type=int, default=InterleavePlan.min_rounds, metavar="N",
                        help=f"interleaved latency rounds (default {InterleavePlan.min_rounds}); more "
                             "rounds, steadier ratios")


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """['cunet:num_filters=17', 'my_nets:make:width=4'] -> {'cunet': {'num_filters': 17},
    'my_nets:make': {'width': 4}} (the key follows the last colon before '=')."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        target, eq, value = item.partition("=")
        model, sep, key = target.rpartition(":")
        if not (sep and eq and model and key and value):
            raise UsageError(f"--override {item!r}: expected MODEL:KEY=VALUE, e.g. cunet:num_filters=17")
        overrides.setdefault(model.strip(), {})[key.strip()] = parse_cli_value(value.strip())
    return overrides


def options_from(args: argparse.Namespace) -> GateOptions:
    models = None
    if args.models is not None:
        models = tuple(n.strip() for n in args.models.split(",") if n.strip())
        if not models:
            raise UsageError("--models needs at least one model name, e.g. --models unet,cunet")
    if args.rounds < 1:
        raise UsageError(f"--rounds must be a positive integer, got {args.rounds}")
    return GateOptions(
        baseline=args.baseline, tolerance_pct=args.tolerance, reference=args.reference,
        models=models, skip_latency=args.skip_latency, overrides=parse_overrides(args.override),
        plan=InterleavePlan(min_rounds=args.rounds, max_rounds=args.rounds),
        instructions_tolerance_pct=args.instructions_tolerance,
        skip_instructions=args.skip_instructions,
    )


def _timing(seconds: dict[str, float], total: float) -> str:
    parts = ", ".join(f"{name} {value:.1f} s" for name, value in seconds.items())
    return f"{total:.1f} s: {parts}"


def _print_function_changes(findings, changes: dict) -> None:
    """After the failure table: where each failing instruction count's work moved."""
    for finding in findings:
        if finding.metric == INSTRUCTIONS and finding.model in changes:
            print()
            print(function_changes_text(finding.model, finding, changes[finding.model]))


def report_check(result: CheckResult, total: float) -> int:
    latency = result.measured.latency
    medians = latency.median_ms if latency else {}
    print(summary_table(result.findings, result.models, medians, result.reference))
    for note in result.notes:
        print(f"note: {note}")
    checked = len(result.findings)
    if result.passed:
        print(f"check passed: {checked} values of {len(result.models)} models hold "
              f"in {_timing(result.measured.seconds, total)}")
        return 0
    failed = sum(f.failed for f in result.findings)
    print(f"\ncheck FAILED: {failed} of {checked} values moved "
          f"(counts must match the baseline exactly; latency ratios within the tolerance):")
    print(findings_table(result.findings))
    _print_function_changes(result.findings, result.function_changes)
    print(f"measured in {_timing(result.measured.seconds, total)}")
    print("if the change is intended, rewrite the baseline on purpose: python -m bench check --update")
    return 1


def report_update(result: UpdateResult, total: float) -> int:
    if result.changes:
        print(changes_table(result.changes))
    else:
        print("no gated value changed")
    for note in result.notes:
        print(f"note: {note}")
    print(f"baseline {result.path}: {result.rows_written} rows for {len(result.models)} models "
          f"written in {_timing(result.measured.seconds, total)}")
    return 0


def report_against(result, total: float) -> int:
    """Print an `--against` comparison (A = working tree, B = the revision) and its exit code."""
    print(f"working tree (A) against {result.revision} = {result.commit[:12]} (B), both measured now")
    print(summary_table(result.findings, result.models, {}, result.revision))
    for name, ratios in result.pair_ratios.items():
        print(f"latency {name}: A/B per pair {', '.join(f'{r:.3f}' for r in ratios)} "
              f"(range {min(ratios):.3f}-{max(ratios):.3f})")
    for note in result.notes:
        print(f"note: {note}")
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    if result.passed:
        print(f"check passed: {len(result.findings)} values of {len(result.models)} models hold "
              f"against {result.revision} in {total:.1f} s: {timing}")
        return 0
    failed = sum(f.failed for f in result.findings)
    print(f"\ncheck FAILED against {result.revision}: {failed} of {len(result.findings)} values "
          "moved (baseline = the revision, now = the working tree):")
    print(findings_table(result.findings))
    _print_function_changes(result.findings, result.function_changes)
    print(f"measured in {total:.1f} s: {timing}")
    return 1


def execute(args: argparse.Namespace) -> int:
    options = options_from(args)
    started = time.perf_counter()
    if args.against is not None:
        if args.update:
            raise UsageError("--against compares with a revision and writes no baseline; drop "
                             "--update (or --against)")
        from bench.gate.against import run_against

        return report_against(run_against(args.against, options, args.pairs),
                              time.perf_counter() - started)
    if args.save is not None and (args.update or args.against is not None):
        raise UsageError("--save keeps a check's measurements; with --update the baseline is "
                         "the file written, and --against writes none: drop --save")
    if args.update:
        from bench.results.paths import ensure_writable_file

        ensure_writable_file(options.baseline, "--baseline")  # before measuring anything
        return report_update(run_update(options), time.perf_counter() - started)
    if args.save is not None:
        from bench.results.paths import ensure_writable_file

        ensure_writable_file(args.save, "--save")
    result = run_check(options)
    code = report_check(result, time.perf_counter() - started)
    if args.save is not None:
        from bench.gate.baseline import write_baseline

        written = write_baseline(args.save, result.measured.rows)
        print(f"measured rows: {args.save} ({written} rows)")
    return code
