"""Efficiency reports drawn only from a run's CSVs: Table 2, Figure 4, Table 1's time column, the
latency table and latency / achieved-compute plots. Nothing here measures; a partial or failed run
gives reports that say "not measured" or "failed" where data is missing.

Each report is a pair: a pure data-shaping function (`*_data`, a frame in, a frame out, tested on
its own) and a small writer that renders it; the writers are listed once, in
`bench.report.registry.REPORTS`.
"""

from __future__ import annotations

from pathlib import Path

from bench.report.data import Results, load_results
from bench.report.figure4 import figure4_data
from bench.report.latency_table import latency_table_data
from bench.report.memory import memory_data
from bench.report.modes import modes_data
from bench.report.plots import achieved_data, latency_data
from bench.report.registry import REPORTS
from bench.report.table1 import table1_time_data
from bench.report.table2 import table2_data

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
    for report in REPORTS:
        paths += report.writer()(results, out_dir)
    return paths
