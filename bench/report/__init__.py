"""Efficiency reports drawn only from a run's CSVs: Table 2, Figure 4, Table 1's time column, the
latency table and latency / achieved-compute plots. Nothing here measures; a partial or failed run
gives reports that say "not measured" or "failed" where data is missing.

Each report is a pair: a pure data-shaping function (`*_data`, a frame in, a frame out, tested on
its own) and a small writer that renders it.
"""

from __future__ import annotations

from pathlib import Path

from bench.report.breakdown_report import write_breakdown_report
from bench.report.data import Results, load_results
from bench.report.figure4 import figure4_data, write_figure4
from bench.report.latency_table import latency_table_data, write_latency_table
from bench.report.memory import memory_data, write_memory_report
from bench.report.modes import modes_data, write_modes_report
from bench.report.plots import achieved_data, latency_data, write_plots
from bench.report.roofline import write_roofline
from bench.report.side_by_side import write_side_by_side
from bench.report.table1 import table1_time_data, write_table1_time
from bench.report.table2 import table2_data, write_table2

__all__ = [
    "Results",
    "achieved_data",
    "figure4_data",
    "latency_data",
    "latency_table_data",
    "load_results",
    "memory_data",
    "modes_data",
    "table1_time_data",
    "table2_data",
    "write_efficiency_reports",
]


def write_efficiency_reports(results_dir: Path, out_dir: Path) -> list[Path]:
    """Redraw every efficiency report from `results_dir/measurements.csv` (and environment.json
    when present) into `out_dir`; returns the files written.

    Raises `UsageError` when `results_dir` holds no measurements.csv.
    """
    results = load_results(Path(results_dir))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for writer in (write_table2, write_figure4, write_table1_time, write_latency_table, write_plots,
                   write_modes_report, write_memory_report, write_breakdown_report, write_roofline,
                   write_side_by_side):
        paths += writer(results, out_dir)
    return paths
