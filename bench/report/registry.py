"""The report registry: every efficiency report, declared once, in the order it is drawn.

A report is a writer `(Results, out_dir) -> [paths written]` named as "module:function" and
resolved when it is drawn (so this module imports no plotting code). `bench report` and `bench
run` draw every registered report from a results directory; a report without data for it writes
files that say "not measured" (or nothing), never fails the others. A new report is one file with
its writer plus one `Report(...)` line below (or `register_report(...)` at run time).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_R = "bench.report"


@dataclass(frozen=True)
class Report:
    name: str
    write: str
    """'module:function' writing this report: (Results, out_dir) -> list of paths."""

    def writer(self) -> Callable[[Any, Path], list[Path]]:
        module, _, function = self.write.partition(":")
        return getattr(importlib.import_module(module), function)


REPORTS: list[Report] = [
    Report("table2", f"{_R}.table2:write_table2"),
    Report("figure4", f"{_R}.figure4:write_figure4"),
    Report("table1_time", f"{_R}.table1:write_table1_time"),
    Report("latency", f"{_R}.latency_table:write_latency_table"),
    Report("plots", f"{_R}.plots:write_plots"),
    Report("modes", f"{_R}.modes:write_modes_report"),
    Report("memory", f"{_R}.memory:write_memory_report"),
    Report("breakdown", f"{_R}.breakdown_report:write_breakdown_report"),
    Report("roofline", f"{_R}.roofline:write_roofline"),
    Report("side_by_side", f"{_R}.side_by_side:write_side_by_side"),
]


def register_report(report: Report) -> Report:
    """Add a report at run time (a plugin, a test); the same as one more line in REPORTS.
    ValueError if its name is taken."""
    if any(r.name == report.name for r in REPORTS):
        raise ValueError(f"report {report.name!r} already registered")
    REPORTS.append(report)
    return report
