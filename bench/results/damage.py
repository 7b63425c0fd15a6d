"""Damage checks: which rows of a measurements CSV cannot be trusted (cut short, or a field that
does not parse), so that a damaged file never becomes a number."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pandas as pd

from bench.errors import UsageError

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
STATUSES = ("ok", "failed")


def damaged_rows(frame: pd.DataFrame, *, ends_with_newline: bool = True,
                 field_counts: list[int] | None = None,
                 header_fields: int | None = None) -> dict[int, str]:
    """Frame index -> why that row cannot be trusted (cut short, or a field that does not parse).

    A row cut short has fewer fields than the header (`field_counts`: fields per data line, as
    written) or, cut inside its last field, an incomplete `timestamp`; a file that does not end
    with a newline was cut inside its last row even if what is left happens to parse (a cut-off
    number still reads as a number).
    """
    problems: dict[int, str] = {}
    if frame.empty:
        return problems
    text = {c: frame[c].astype(str).where(frame[c].notna(), "") for c in ("model", "metric", "status")
            if c in frame}
    values = pd.to_numeric(frame["value"], errors="coerce")
    stamps = frame["timestamp"].astype(str).where(frame["timestamp"].notna(), "") \
        if "timestamp" in frame else None
    for position, index in enumerate(frame.index):
        status = (text["status"][index] if "status" in text else "").lower() or "ok"
        if text["model"][index] == "" or (text["metric"][index] == "" and status == "ok"):
            # (a failed row without a metric is a whole failed cell: allowed)
            problems[index] = "model or metric is missing"
        elif "status" in text and text["status"][index].lower() not in STATUSES + ("",):
            problems[index] = f"status {text['status'][index]!r} is neither ok nor failed"
        elif status == "ok" \
                and (pd.isna(values[index]) or values[index] in (float("inf"), float("-inf"))):
            problems[index] = f"value {frame['value'][index]!r} is not a number"
        elif field_counts is not None and header_fields and position < len(field_counts) \
                and field_counts[position] < header_fields:
            problems[index] = f"the row is cut short ({field_counts[position]} of {header_fields} fields)"
        elif stamps is not None and stamps[index] not in ("", "nan") and not _TIMESTAMP.match(stamps[index]):
            problems[index] = f"the row is cut short (incomplete timestamp {stamps[index]!r})"
        elif position == len(frame) - 1 and not ends_with_newline:
            problems[index] = "the file ends inside this row (no final newline)"
    return problems


def file_problem(path: Path) -> str | None:
    """Why the file as a whole cannot be trusted, or None: it is empty, ends inside its header line,
    or holds a header and no rows.

    The store writes the header only together with rows (`MeasurementStore.save` removes a file
    left with none), so such a file was cut or truncated by something else (a copy that stopped,
    `head -c`), and the rows it held are lost rather than "not measured"."""
    with open(path, "rb") as handle:
        header = handle.readline()
        if not header.strip():
            return "the file is empty"
        if not header.endswith(b"\n"):
            return "the file ends inside its header line"
        if any(line.strip() for line in handle):
            return None
    return "the file holds a header but no rows"


def csv_line(frame: pd.DataFrame, index: int) -> int:
    """The 1-based line of a row in the CSV it was read from (line 1 is the header)."""
    return list(frame.index).index(index) + 2


def file_damage(frame: pd.DataFrame, path: Path) -> dict[int, str]:
    """`damaged_rows` of a frame read from `path`, with the file's own line structure."""
    counts = _field_counts(path)
    return damaged_rows(frame, ends_with_newline=_ends_with_newline(path),
                        field_counts=counts[1:] if counts else None,
                        header_fields=counts[0] if counts else None)


def _field_counts(path: Path) -> list[int] | None:
    """Fields of the header and of every non-blank data line, as the csv module splits them (None
    if unreadable)."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            counts = [len(fields) for fields in csv.reader(handle) if fields]
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return counts


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            return True
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


NON_NEGATIVE_UNITS = frozenset({"count", "MACs", "FLOPs", "evaluations", "MiB", "ms", "s", "GFLOP/s"})


def check_plausible(frame: pd.DataFrame, path: Path) -> None:
    """Refuse values no measurement can produce (a negative time or size, a fractional count), with
    the line, instead of rendering them."""
    from bench.matrix.metrics import INTEGER_METRICS  # the registry, which imports no results code

    values = pd.to_numeric(frame["value"], errors="coerce")
    ok = frame["status"].astype(str).str.lower().isin(["ok", "", "nan", "none"])
    negative = ok & frame["unit"].astype(str).isin(NON_NEGATIVE_UNITS) & (values < 0)
    # off an integer by more than float64 rounding of the written number
    fractional = (ok & frame["metric"].astype(str).isin(INTEGER_METRICS)
                  & ((values - values.round()).abs() > 1e-9 * values.abs().clip(lower=1.0)))
    for mask, what in ((negative, "is negative, which no measurement of it can be"),
                       (fractional, "is not an integer, but it counts something")):
        if mask.any():
            index = mask[mask].index[0]
            row = frame.loc[index]
            raise UsageError(f"{path} line {csv_line(frame, index)}: {row['model']} {row['metric']} = "
                             f"{row['value']} {what}; fix or re-measure that row")
