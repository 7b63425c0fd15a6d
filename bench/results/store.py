"""The store: reading a run directory's measurements.csv and rewriting it atomically as rows are
added, so an interrupted run keeps everything it had finished and a resumed one skips it."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from bench.errors import UsageError
from bench.files import atomic_write_text
from bench.results.damage import csv_line, file_damage, file_problem
from bench.results.keys import migrate_cell_key
from bench.results.schema import COLUMNS, MEASUREMENTS


def read_measurements(path: Path, *, damaged: str = "raise") -> pd.DataFrame:
    """Read a measurements CSV (a directory means its measurements.csv); empty frame if absent.

    `damaged`: what to do with rows that are cut short or do not parse (`damaged_rows`): "raise" a
    one-line UsageError naming the first such line (reports), or "keep" them (the caller decides,
    e.g. `MeasurementStore` sets them aside and re-measures their cells). A file damaged as a whole
    (`file_problem`: empty, cut inside its header, no rows) is refused either way: nothing in it
    says which cells it held, so neither a report nor a resumed run may take it for "nothing
    measured yet"."""
    path = Path(path)
    if path.is_dir():
        path = path / MEASUREMENTS
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    problem = file_problem(path)
    if problem:
        raise UsageError(f"{path}: {problem} (the suite never writes such a file: it was cut "
                         "short); restore it from a copy, or move it away and run 'python -m bench "
                         "run' again to measure afresh")
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
        """Rewrite the file atomically; a store left without rows (every row set aside) removes it,
        so a file holding a header and no rows is always damage (`file_problem`)."""
        if self.frame.empty:
            self.path.unlink(missing_ok=True)
            return
        atomic_write_text(self.path, self.frame.to_csv(index=False, columns=COLUMNS))


# ----------------------------------------------------------------------------- torchrun ranks


def rank_file_name(rank: int) -> str:
    """The file a torchrun rank appends its rows to, merged into measurements.csv by rank 0."""
    return f".measurements.rank{rank}.csv"


DROPPED_SUFFIX = ".dropped"
"""Beside a rank file: the cells of measurements.csv that rank found stale (one key per line)."""


def merge_rank_files(out_dir: Path, store: MeasurementStore) -> None:
    """Drop the cells ranks found stale, append every rank's rows to measurements.csv
    (atomically), then remove the rank files."""
    out_dir = Path(out_dir)
    stale = sorted(out_dir.glob(f".measurements.rank*.csv{DROPPED_SUFFIX}"))
    for part in stale:
        store.drop_cells(line for line in part.read_text(encoding="utf-8").splitlines() if line)
    if stale:
        store.save()
    parts = sorted(out_dir.glob(".measurements.rank*.csv"))
    rows = []
    for part in parts:
        rows += MeasurementStore(out_dir, part.name).frame.to_dict("records")
    store.add([{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
               for r in rows])
    for part in [*parts, *stale]:
        part.unlink(missing_ok=True)  # a rank file whose every row was damaged is already gone


class RankStore:
    """What one torchrun rank writes: its own rank file, on top of what measurements.csv held
    when the ranks started (read-only for them; rank 0 merges everything at `merge_rank_files`).

    Cells of measurements.csv the rank finds stale (`drop_cells`) are written, at once, to a file
    beside its rank file, so a crash before the merge cannot leave them looking finished."""

    def __init__(self, directory: Path, rank: int, finished: Iterable[str]) -> None:
        self.sink = MeasurementStore(directory, rank_file_name(rank))
        self.finished = set(finished)
        self.dropped: set[str] = set()
        self.dropped_path = self.sink.path.with_name(self.sink.path.name + DROPPED_SUFFIX)

    @property
    def notices(self) -> list[str]:
        return self.sink.notices

    def done_cells(self) -> set[str]:
        return (self.finished - self.dropped) | self.sink.done_cells()

    def drop_cells(self, cells: Iterable[str]) -> None:
        cells = set(cells)
        stale = cells & self.finished
        if stale - self.dropped:
            self.dropped |= stale
            atomic_write_text(self.dropped_path, "".join(f"{c}\n" for c in sorted(self.dropped)))
        self.sink.drop_cells(cells)

    def add(self, rows: Iterable[Mapping[str, object]]) -> None:
        self.sink.add(rows)

    def save(self) -> None:
        self.sink.save()
