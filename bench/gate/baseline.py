"""The committed baseline: a tidy measurements CSV (same columns as measurements.csv) holding one
row per gated (model, metric), the counts and latency measured in ONE context (device, resolution,
batch, threads), the instruction counts in the gate's small context (`INSTRUCTION_CONTEXT`, each
model at its family's small configuration) with their largest functions (stat "function <name>"),
and the CPU (model and family) that measured the latency and the instructions.

Instruction counts are comparable only within one CPU family (MKL and oneDNN may pick other
kernels on another vendor or generation), so a baseline may hold one set of them per CPU family:
`bench check --update` on a machine replaces its own family's counts and keeps the others', and
`load_baseline(path, family)` gates with the set counted on `family` (CI runners alternate between
an Intel Xeon and an AMD EPYC; each then compares with counts stored from its own family).

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
    instruction_families: tuple[str, ...] = ()
    """Every CPU family the file holds instruction counts from (the gated set is one of them)."""

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


def _instruction_families(frame: pd.DataFrame) -> list[str]:
    """The CPU families the file's instruction counts were counted on, in file order."""
    if "cpu_family" not in frame.columns:
        return []
    counted = frame[frame["metric"] == INSTRUCTIONS]
    return list(dict.fromkeys(str(f) for f in counted["cpu_family"].dropna()))


def _instruction_set(frame: pd.DataFrame, family: str | None) -> tuple[pd.Series, pd.Series]:
    """(rows of the instruction set to gate with, rows naming the CPU it is judged by): the set of
    `family` where the file holds one, else its only set. With several sets and none from
    `family`, the first set's rows stand for the models' counts and the CPU rows are all of them,
    so that the verdict 'not comparable' names every family the file holds."""
    counted = frame["metric"] == INSTRUCTIONS
    families = _instruction_families(frame)
    if len(families) <= 1:
        return counted, counted
    mine = counted & (frame["cpu_family"].astype(str) == gated_family(families, family))
    return mine, (mine if family in families else counted)


def gated_family(families: Iterable[str], family: str | None) -> str | None:
    """Of the CPU families a baseline holds instruction counts from, the one whose set is gated
    on a machine of `family`: its own where there is one, else the first (not comparable then)."""
    families = list(families)
    if family in families:
        return family
    return families[0] if families else None


def _check_instruction_sets(frame: pd.DataFrame, path: Path) -> None:
    """Each CPU family's set holds one count per model, and in a file with several sets every
    count names its family (else it could not be told which machine may compare with it)."""
    counted = frame[(frame["metric"] == INSTRUCTIONS)
                    & (frame["stat"].fillna("value").astype(str) == "value")]
    if counted.empty or "cpu_family" not in frame.columns:
        return
    if len(_instruction_families(frame)) > 1 and counted["cpu_family"].isna().any():
        model = counted.loc[counted["cpu_family"].isna(), "model"].iloc[0]
        raise _fail(path, f"holds instruction counts of several CPU families, and the one of "
                          f"{model} names none (its cpu_family is empty)")
    doubled = counted[counted.duplicated(["model", "cpu_family"], keep=False)]
    if not doubled.empty:
        first = doubled.iloc[0]
        raise _fail(path, f"has two rows for {first['model']} instructions counted on "
                          f"{first['cpu_family']}")


def _machines(frame: pd.DataFrame, path: Path) -> Machine:
    """The Machine of rows that may come from several CPU families (none of them comparable)."""
    families = list(dict.fromkeys(str(f) for f in frame["cpu_family"].dropna()))
    if len(families) <= 1:
        return _machine(frame, path)
    cpus = list(dict.fromkeys(str(c) for c in frame["cpu"].dropna())) if "cpu" in frame else []
    return Machine(cpu=" / ".join(cpus) or None, family=" / ".join(families),
                   threads=_single(frame, "threads", path, int))


def load_baseline(path: Path, family: str | None = None) -> Baseline:
    """Read and validate a baseline CSV (see the module docstring); UsageError on any problem.
    `family` (this machine's `bench.context.cpu_family()`) chooses the instruction counts to gate
    with where the file holds counts from several CPU families."""
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
    _check_instruction_sets(frame, path)
    values: dict[Key, float] = {}
    functions: dict[str, dict[str, int]] = {}
    counted, judged_by = _instruction_set(frame, family)
    other_families = (frame["metric"] == INSTRUCTIONS) & ~counted
    gated = frame[~other_families]
    stats = gated["stat"].fillna("value").astype(str)
    for model, metric, stat, value in zip(gated["model"], gated["metric"], stats,
                                          values_column[~other_families], strict=True):
        if metric == INSTRUCTIONS and stat.startswith(FUNCTION_STAT):
            functions.setdefault(str(model), {})[stat[len(FUNCTION_STAT):]] = int(value)
            continue
        key = (str(model), str(metric))
        if key in values:
            raise _fail(path, f"has two rows for {key[0]} {key[1]}")
        values[key] = float(value)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    every_count = frame["metric"] == INSTRUCTIONS
    latency = frame["metric"].isin([LATENCY_RATIO, LATENCY_MS])
    main = frame[~every_count] if (~every_count).any() else frame
    return Baseline(
        path, values, _context(main, path), _reference(frame, path), rows, functions,
        latency_machine=_machine(frame[latency], path) if latency.any() else Machine(),
        instruction_machine=_machines(frame[judged_by], path) if counted.any() else Machine(),
        instruction_context=(_context(frame[every_count], path, INSTRUCTION_CONTEXT)
                             if every_count.any() else INSTRUCTION_CONTEXT),
        instruction_families=tuple(_instruction_families(frame)))


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
