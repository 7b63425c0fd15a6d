"""`python -m bench report`: redraw every table and plot from measurements CSVs, measuring nothing.

Efficiency reports (Table 2, Figure 4, Table 1's time column, latency and GFLOP/s plots) are
drawn from directories holding efficiency metrics; quality reports (Table 1, FID against steps,
sample grids) from directories holding quality metrics. `--beside` sets other quality runs beside
one (`table1_runs.md`, bench.report.quality_runs): e.g. the full-width GPU run beside the
reduced-width CPU one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.errors import UsageError
from bench.results.paths import ensure_writable_dir
from bench.results.schema import MEASUREMENTS
from bench.results.store import read_measurements


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, nargs="+", default=[Path("runs/quick")],
                        help="one or more results directories (default runs/quick)")
    parser.add_argument("--out", type=Path, default=None,
                        help="reports directory (default <first results dir>/reports)")
    parser.add_argument("--beside", type=Path, nargs="+", default=[], metavar="DIR",
                        help="other quality results directories whose Table 1 rows are set beside "
                             "the --results run's in table1_runs.md (e.g. --results "
                             "results/mnist-paper-h200 --beside results/mnist)")


def _is_quality_run(directory: Path) -> bool:
    if not (Path(directory) / MEASUREMENTS).is_file():
        raise UsageError(f"no {MEASUREMENTS} in {directory}: run 'python -m bench run' first "
                         "or pass --results DIR")
    metrics = set(read_measurements(directory)["metric"].dropna().astype(str))
    return bool(metrics & {"fid", "kid_mean"})  # a quality run also records params and timings


def write_reports(results_dirs: list[Path], out_dir: Path,
                  beside: list[Path] | None = None) -> list[Path]:
    """Draw the reports each results directory has data for into `out_dir`, and with `beside`
    the first one's Table 1 beside theirs (table1_runs.md)."""
    quality = [Path(d) for d in results_dirs if _is_quality_run(d)]
    if len(quality) > 1:
        raise UsageError(f"--results has {len(quality)} quality runs ({', '.join(map(str, quality))}"
                         "): their reports would overwrite each other in one --out; draw each "
                         "with its own --out, or set them side by side with --results A --beside B")
    beside = [Path(d) for d in beside or []]
    if beside:
        _check_beside(results_dirs, quality, beside)
    written: list[Path] = []
    for directory in results_dirs:
        if Path(directory) in quality:
            from bench.report.quality import write_quality_reports

            written += write_quality_reports(Path(directory), Path(out_dir))
        else:
            from bench.report import write_efficiency_reports

            written += write_efficiency_reports(Path(directory), Path(out_dir))
    if beside:
        from bench.report.data import load_results
        from bench.report.quality_runs import QualityRun, write_runs_report

        runs = [QualityRun(d.resolve().name, load_results(d).ok) for d in [*quality, *beside]]
        written += write_runs_report(runs, Path(out_dir))
    return written


def _check_beside(results_dirs: list[Path], quality: list[Path], beside: list[Path]) -> None:
    if len(results_dirs) != 1 or not quality:
        raise UsageError("--beside needs --results to name exactly one quality run (a directory "
                         "with fid rows), the one the others are set beside")
    for directory in beside:
        if not _is_quality_run(directory):
            raise UsageError(f"--beside {directory}: it holds no quality measurements (fid rows); "
                             "name quality runs, e.g. results/mnist")
    names = [d.resolve().name for d in [*quality, *beside]]
    if len(set(names)) < len(names):
        raise UsageError(f"--results and --beside name directories with the same name ({names}): "
                         "table1_runs.md labels runs by directory name; name each run once")


def execute(args: argparse.Namespace) -> int:
    out = args.out or args.results[0] / "reports"
    for directory in [*args.results, *args.beside]:
        read_measurements(directory)  # a missing or damaged results file fails before writing
    ensure_writable_dir(out, "--out")
    written = write_reports(list(args.results), out, list(args.beside))
    for path in written:
        print(path)
    return 0
