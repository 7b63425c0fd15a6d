"""The suite's tidy results format: one row per measurement, written atomically.

Every harness writes `measurements.csv` with the columns below. A row names the measured model
and metric, the value with its unit and statistic, and the full context it was measured in.
Rows of one matrix cell share a `cell` key; `done_cells` lets an interrupted run resume.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypedDict

import pandas as pd

from bench.errors import UsageError
from bench.files import atomic_write_text


class Row(TypedDict, total=False):
    """One measurement: what (model, metric, value, unit, stat, counter), whether it worked
    (status 'ok' or 'failed', then `error` says why), and the full context it was measured in.
    Every harness (matrix, gate, quality sweep, training, profiler) writes rows of this one shape;
    `context_row` builds the context part."""

    model: str
    metric: str
    value: float | int | None
    unit: str
    stat: str
    counter: str | None
    status: str
    error: str | None
    device: str | None
    batch_size: int | None
    resolution: int | None
    channels: int | None
    dtype: str | None
    mode: str | None
    threads: int | None
    solver: str | None
    solver_steps: int | None
    solver_backend: str | None
    steps: int | None
    sampler: str | None
    seed: int | None
    dataset: str | None
    n: int | None
    feature_extractor: str | None
    checkpoint: str | None
    method: str | None
    config: str | None
    """The model's full configuration as JSON (`models.ModelSource.config()`)."""
    cell: str | None
    """The resume key (`cell_key`)."""
    profile: str | None
    torch: str | None
    git_commit: str | None
    host: str | None
    rank: int | None
    device_index: int | None
    timestamp: str | None


COLUMNS: list[str] = list(Row.__annotations__)
"""Column order of measurements.csv."""


def context_row(env: Mapping[str, Any], *, model: str, source: Any = None,
                **context: Any) -> dict[str, Any]:
    """The context columns of a row: `model`, what `source` (a `models.ModelSource`) says of it
    (solver, full configuration), the versions, commit and host of `env` (`bench.context.
    run_context()`), and the given `context` columns. A name that is not a column is a bug here,
    not a silently dropped value (ValueError)."""
    unknown = sorted(set(context) - set(COLUMNS))
    if unknown:
        raise ValueError(f"not result columns: {unknown}")
    row: dict[str, Any] = {"model": model}
    if source is not None:
        solver, solver_steps, backend = source.solver()
        row.update(solver=solver, solver_steps=solver_steps, solver_backend=backend,
                   config=json.dumps(source.config(), sort_keys=True, default=str))
    versions = env.get("versions") or {}
    row.update(torch=versions.get("torch"), git_commit=env.get("git_commit"), host=env.get("hostname"))
    row.update(context)
    return row


MEASUREMENTS = "measurements.csv"

SWEEP_WALL_PER_IMAGE = "sweep_wall_per_image_s"
"""The quality sweep's wall time of generating its n images (in batches) divided by n: not the
matrix's `sample_time_s` (time per sample at [sampling] batch), so it has its own name."""


def safe_name(text: str) -> str:
    """`text` usable as one file or folder name (a factory reference 'pkg/nets.py:make' has
    slashes and colons): every run of other characters than letters, digits, '.', '_' and '-'
    becomes '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "_"


KEY_SEPARATOR = "|"


def cell_key(group: str, model: str, *, device: str | None = None, resolution: int | None = None,
             batch: int | None = None, dtype: str | None = None, steps: int | None = None,
             extra: Iterable[object] = ()) -> str:
    """The one resume key of every harness (matrix, gate, quality sweep, training):
    'group|model|device|resolution|batch|dtype|steps' and then any further parts (execution
    modes, dataset, checkpoint kind, sampler, seed); an absent part is empty. Rows of one cell
    share it; a finished cell's key in measurements.csv is what a resumed run skips."""
    parts = [group, model, device, resolution, batch, dtype, steps, *extra]
    return KEY_SEPARATOR.join("" if p is None else str(p) for p in parts)


def key_parts(key: str) -> list[str]:
    """A cell key split into its parts (see `cell_key`)."""
    return str(key).split(KEY_SEPARATOR)


_OLD_QUALITY_KEY = re.compile(
    r"^(?P<time>time/)?quality/(?P<dataset>[^/]+)/(?P<model>.+)/(?P<kind>trained|untrained|data)/"
    r"(?P<sampler>[^/]+)/s(?P<steps>None|\d+)/seed(?P<seed>None|\d+)$")
_OLD_TRAIN_KEY = re.compile(r"^train/(?P<dataset>[^/]+)/(?P<model>.+)$")


def migrate_cell_key(key: object) -> object:
    """A cell key of an older quality run ('quality/<dataset>/<model>/<kind>/<sampler>/s<steps>/
    seed<seed>', 'time/quality/...', 'train/<dataset>/<model>') in today's scheme, so resuming
    such a run skips its finished cells; any other key (or a missing one) as it is."""
    if not isinstance(key, str):
        return key
    found = _OLD_QUALITY_KEY.match(key)
    if found:
        steps = None if found["steps"] == "None" else int(found["steps"])
        seed = None if found["seed"] == "None" else int(found["seed"])
        return quality_cell_key(found["dataset"], found["model"], found["kind"], found["sampler"],
                                steps, seed, timing=bool(found["time"]))
    found = _OLD_TRAIN_KEY.match(key)
    if found:
        return train_cell_key(found["dataset"], found["model"])
    return key


def quality_cell_key(dataset: str, model: str, kind: str, sampler: str, steps: int | None,
                     seed: int | None, *, timing: bool = False) -> str:
    """A quality-sweep cell: one (dataset, model, checkpoint kind, sampler, steps, seed) set of
    images (`timing`: its time-per-sample measurement)."""
    group = "time_per_sample_s" if timing else "quality"
    return cell_key(group, model, batch=1 if timing else None, steps=steps,
                    extra=(dataset, kind, sampler, f"seed{seed}"))


def train_cell_key(dataset: str, model: str) -> str:
    """The rows of training one model on one dataset (loss, steps, time, params)."""
    return cell_key("train", model, extra=(dataset,))


_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
STATUSES = ("ok", "failed")


def ensure_writable_dir(path: Path, flag: str, *, fix: str | None = None) -> Path:
    """Create `path` (and parents) and prove a file can be written in it, before any measuring or
    training; a one-line UsageError naming `flag` otherwise (e.g. a path under a regular file)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(f"cannot write to output directory {path} ({flag}): {reason}; "
                         f"{fix or f'pass a writable {flag} DIR'}") from None
    return path


def ensure_writable_file(path: Path, flag: str) -> Path:
    """The same for a file to be (re)written atomically: its folder writable, itself not a folder."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a directory; pass a file path")
    ensure_writable_dir(path.parent, f"the folder of {flag}", fix=f"pass a writable {flag} FILE")
    return path


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


def csv_line(frame: pd.DataFrame, index: int) -> int:
    """The 1-based line of a row in the CSV it was read from (line 1 is the header)."""
    return list(frame.index).index(index) + 2


def read_measurements(path: Path, *, damaged: str = "raise") -> pd.DataFrame:
    """Read a measurements CSV (a directory means its measurements.csv); empty frame if absent.

    `damaged`: what to do with rows that are cut short or do not parse (`damaged_rows`): "raise" a
    one-line UsageError naming the first such line (reports), or "keep" them (the caller decides,
    e.g. `MeasurementStore` sets them aside and re-measures their cells)."""
    path = Path(path)
    if path.is_dir():
        path = path / MEASUREMENTS
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""], low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        message = f"{path} is not a readable measurements CSV ({error}); move it away or fix it"
        raise UsageError(message) from None
    missing = {"model", "metric", "value", "unit"} - set(frame.columns)
    if missing:
        raise UsageError(f"{path} lacks the columns {sorted(missing)}; is it a measurements CSV?")
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    if damaged == "raise":
        problems = file_damage(frame, path)
        if problems:
            index, reason = next(iter(problems.items()))
            raise UsageError(f"{path} line {csv_line(frame, index)}: {reason}; the file is damaged "
                             f"({len(problems)} bad row(s)); restore it, or run the same "
                             "'python -m bench run' again to set them aside and re-measure")
    return frame


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


class MeasurementStore:
    """Rows of one run directory's measurements.csv; every `add` rewrites the file atomically,
    so an interrupted run keeps everything it had finished."""

    def __init__(self, directory: Path, name: str = MEASUREMENTS) -> None:
        self.directory = Path(directory)
        self.path = self.directory / name
        self.notices: list[str] = []
        """What was done on opening (damaged rows set aside), for the caller to print."""
        self.frame = read_measurements(self.path, damaged="keep")
        if self.path.exists():
            self._set_aside_damaged()
            self.frame["cell"] = self.frame["cell"].map(migrate_cell_key)

    def _set_aside_damaged(self) -> None:
        """Drop rows that are cut short or do not parse, with every row of their cells (a cell cut
        in the middle looks finished otherwise), after keeping a copy of the file beside it."""
        problems = file_damage(self.frame, self.path)
        if not problems:
            return
        copy = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        shutil.copyfile(self.path, copy)
        cells = self.frame["cell"].astype(str).where(self.frame["cell"].notna(), "")
        positions = list(self.frame.index)
        suspect = set()
        for index in problems:
            suspect.add(cells[index])
            before = positions.index(index) - 1
            if before >= 0:  # rows of a cell are written together: the cell the cut row continued
                suspect.add(cells[positions[before]])
        suspect.discard("")
        drop = self.frame.index.isin(list(problems)) | cells.isin(suspect)
        first = next(iter(problems))
        self.notices.append(
            f"{self.path}: set aside {int(drop.sum())} row(s) ({len(problems)} damaged, first at line "
            f"{csv_line(self.frame, first)}: {problems[first]}) and {len(suspect)} cell(s) to "
            f"re-measure; the damaged file is kept as {copy.name}")
        self.frame = self.frame[~drop]
        self.save()

    def done_cells(self) -> set[str]:
        """Cells that finished (ok or failed) in an earlier, possibly interrupted, run."""
        if self.frame.empty or "cell" not in self.frame:
            return set()
        return set(self.frame["cell"].dropna().astype(str))

    def drop_cells(self, cells: Iterable[str]) -> None:
        """Forget rows of these cells (used to re-measure failed cells)."""
        cells = set(cells)
        self.frame = self.frame[~self.frame["cell"].astype(str).isin(cells)]

    def add(self, rows: Iterable[Mapping[str, object]]) -> None:
        new = pd.DataFrame([{c: row.get(c) for c in COLUMNS} for row in rows], columns=COLUMNS)
        if new.empty:
            return
        self.frame = new if self.frame.empty else pd.concat([self.frame, new], ignore_index=True)
        self.save()

    def save(self) -> None:
        atomic_write_text(self.path, self.frame.to_csv(index=False, columns=COLUMNS))
