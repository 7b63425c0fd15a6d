"""The suite's tidy results format: one row per measurement, written atomically.

Every harness writes `measurements.csv` with the columns below. A row names the measured model
and metric, the value with its unit and statistic, and the full context it was measured in.
Rows of one matrix cell share a `cell` key; `done_cells` lets an interrupted run resume.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from bench.errors import UsageError

COLUMNS = [
    "model", "metric", "value", "unit", "stat", "counter", "status", "error",
    "device", "batch_size", "resolution", "channels", "dtype", "mode", "threads",
    "solver", "solver_steps", "solver_backend", "steps", "sampler", "seed",
    "dataset", "n", "feature_extractor", "checkpoint", "method",
    "cell", "profile", "torch", "git_commit", "host", "rank", "device_index", "timestamp",
]
"""Column order of measurements.csv. `status` is 'ok' or 'failed' (then `error` says why)."""

MEASUREMENTS = "measurements.csv"


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_measurements(path: Path) -> pd.DataFrame:
    """Read a measurements CSV (a directory means its measurements.csv); empty frame if absent."""
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
    return frame


class MeasurementStore:
    """Rows of one run directory's measurements.csv; every `add` rewrites the file atomically,
    so an interrupted run keeps everything it had finished."""

    def __init__(self, directory: Path, name: str = MEASUREMENTS) -> None:
        self.directory = Path(directory)
        self.path = self.directory / name
        self.frame = read_measurements(self.path)

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
