"""The suite's tidy results format: one row per measurement, written atomically.

Every harness writes `measurements.csv` with the columns of `Row`. A row names the measured model
and metric, the value with its unit and statistic, and the full context it was measured in. Rows
of one matrix cell share a `cell` key; `MeasurementStore.done_cells` lets an interrupted run resume.

Each job has its own module: `schema` (the row and its columns), `keys` (cell keys and the
migration of older ones), `store` (reading and atomically rewriting measurements.csv), `damage`
(refusing rows and files that cannot be trusted) and `paths` (output paths checked before any
measuring). The names below are re-exported for callers that want the package's public face.
"""

from bench.results.damage import csv_line, damaged_rows, file_damage
from bench.results.keys import cell_key, key_parts, migrate_cell_key, quality_cell_key, train_cell_key
from bench.results.paths import ensure_writable_dir, ensure_writable_file, safe_name
from bench.results.schema import COLUMNS, MEASUREMENTS, SWEEP_WALL_PER_IMAGE, Row, context_row
from bench.results.store import MeasurementStore, read_measurements

__all__ = [
    "COLUMNS", "MEASUREMENTS", "SWEEP_WALL_PER_IMAGE", "MeasurementStore", "Row", "cell_key",
    "context_row", "csv_line", "damaged_rows", "ensure_writable_dir", "ensure_writable_file",
    "file_damage", "key_parts", "migrate_cell_key", "quality_cell_key", "read_measurements",
    "safe_name", "train_cell_key",
]
