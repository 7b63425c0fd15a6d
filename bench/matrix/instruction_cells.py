"""The `instructions` cell: callgrind instruction counts of one eager forward of every model of a
context (`bench.measure.instructions`, all models in one valgrind run), as tidy rows.

Rows per model: the total (stat "value") and its largest functions by exclusive count (stat
"function <name>"), so that a gate that fails can say where the work grew. Without valgrind every
model's row fails with the one-line reason and the rest of the matrix runs.
"""

from __future__ import annotations

from typing import Any

from bench.errors import UsageError
from bench.matrix.cells import Cell
from bench.matrix.spec import MatrixSpec
from bench.measure import instructions

Row = dict[str, Any]
METRIC = "instructions"
FUNCTION_STAT = "function "
"""Prefix of the `stat` of a per-function row: "function mkl_sgemm_kernel [libtorch_cpu.so]"."""


def method_text(warmup: int, version: str) -> str:
    return (f"callgrind Ir of one eager forward after {warmup} warm-up call(s), collection on only "
            f"around it; {version}; 1 thread; ASLR off; PYTHONHASHSEED=0; {instructions.LABEL}")


def instruction_rows(counts: instructions.InstructionRun, names: list[str],
                     reason: str | None = None, warmup: int = 1) -> list[Row]:
    """Rows for `names` (labels of `counts`), failed rows with the reason where a model was not
    counted (or with `reason` for every model)."""
    rows: list[Row] = []
    counter = f"callgrind Ir ({instructions.LABEL})"
    for name in names:
        common = {"model": name, "metric": METRIC, "unit": "instructions", "counter": counter,
                  "threads": 1, "device": "cpu", "dtype": "float32", "mode": "eager"}
        count = None if reason else counts.counts.get(name)
        if count is None:
            why = reason or counts.failed.get(name, "not counted")
            rows.append({**common, "value": None, "stat": "value", "status": "failed",
                         "error": why})
            continue
        rows.append({**common, "value": count.instructions, "stat": "value", "status": "ok",
                     "method": method_text(warmup, counts.valgrind)})
        rows += [{**common, "value": ir, "stat": FUNCTION_STAT + function, "status": "ok",
                  "method": "exclusive Ir of the function (callgrind_annotate)"}
                 for function, ir in count.functions]
    return rows


def measure_instructions(spec: MatrixSpec, cell: Cell) -> list[Row]:
    names = list(cell.members)
    reason = instructions.unavailable()
    empty = instructions.InstructionRun({}, {}, "", 0.0, 0)
    if reason:
        return instruction_rows(empty, names, reason)
    jobs = [instructions.InstructionJob(name, spec.source_of(name).name,
                                        spec.source_of(name).arguments) for name in names]
    try:
        run = instructions.count_instructions(jobs, channels=spec.channels,
                                              resolution=cell.resolution, batch=cell.batch_size,
                                              seed=spec.seed)
    except UsageError as error:
        return instruction_rows(empty, names, str(error))
    return instruction_rows(run, names)
