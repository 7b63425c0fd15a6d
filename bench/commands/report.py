"""`python -m bench report`: redraw every table and plot from measurements CSVs, measuring nothing.

Efficiency reports (Table 2, Figure 4, Table 1's time column, latency and GFLOP/s plots) are
drawn from directories holding efficiency metrics; quality reports (Table 1, FID against steps,
sample grids) from directories holding quality metrics.
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


def write_reports(results_dirs: list[Path], out_dir: Path) -> list[Path]:
    """Draw the reports each results directory has data for into `out_dir`."""
    written: list[Path] = []
    for directory in results_dirs:
        if not (Path(directory) / MEASUREMENTS).is_file():
            raise UsageError(f"no {MEASUREMENTS} in {directory}: run 'python -m bench run' first "
                             "or pass --results DIR")
        metrics = set(read_measurements(directory)["metric"].dropna().astype(str))
        if metrics & {"fid", "kid_mean"}:  # a quality run (it also records params and timings)
            from bench.report.quality import write_quality_reports

            written += write_quality_reports(Path(directory), Path(out_dir))
        else:
            from bench.report import write_efficiency_reports

            written += write_efficiency_reports(Path(directory), Path(out_dir))
    return written


def execute(args: argparse.Namespace) -> int:
    out = args.out or args.results[0] / "reports"
    for directory in args.results:
        read_measurements(directory)  # a missing or damaged results file fails before writing
    ensure_writable_dir(out, "--out")
    written = write_reports(list(args.results), out)
    for path in written:
        print(path)
    return 0
