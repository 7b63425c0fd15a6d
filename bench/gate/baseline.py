"""The committed baseline: a tidy measurements CSV (same columns as measurements.csv) holding one
row per gated (model, metric), the counts and latency measured in ONE context (device, resolution,
batch, threads), the instruction counts in the gate's small context (`INSTRUCTION_CONTEXT`, each
model at its family's small configuration) with their largest functions (stat "function <name>"),
and the CPU (model and family) that measured the latency and the instructions.

Reading validates everything up front, so a hand-edited or truncated file is one `UsageError`
(exit 2) that names the problem, never a traceback or a silently passing gate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import models
from bench.errors import UsageError
from bench.files import atomic_write_text
from bench.gate.compare import INSTRUCTIONS, KNOWN_METRICS, LATENCY_MS, LATENCY_RATIO, Key
from bench.matrix.instruction_cells import FUNCTION_STAT
from bench.matrix.metrics import INTEGER_METRICS
from bench.results.damage import check_plausible, csv_line, file_damage
from bench.results.schema import COLUMNS, Row

DEFAULT_BASELINE = Path("results") / "baseline.csv"
REQUIRED_COLUMNS = ("model", "metric", "value", "unit", "stat", "device", "batch_size", "resolution",
                    "threads")
"""Columns without which the gate could not know what to measure or in which context."""

RATIO_UNIT_PREFIX = "x "
"""latency_ratio rows have the unit 'x <reference model>', e.g. 'x unet'."""


@dataclass(frozen=True)
class Context:
    """Where the baseline was measured; the check measures in the same context."""

    device: str = "cpu"
    resolution: int = 64
    channels: int = 3
    batch_size: int = 1
    threads: int = 2


INSTRUCTION_CONTEXT = Context(device="cpu", resolution=32, channels=3, batch_size=1, threads=1)
"""Where the gate counts instructions: one thread, 32x32, batch 1, each preset at its family's
small configuration (`models.registry.Family.small`), so that every preset runs under valgrind in
seconds."""


@dataclass(frozen=True)
class Machine:
    """The CPU a part of the baseline was measured on (None: not recorded, an older baseline)."""

    cpu: str | None = None
    family: str | None = None
    threads: int | None = None

    def describe(self) -> str:
        where = self.cpu or "an unrecorded CPU"
        if self.family:
            where += f" [{self.family}]"
        return where + (f", {self.threads} thread(s)" if self.threads else "")


@dataclass(frozen=True)
class Baseline:
    path: Path
    values: dict[Key, float]
    """(model, metric) -> value, in file order."""
    context: Context
    reference: str | None
    """The model the latency ratios are relative to (None: no latency rows)."""
    rows: list[dict[str, Any]]
    """The file's rows as read (kept by `--update --skip-latency` for the latency rows)."""
    functions: dict[str, dict[str, int]] = field(default_factory=dict)
    """Model -> its largest functions' instruction counts (function -> Ir)."""
    latency_machine: Machine = Machine()
    instruction_machine: Machine = Machine()
    instruction_context: Context = INSTRUCTION_CONTEXT

    @property
    def models(self) -> list[str]:
        """Models of the baseline: presets in registry order, then user models (factory
        references) in file order."""
        return models.in_model_order([model for model, _ in self.values])


def _fail(path: Path, problem: str) -> UsageError:
    return UsageError(f"baseline {path} {problem}; fix it, or regenerate it with "
                      f"'python -m bench check --update --baseline {path}'")


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise UsageError(f"baseline {path} does not exist; create it with "
                         f"'python -m bench check --update --baseline {path}'")
    if path.is_dir():
        raise UsageError(f"baseline {path} is a directory; pass the CSV file")
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""], low_memory=False)
    except pd.errors.EmptyDataError:
        raise _fail(path, "is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise _fail(path, f"is not a readable CSV ({reason})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise _fail(path, f"lacks the columns {', '.join(missing)}")
    if frame.empty:
        raise _fail(path, "has no rows")
    return frame


def _single(frame: pd.DataFrame, column: str, path: Path, kind: type, default: Any = None) -> Any:
    """The one value `column` takes over the rows where it is set."""
    if column not in frame.columns:
        return default
    values = frame[column].dropna().unique()
    if len(values) == 0:
        return default
    if len(values) > 1:
        raise _fail(path, f"mixes several {column} values ({', '.join(map(str, values))}); "
                          "a baseline holds one context")
    try:
        value = kind(values[0]) if kind is str else kind(float(values[0]))
    except (TypeError, ValueError):
        raise _fail(path, f"has a non-numeric {column} ({values[0]!r})") from None
    if kind is int and value < 1:
        raise _fail(path, f"has {column} = {value}; it must be a positive integer")
    return value


def _machine(frame: pd.DataFrame, path: Path) -> Machine:
    return Machine(cpu=_single(frame, "cpu", path, str), family=_single(frame, "cpu_family", path, str),
                   threads=_single(frame, "threads", path, int))


def _context(frame: pd.DataFrame, path: Path, default: Context = Context()) -> Context:
    return Context(
        device=_single(frame, "device", path, str, default.device),
        resolution=_single(frame, "resolution", path, int, default.resolution),
        channels=_single(frame, "channels", path, int, default.channels),
        batch_size=_single(frame, "batch_size", path, int, default.batch_size),
        threads=_single(frame, "threads", path, int, default.threads),
    )


def _reference(frame: pd.DataFrame, path: Path) -> str | None:
    units = frame.loc[frame["metric"] == LATENCY_RATIO, "unit"].dropna().astype(str).unique()
    if len(units) == 0:
        return None
    if len(units) > 1 or not units[0].startswith(RATIO_UNIT_PREFIX):
        raise _fail(path, f"has latency_ratio units {list(units)}; expected one 'x <model>'")
    reference = units[0][len(RATIO_UNIT_PREFIX):]
    if not models.is_model_name(reference):
        raise _fail(path, f"has latency ratios relative to unknown model '{reference}'")
    return reference


def load_baseline(path: Path) -> Baseline:
    """Read and validate a baseline CSV (see the module docstring); UsageError on any problem."""
    path = Path(path)
    frame = _read_frame(path)
    if "status" in frame.columns:
        failed = frame[frame["status"].fillna("ok").astype(str) != "ok"]
        if not failed.empty:
            first = failed.iloc[0]
            raise _fail(path, f"holds failed measurements (e.g. {first['model']} {first['metric']})")
    unknown_models = sorted(n for n in set(frame["model"].astype(str)) if not models.is_model_name(n))
    if unknown_models:
        raise _fail(path, f"names unknown model(s) {', '.join(unknown_models)} "
                          f"(available: {', '.join(models.available())}, or a factory "
                          "'package.module:callable')")
    unknown_metrics = sorted(set(frame["metric"].astype(str)) - set(KNOWN_METRICS))
    if unknown_metrics:
        raise _fail(path, f"names metric(s) the gate does not know: {', '.join(unknown_metrics)} "
                          f"(known: {', '.join(KNOWN_METRICS)})")
    values_column = pd.to_numeric(frame["value"], errors="coerce")
    bad = frame[values_column.isna()]
    if not bad.empty:
        first = bad.iloc[0]
        raise _fail(path, f"has a non-numeric value for {first['model']} {first['metric']} "
                          f"({first['value']!r})")
    problems = file_damage(frame, path)
    if problems:
        index, reason = next(iter(problems.items()))
        raise _fail(path, f"line {csv_line(frame, index)}: {reason} (the file is damaged or cut short)")
    check_plausible(frame, path)  # a fractional count or a negative size is damage, not a number
    values: dict[Key, float] = {}
    functions: dict[str, dict[str, int]] = {}
    stats = frame["stat"].fillna("value").astype(str)
    for model, metric, stat, value in zip(frame["model"], frame["metric"], stats, values_column,
                                          strict=True):
        if metric == INSTRUCTIONS and stat.startswith(FUNCTION_STAT):
            functions.setdefault(str(model), {})[stat[len(FUNCTION_STAT):]] = int(value)
            continue
        key = (str(model), str(metric))
        if key in values:
            raise _fail(path, f"has two rows for {key[0]} {key[1]}")
        values[key] = float(value)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    counted = frame["metric"] == INSTRUCTIONS
    latency = frame["metric"].isin([LATENCY_RATIO, LATENCY_MS])
    main = frame[~counted] if (~counted).any() else frame
    return Baseline(
        path, values, _context(main, path), _reference(frame, path), rows, functions,
        latency_machine=_machine(frame[latency], path) if latency.any() else Machine(),
        instruction_machine=_machine(frame[counted], path) if counted.any() else Machine(),
        instruction_context=(_context(frame[counted], path, INSTRUCTION_CONTEXT) if counted.any()
                             else INSTRUCTION_CONTEXT))


_INTEGER_COLUMNS = {name for name, kind in Row.__annotations__.items() if "int" in str(kind)
                    and "float" not in str(kind)}


def _as_written(column: str, value: Any, metric: Any) -> Any:
    """An integer-valued float as an int where the column (or, for `value`, the metric) counts."""
    if not isinstance(value, float) or not value.is_integer():
        return value
    if column in _INTEGER_COLUMNS or (column == "value" and metric in INTEGER_METRICS):
        return int(value)
    return value


def write_baseline(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write `rows` atomically in the tidy format (COLUMNS); returns the number of rows.

    Integer counts and integer columns are written without a trailing '.0', also for rows read
    back from an earlier baseline (pandas reads a column with gaps as floats).
    """
    rows = [{column: _as_written(column, row.get(column), row.get("metric")) for column in COLUMNS}
            for row in rows]
    frame = pd.DataFrame(rows, columns=COLUMNS, dtype=object)
    atomic_write_text(Path(path), frame.to_csv(index=False))
    return len(rows)
