"""The loss curve of a run: `loss.csv` beside its checkpoints (step, loss, grad_norm, elapsed_s).

Rows are means over `log_every` steps. On resume the rows after the resumed step are dropped, so
the file always describes the weights of the checkpoints next to it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from bench.files import atomic_write_text

FIELDS = ("step", "loss", "grad_norm", "elapsed_s")
NAME = "loss.csv"


def read_loss_log(folder: Path) -> list[dict[str, float]]:
    path = Path(folder) / NAME
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as handle:
        rows = []
        for row in csv.DictReader(handle):
            try:
                rows.append({key: float(row[key]) for key in FIELDS})
            except (KeyError, TypeError, ValueError):
                continue  # a torn last line after a crash
        return rows


def _format(row: dict[str, float]) -> dict[str, object]:
    return {key: int(row[key]) if key == "step" else f"{row[key]:.6g}" for key in FIELDS}


def truncate_loss_log(folder: Path, last_step: int) -> None:
    """Keep only rows up to `last_step` (rewritten atomically); start a file if there is none."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in read_loss_log(folder):
        if row["step"] <= last_step:
            writer.writerow(_format(row))
    atomic_write_text(Path(folder) / NAME, buffer.getvalue())


def append_loss_row(folder: Path, row: dict[str, float]) -> None:
    """Append one row (a crash can tear only this last line, which readers skip)."""
    with open(Path(folder) / NAME, "a", encoding="utf-8", newline="") as handle:
        csv.DictWriter(handle, fieldnames=FIELDS, lineterminator="\n").writerow(_format(row))


def tail_mean(rows: list[dict[str, float]], fraction: float = 0.1) -> float:
    """Mean logged loss over the last `fraction` of the rows (at least one); NaN if none."""
    if not rows:
        return float("nan")
    count = max(1, round(len(rows) * fraction))
    tail = rows[-count:]
    return sum(row["loss"] for row in tail) / len(tail)
