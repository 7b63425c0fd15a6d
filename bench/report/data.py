"""Reading a run's CSV for the reports, and the selection rules every report shares.

The reports never measure: they pick rows out of `measurements.csv`. A run may be partial (cells
not reached, metrics not in its profile) or hold failed cells, so every look-up here returns
"nothing" instead of raising, and `failure` tells a failed measurement from a missing one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import UsageError
from bench.matrix.metrics import machine_metrics
from bench.results.damage import check_plausible
from bench.results.schema import COLUMNS, MEASUREMENTS, SWEEP_WALL_PER_IMAGE
from bench.results.store import read_measurements

ENVIRONMENT = "environment.json"

NUMERIC_COLUMNS = ("value", "batch_size", "resolution", "channels", "threads", "solver_steps", "steps",
                   "seed", "n")
TEXT_COLUMNS = tuple(c for c in COLUMNS if c not in NUMERIC_COLUMNS)

MODEL_ORDER = ("unet", "cunet", "cunet-attn5", "cunet-noattn", "cunet-nores", "cunet-noattn-nores",
               "cunet-film")
"""Presets in the order the paper presents them; models not listed follow alphabetically."""

MACHINE_METRICS = machine_metrics()
"""Metrics of the device rather than of a model (their `model` is e.g. 'machine')."""

AT_PAPER_INPUT = {"batch_size": 1, "resolution": 64, "channels": 3, "dtype": "float32"}
"""The paper's input, 1x3x64x64 in float32; a row that does not record one of these is taken to be
at it (so a bfloat16 memory row never stands in Table 2's float32 column)."""

STAT_ORDER = ("value", "median", "mean", "p50", "min", "max")
"""Which statistic stands for a single number when a metric has several."""

NOT_MEASURED = "not measured"
FAILED = "failed"


@dataclass(frozen=True)
class Results:
    """One run directory's measurements, split into usable rows and failed ones."""

    ok: pd.DataFrame
    failed: pd.DataFrame
    environment: dict[str, Any] = field(default_factory=dict)
    environment_note: str = ""
    """Why environment.json could not be shown, if it could not."""
    all_modes: pd.DataFrame | None = None
    """ok rows of every execution mode; `ok` and `failed` hold eager rows only (rows written before
    modes existed have no mode and count as eager), so reports that know nothing of modes never
    mix a compiled or graph-replayed time into an eager table."""
    all_modes_failed: pd.DataFrame | None = None


def load_results(results_dir: Path) -> Results:
    """Read `results_dir/measurements.csv` (required) and `environment.json` (optional)."""
    results_dir = Path(results_dir)
    path = results_dir / MEASUREMENTS
    if not path.is_file():
        raise UsageError(f"no {MEASUREMENTS} in {results_dir}: run 'python -m bench run' first "
                         "or pass --results DIR")
    environment, note = read_environment(results_dir / ENVIRONMENT)
    frame = read_measurements(path)
    check_plausible(frame, path)
    return results_from_frame(frame, environment, note)


def results_from_frame(frame: pd.DataFrame, environment: dict[str, Any] | None = None,
                       environment_note: str = "") -> Results:
    """Split a raw measurements frame into ok rows (with a numeric value) and failed rows."""
    frame = normalise(frame)
    ok = frame[(frame["status"] == "ok") & frame["value"].notna()]
    failed = frame[frame["status"] != "ok"]
    ok_eager, failed_eager = ok[ok["mode"].isin(["", "eager"])], failed[failed["mode"].isin(["", "eager"])]
    return Results(ok_eager.reset_index(drop=True), failed_eager.reset_index(drop=True),
                   environment or {}, environment_note, all_modes=ok.reset_index(drop=True),
                   all_modes_failed=failed.reset_index(drop=True))


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as floats (NaN when absent), text as stripped str ('' when absent), file order kept.

    CSV readers guess types per column, so a column of hosts or commits may come back as numbers
    and a column of batch sizes as text; the selection rules below need one type each.
    """
    out = pd.DataFrame(index=range(len(frame)))
    for column in COLUMNS:
        raw = frame[column].reset_index(drop=True) if column in frame else pd.Series([None] * len(frame))
        if column in NUMERIC_COLUMNS:
            out[column] = pd.to_numeric(raw, errors="coerce").astype(float)
        else:
            out[column] = raw.map(_text).astype(object)
    out["stat"] = out["stat"].where(out["stat"] != "", "value")
    out["status"] = out["status"].str.lower().where(out["status"] != "", "ok")
    out["metric"] = migrate_metric_names(out["metric"], out["stat"])
    out["order"] = range(len(out))
    return out


def migrate_metric_names(metric: pd.Series, stat: pd.Series) -> pd.Series:
    """Names of older CSVs in today's terms: sweeps before the rename wrote their wall time per
    image as `sample_time_s` (stat `wall_per_sample`), which would mix with the matrix's metric."""
    old_sweep = (metric == "sample_time_s") & (stat == "wall_per_sample")
    return metric.where(~old_sweep, SWEEP_WALL_PER_IMAGE)


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_environment(path: Path) -> tuple[dict[str, Any], str]:
    """The run's environment metadata, or an empty dict and the reason it is missing."""
    if not path.is_file():
        return {}, f"{path.name} not found"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return {}, f"{path.name} unreadable ({error.__class__.__name__})"
    if not isinstance(data, dict):
        return {}, f"{path.name} does not hold a JSON object"
    return data, ""


def where(frame: pd.DataFrame, metric: str | None = None, *, model: str | None = None,
          defaults: Mapping[str, object] | None = None, **exact: object) -> pd.DataFrame:
    """Rows of `metric` (and `model`) whose `exact` columns equal the given values and whose
    `defaults` columns equal the given values or are not recorded."""
    mask = pd.Series(True, index=frame.index)
    if metric is not None:
        mask &= frame["metric"] == metric
    if model is not None:
        mask &= frame["model"] == model
    for column, wanted in (defaults or {}).items():
        mask &= _equals(frame[column], wanted) | _missing(frame[column])
    for column, wanted in exact.items():
        mask &= _equals(frame[column], wanted)
    return frame[mask]


def _equals(column: pd.Series, wanted: object) -> pd.Series:
    if column.name in NUMERIC_COLUMNS:
        try:
            return column == float(wanted)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return pd.Series(False, index=column.index)
    return column == _text(wanted)


def _missing(column: pd.Series) -> pd.Series:
    return column.isna() if column.name in NUMERIC_COLUMNS else column == ""


def pick(rows: pd.DataFrame, stats: Sequence[str] = STAT_ORDER,
         devices: Sequence[str] = ("cpu",)) -> pd.Series | None:
    """The one row that stands for a metric: the first statistic of `stats` present, rows on the
    first of `devices` present preferred, and of those the last written (a re-measured cell is
    appended after the old one)."""
    if rows.empty:
        return None
    for stat in stats:
        chosen = rows[rows["stat"] == stat]
        if not chosen.empty:
            break
    else:
        return None
    for device in devices:
        on_device = chosen[chosen["device"] == device]
        if not on_device.empty:
            chosen = on_device
            break
    return chosen.sort_values("order").iloc[-1]


def value_of(row: pd.Series | None) -> float:
    """The row's value, NaN for no row."""
    return float("nan") if row is None else float(row["value"])


def failure(results: Results, model: str, metric: str, *,
            defaults: Mapping[str, object] | None = None, **exact: object) -> str | None:
    """The error of a failed measurement of `model`'s `metric` in this context, None if none failed.

    A failed row with no metric is a whole failed cell and counts for every metric of the model.
    """
    failed = results.failed
    rows = failed[(failed["model"] == model) & ((failed["metric"] == metric) | (failed["metric"] == ""))]
    rows = where(rows, defaults=defaults, **exact)
    if rows.empty:
        return None
    return str(rows.sort_values("order").iloc[-1]["error"]) or FAILED


def failed_rows(results: Results, metrics: Iterable[str]) -> pd.DataFrame:
    """Failed rows of these metrics (and whole failed cells), for a report's list of failures."""
    failed = results.failed
    return failed[failed["metric"].isin(set(metrics)) | (failed["metric"] == "")]


def ordered_models(models: Iterable[str]) -> list[str]:
    """Known presets in the paper's order, then any other model alphabetically."""
    present = {m for m in models if m}
    known = [m for m in MODEL_ORDER if m in present]
    return known + sorted(present - set(known))


def measured_models(results: Results) -> list[str]:
    """Every model with a row (ok or failed) of a model metric, in report order."""
    models: set[str] = set()
    for frame in (results.ok, results.failed):
        models |= set(frame.loc[~frame["metric"].isin(MACHINE_METRICS), "model"])
    return ordered_models(models)


# ----------------------------------------------------------------------------- context lines

_CONTEXT = (("device", "device"), ("threads", "threads"), ("dtype", "dtype"), ("torch", "torch"),
            ("git_commit", "git commit"), ("host", "host"))


def unique_text(values: Iterable[object]) -> list[str]:
    """Distinct non-empty values as text, in first-seen order (integral floats without '.0')."""
    seen: list[str] = []
    for value in values:
        text = _text(value)
        if text and text not in seen:
            seen.append(text)
    return seen


def context_line(rows: pd.DataFrame) -> str:
    """'device cpu; threads 2; ...' for the rows a report used."""
    parts = []
    for column, label in _CONTEXT:
        values = unique_text(rows[column]) if column in rows else []
        parts.append(f"{label} {', '.join(values) if values else 'not recorded'}")
    return "; ".join(parts)


def environment_lines(results: Results, limit: int = 40) -> list[str]:
    """`key: value` lines of environment.json, nested objects flattened with dots."""
    if not results.environment:
        return [f"Run environment: {results.environment_note or 'not recorded'}"]
    lines = []
    for key, value in _flatten(results.environment):
        text = value if isinstance(value, str) else json.dumps(value)
        if len(text) > 120:
            text = text[:117] + "..."
        lines.append(f"{key}: {text}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... ({len(lines) - limit} more in {ENVIRONMENT})"]
    return lines


def environment_details(results: Results) -> list[str]:
    """A collapsed Markdown block with the run's environment, closing a report."""
    return (["", "<details><summary>Run environment</summary>", ""]
            + [f"    {line}" for line in environment_lines(results)] + ["", "</details>", ""])


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items.extend(_flatten(value, f"{name}."))
        else:
            items.append((name, value))
    return items


# ----------------------------------------------------------------------------- number formats

def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value))


def fmt(value: object, digits: int) -> str:
    """Fixed-point with `digits` decimals; '' for a missing value (the caller says why)."""
    return f"{float(value):,.{digits}f}" if is_number(value) else ""  # type: ignore[arg-type]


def fmt_int(value: object) -> str:
    return f"{round(float(value)):,}" if is_number(value) else ""  # type: ignore[arg-type]


def fmt_pct(value: object) -> str:
    return f"{float(value):+.2f} %" if is_number(value) else ""  # type: ignore[arg-type]


def pct_diff(ours: float, paper: float) -> float:
    """(ours - paper) / paper in %, NaN when either is missing or paper is 0."""
    if not (is_number(ours) and is_number(paper)) or paper == 0:
        return float("nan")
    return (ours - paper) / paper * 100.0
