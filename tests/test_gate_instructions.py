"""Instruction counts (callgrind Ir under valgrind) as a metric and in the gate: they repeat, a
doctored baseline fails naming the model, the metric and the functions that moved, and without
valgrind every part says why in one line instead of failing with a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

import models
from bench.cli import main
from bench.context import run_context
from bench.gate.baseline import INSTRUCTION_CONTEXT, write_baseline
from bench.matrix import instruction_cells, measure_cells
from bench.matrix.cells import expand
from bench.matrix.runner import measure_cell
from bench.matrix.spec import parse_spec
from bench.measure import instructions
from bench.results.schema import context_row
from models.source import model_source

MODEL = "cunet-noattn-nores"


@pytest.fixture(autouse=True)
def fresh_models():
    measure_cells._cached_model.cache_clear()
    yield
    measure_cells._cached_model.cache_clear()


def _count_now() -> dict[str, list[dict]]:
    """Two independent valgrind processes (one job each, side by side) counting the model at the
    gate's small configuration and context: the gate's instruction rows of each."""
    small = model_source(MODEL).small().arguments
    jobs = [instructions.InstructionJob(label, MODEL, small) for label in ("first", "again")]
    run = instructions.count_instructions(jobs, resolution=INSTRUCTION_CONTEXT.resolution,
                                          processes=2)
    assert run.failed == {} and run.processes == 2, run.failed
    source = model_source(MODEL).small()
    context = context_row(run_context(), model=MODEL, source=source, device="cpu", batch_size=1,
                          resolution=INSTRUCTION_CONTEXT.resolution, channels=3, threads=1)
    rows = {}
    for label in ("first", "again"):
        one = instructions.InstructionRun({MODEL: run.counts[label]}, {}, run.valgrind,
                                          run.seconds, 1)
        rows[label] = [{**context, **row}
                       for row in instruction_cells.instruction_rows(one, [MODEL])]
    return rows


def _instruction_rows(frame: pd.DataFrame, family: str | None) -> list[dict]:
    mine = frame[(frame["model"] == MODEL) & (frame["metric"] == "instructions")
                 & (frame["cpu_family"].astype(str) == str(family))]
    return mine.to_dict("records")


@pytest.fixture(scope="module")
def counted(committed_check) -> dict[str, list[dict]]:
    """Two counts of the model from independent valgrind processes, as the gate's rows (the total
    and its top functions): 'first' is the count the committed-baseline check made this session
    (its --save rows, tests/conftest.py), 'again' the committed baseline's count from this CPU
    family (another process, another day). Where either is missing (a CPU family the baseline has
    no counts from), both are counted now, side by side."""
    if instructions.unavailable():
        pytest.skip(instructions.unavailable())
    family = run_context()["cpu_family"]
    first = (_instruction_rows(pd.read_csv(committed_check.measured), family)
             if committed_check.measured.is_file() else [])
    again = _instruction_rows(pd.read_csv(Path(__file__).resolve().parents[1] / "results"
                                          / "baseline.csv"), family)
    if not first or not again:
        return _count_now()
    return {"first": first, "again": again}


def _total(rows: list[dict]) -> float:
    (total,) = [r for r in rows if r["stat"] == "value"]
    assert total["status"] == "ok", total
    return float(total["value"])


def _functions(rows: list[dict]) -> list[tuple[str, float]]:
    return [(r["stat"], float(r["value"])) for r in rows if str(r["stat"]).startswith("function ")]


@pytest.fixture(scope="module")
def baseline(counted, tmp_path_factory) -> Path:
    """A baseline of the first count's rows, with the context the gate writes."""
    path = tmp_path_factory.mktemp("instructions") / "baseline.csv"
    write_baseline(path, counted["first"])
    return path


def test_instruction_count_of_a_tiny_model_is_a_positive_integer_and_repeats(counted):
    first, again = _total(counted["first"]), _total(counted["again"])
    assert first.is_integer() and first > 1_000_000
    assert abs(again / first - 1) < 0.005, (first, again)
    functions = _functions(counted["first"])
    assert functions and all(ir > 0 and ir.is_integer() for _, ir in functions)
    assert [ir for _, ir in functions] == sorted((ir for _, ir in functions), reverse=True)
    assert sum(ir for _, ir in functions) <= first


def test_the_committed_baseline_holds_counts_functions_and_the_cpu():
    """One complete set of counts per CPU family that counted them (each with its CPU)."""
    frame = pd.read_csv(Path(__file__).resolve().parents[1] / "results" / "baseline.csv")
    counted = frame[frame["metric"] == "instructions"]
    assert counted["cpu_family"].notna().all() and counted["cpu"].notna().all()
    assert set(counted["resolution"]) == {32} and set(counted["threads"]) == {1}
    for family, rows in counted.groupby("cpu_family"):
        total = rows[rows["stat"] == "value"]
        assert sorted(total["model"]) == sorted(models.available()), family
        assert (total["value"] > 1_000_000).all()
        assert (rows["stat"].str.startswith("function ")).sum() >= 5 * len(total)
        assert rows["cpu"].nunique() == 1
        assert total["counter"].str.contains("AVX2 path under valgrind").all()
        assert total["config"].str.contains('"num_filters": 4').sum() == len(total) - 1  # small


def test_doctored_instruction_baseline_fails_naming_model_metric_and_functions(
        baseline, counted, tmp_path, capsys, monkeypatch):
    """`bench check` against the first count, doctored; its measurement is that count undoctored
    (a valgrind run of its own would add a minute: `tests/test_gate_ci.py` runs the real one), so
    the total moves by exactly 1/0.97 - 1 = +3.1 % and the top function by +11 %."""
    from bench.gate import run as gate_run

    measured = counted["first"]
    monkeypatch.setattr(gate_run, "measure_instruction_rows", lambda spec, env, stamp: measured)
    frame = pd.read_csv(baseline)
    counted = frame["metric"] == "instructions"
    total = counted & (frame["stat"] == "value")
    functions = frame[counted & frame["stat"].str.startswith("function ")]
    top = functions["value"].astype(float).idxmax()
    top_name = frame.loc[top, "stat"].removeprefix("function ")
    frame.loc[total, "value"] = (frame.loc[total, "value"].astype(float) * 0.97).round()
    frame.loc[top, "value"] = round(float(frame.loc[top, "value"]) * 0.9)
    doctored = tmp_path / "doctored.csv"
    frame.to_csv(doctored, index=False)
    assert main(["check", "--baseline", str(doctored), "--skip-latency"]) == 1
    out = capsys.readouterr().out
    failing = [line for line in out.split("check FAILED", 1)[1].splitlines() if line.startswith("| ")]
    assert any(MODEL in line and "instructions" in line and "regressed" in line and "+3." in line
               for line in failing), out
    assert f"{MODEL}: instructions" in out and "the functions that changed most" in out
    assert top_name[:60] in out
    assert "params" not in "".join(failing)  # the counts still hold


def test_without_valgrind_the_cells_fail_with_one_line_naming_the_package(monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(instructions.shutil, "which",
                        lambda tool, *a, **k: None if tool == "valgrind" else real_which(tool, *a, **k))
    reason = instructions.unavailable()
    assert reason and "apt-get install -y valgrind" in reason and "\n" not in reason
    spec = parse_spec({"matrix": {"models": [MODEL, "unet"], "metrics": ["params", "instructions"],
                                  "resolutions": [32], "devices": ["cpu"], "threads": 1},
                       "overrides": {MODEL: {"width": 2}, "unet": {"width": 8}}}, name="t")
    cells, _ = expand(spec)
    counted = [c for c in cells if c.group == "instructions"]
    assert len(counted) == 1 and set(counted[0].members) == {MODEL, "unet"}
    rows = measure_cell(spec, counted[0])
    assert {r["model"] for r in rows} == {MODEL, "unet"}
    assert {r["status"] for r in rows} == {"failed"} and {r["error"] for r in rows} == {reason}
    params = measure_cell(spec, next(c for c in cells if c.group == "params"))
    assert {r["status"] for r in params} == {"ok"}  # the rest of the matrix runs


def test_without_valgrind_the_gate_says_instructions_were_not_measured(monkeypatch, tmp_path, capsys):
    rows = [{"model": MODEL, "metric": "instructions", "value": 50_000_000, "unit": "instructions",
             "stat": "value", "status": "ok", "device": "cpu", "batch_size": 1, "resolution": 32,
             "channels": 3, "threads": 1, "cpu": "x", "cpu_family": "y"}]
    from bench.context import run_context

    env = run_context()
    rows[0].update(cpu=env["cpu_model"], cpu_family=env["cpu_family"])
    path = tmp_path / "b.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    monkeypatch.setattr(instructions, "unavailable", lambda: "instruction counts need valgrind "
                        "('valgrind' not found): install valgrind")
    assert main(["check", "--baseline", str(path)]) == 0
    out = capsys.readouterr().out
    assert "not measured" in out and "install valgrind" in out


def test_instruction_rows_say_what_they_count():
    run = instructions.InstructionRun(
        {"m": instructions.InstructionCount("m", 123, (("f [lib.so]", 100),))}, {"n": "boom"},
        "valgrind-3.19.0", 1.0, 1)
    rows = instruction_cells.instruction_rows(run, ["m", "n"])
    total, function, failed = rows
    assert total["value"] == 123 and total["stat"] == "value" and "AVX2" in total["counter"]
    assert function["stat"] == "function f [lib.so]" and function["value"] == 100
    assert failed["status"] == "failed" and failed["error"] == "boom"


@pytest.mark.parametrize(("annotated", "name"), [
    ("???:mkl_sgemm_kernel [/x/y/libtorch_cpu.so]", "mkl_sgemm_kernel [libtorch_cpu.so]"),
    ("./csu/errno-loc.c:__errno_location [/usr/lib/libc.so.6]", "__errno_location [libc.so.6]"),
    ("at::native::foo(at::Tensor const&) [/l/libtorch_cpu.so]",
     "at::native::foo(at::Tensor const&) [libtorch_cpu.so]"),
])
def test_function_names_drop_the_file_and_the_object_path(annotated, name):
    assert instructions.function_name(annotated) == name


@pytest.mark.parametrize(("value", "problem"), [("63725465.5", "is not an integer"),
                                                ("many", "non-numeric")])
def test_a_damaged_instruction_count_in_a_baseline_is_refused_in_one_line(tmp_path, value, problem):
    from bench.errors import UsageError
    from bench.gate.baseline import load_baseline

    rows = [{"model": MODEL, "metric": "instructions", "value": value, "unit": "instructions",
             "stat": "value", "status": "ok", "device": "cpu", "batch_size": 1, "resolution": 32,
             "channels": 3, "threads": 1}]
    path = tmp_path / "b.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(UsageError, match=problem):
        load_baseline(path)
