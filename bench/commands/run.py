"""`python -m bench run`: run a benchmark profile and draw its reports.

A profile is a TOML file in bench/profiles/ (or `--config FILE.toml`, the same format): efficiency
profiles (a `[matrix]` table; `quick` is the default) measure the matrix of models x resolutions x
batch sizes x devices x metrics, quality profiles (a `[quality]` table, e.g. `smoke`, `digits`)
train, sample and score. `--help` lists every built-in profile. Results go to `--out DIR` (default
`runs/<profile>`), reports to `--reports DIR` (default `DIR/reports`). Re-running the same
command resumes: finished cells are kept.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.errors import UsageError
from bench.profiles import DEFAULT, listing, load_profile, read_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", default=None,
        help=f"a built-in profile (bench/profiles/NAME.toml): {listing()} (default {DEFAULT})",
    )
    parser.add_argument("--config", type=Path, default=None,
                        help="a TOML profile file of your own (a [matrix] or [quality] table) "
                             "instead of a built-in profile")
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
    parser.add_argument("--train-only", action="store_true",
                        help="quality profiles: train every model (resuming) and stop before "
                             "sampling; a later run scores the checkpoints")
    parser.add_argument("--train-seeds", default=None, metavar="N,N",
                        help="quality profiles: only these of the profile's training seeds (a run "
                             "in parts; a later run with the others, or without this flag, "
                             "resumes the rest)")


def execute(args: argparse.Namespace) -> int:
    if args.profile and args.config:
        raise UsageError("give either --profile or --config, not both")
    found = read_config(args.config) if args.config else load_profile(args.profile or DEFAULT)
    name = found.name
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

    if found.kind == "quality":
        from bench.quality.profiles import (
            check_device,
            get_profile,
            only_train_seeds,
            parse_quality,
            run_quality_profile,
            with_models,
        )

        quality = get_profile(name) if args.config is None else parse_quality(found.raw, name,
                                                                               str(found.path))
        check_device(quality)  # a GPU-only profile on a CPU machine: before any output exists
        if args.model:
            with_models(quality, args.model, model_args)  # checked before writing
        if args.train_seeds is not None:
            quality = only_train_seeds(quality, args.train_seeds)
        outputs_writable()
        run_quality_profile(quality, out, models=args.model or None, model_args=model_args,
                            train_only=args.train_only)
        if args.train_only:
            print(f"trained; checkpoints in {out / 'checkpoints'}; run again without --train-only "
                  "to sample and score them")
            return 0
    else:
        if args.train_only or args.train_seeds is not None:
            flag = "--train-only" if args.train_only else "--train-seeds"
            raise UsageError(f"{flag} applies to quality profiles; {name} is an efficiency "
                             "profile")
        from bench.matrix import load_spec
        from bench.matrix.runner import run_matrix
        from bench.matrix.spec import validate_models

        spec = load_spec(None if args.config else name, args.config,
                         models_override=args.model or None, model_args=model_args)
        validate_models(spec)  # before any output directory exists (run_matrix checks again)
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
    from bench.report.headline import headline

    print()
    print(headline(out))
    print()
    print(f"results: {out / 'measurements.csv'}; {len(written)} report files in {reports} "
          f"({time.perf_counter() - started:.1f} s in all)")
    return 0
