"""`python -m bench run`: run a benchmark profile and draw its reports.

Efficiency profiles (`quick`, the default; `paper`; `full`; or `--config FILE.toml`) measure the
matrix of models x resolutions x batch sizes x devices x metrics. Quality profiles (`smoke`,
`digits`, `paper-quality`) train, sample and score. Results go to `--out DIR` (default
`runs/<profile>`), reports to `--reports DIR` (default `DIR/reports`). Re-running the same
command resumes: finished cells are kept.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.errors import UsageError
from bench.matrix.spec import EFFICIENCY_PROFILES


def quality_profiles() -> tuple[str, ...]:
    try:
        from bench.quality.profiles import QUALITY_PROFILES
    except ImportError:
        return ()
    return tuple(QUALITY_PROFILES)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", default=None,
        help="efficiency: quick (default), paper, full; quality: smoke, digits, paper-quality",
    )
    parser.add_argument("--config", type=Path, default=None,
                        help="a TOML matrix description instead of a profile")
    parser.add_argument("--out", type=Path, default=None,
                        help="results directory (default runs/<profile>)")
    parser.add_argument("--reports", type=Path, default=None,
                        help="reports directory (default <out>/reports)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME",
                        help="measure (or train and sweep) these models instead of the profile's: "
                             "a preset, a name the matrix defines, or your own denoiser as "
                             "'package.module:callable' / 'file.py:callable' (repeatable)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a preset override or factory keyword argument for every --model "
                             "entry, on top of what the profile sets for it (repeatable)")
    parser.add_argument("--retry-failed", action="store_true", help="measure failed cells again on resume")
    parser.add_argument("--remeasure", action="append", default=[], metavar="METRIC",
                        help="forget earlier rows of this metric (and the metrics measured with it) "
                             "and measure them again, e.g. latency_ms after a change of machine "
                             "(repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def execute(args: argparse.Namespace) -> int:
    if args.profile and args.config:
        raise UsageError("give either --profile or --config, not both")
    name = args.profile or (args.config.stem if args.config else "quick")
    out = args.out or Path("runs") / name
    reports = args.reports or out / "reports"
    started = time.perf_counter()
    from bench.commands.values import parse_model_args
    from bench.results.paths import ensure_writable_dir

    model_args = parse_model_args(args.model_arg)
    if model_args and not args.model:
        raise UsageError("--model-arg applies to --model entries; name the models with --model")

    def outputs_writable() -> None:  # after the input is validated, before anything is measured
        ensure_writable_dir(out, "--out")
        ensure_writable_dir(reports, "--reports")

    if args.config is None and name in quality_profiles():
        from bench.quality.profiles import run_quality_profile

        if args.model:
            from bench.quality.profiles import get_profile, with_models

            with_models(get_profile(name), args.model, model_args)  # checked before writing
        outputs_writable()
        run_quality_profile(name, out, models=args.model or None, model_args=model_args)
    elif args.config is None and name not in EFFICIENCY_PROFILES:
        known = ", ".join(EFFICIENCY_PROFILES + quality_profiles())
        raise UsageError(f"unknown profile '{name}'; available: {known}")
    else:
        from bench.matrix import load_spec
        from bench.matrix.runner import run_matrix

        spec = load_spec(None if args.config else name, args.config,
                         models_override=args.model or None, model_args=model_args)
        outputs_writable()
        summary = run_matrix(spec, out, retry_failed=args.retry_failed, progress=not args.no_progress,
                             remeasure=args.remeasure)
        if "cells_total" not in summary:  # a torchrun rank other than 0: rank 0 reports
            return 0
        print(f"{summary['cells_measured_now']} cells measured, {summary['cells_resumed']} resumed, "
              f"{summary['failed_rows_now']} failed rows, {summary['wall_time_s']:.1f} s")
        for note in summary["notes"]:
            print(f"note: {note}")
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 draws the reports
        return 0
    from bench.commands.report import write_reports

    written = write_reports([out], reports)
    print(f"results: {out / 'measurements.csv'}; {len(written)} report files in {reports} "
          f"({time.perf_counter() - started:.1f} s in all)")
    return 0
