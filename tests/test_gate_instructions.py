"""Instruction counts (callgrind Ir under valgrind) as a metric and in the gate: they repeat, a
doctored baseline fails naming the model, the metric and the functions that moved, and without
valgrind every part says why in one line instead of failing with a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.matrix import instruction_cells, measure_cells
from bench.matrix.cells import expand
from bench.matrix.runner import measure_cell
from bench.matrix.spec import parse_spec
from bench.measure import instructions

MODEL = "cunet-noattn-nores"
needs_valgrind = pytest.mark.skipif(instructions.unavailable() is not None,
                                    reason=f"{instructions.unavailable()}")


@pytest.fixture(autouse=True)
def fresh_models():
    measure_cells._cached_model.cache_clear()
    yield
    measure_cells._cached_model.cache_clear()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    if instructions.unavailable():
        pytest.skip(instructions.unavailable())
    path = tmp_path_factory.mktemp("instructions") / "baseline.csv"
    assert main(["check", "--update", "--skip-latency", "--baseline", str(path),
                 "--models", MODEL]) == 0
    return path


@needs_valgrind
def test_instruction_count_of_a_tiny_model_is_a_positive_integer_and_repeats():
    # Two independent valgrind processes (one job each), run side by side.
    jobs = [instructions.InstructionJob(label, MODEL, {"width": 2}) for label in ("first", "again")]
    run = instructions.count_instructions(jobs, resolution=16, processes=2)
    assert run.failed == {} and run.processes == 2
    first, again = run.counts["first"].instructions, run.counts["again"].instructions
    assert isinstance(first, int) and first > 1_000_000
    assert abs(again / first - 1) < 0.005, (first, again)
    functions = run.counts["first"].functions
    assert functions and all(ir > 0 for _, ir in functions)
    assert [ir for _, ir in functions] == sorted((ir for _, ir in functions), reverse=True)
    assert sum(ir for _, ir in functions) <= first


def test_baseline_holds_counts_functions_and_the_cpu(baseline):
    frame = pd.read_csv(baseline)
    counted = frame[frame["metric"] == "instructions"]
    total = counted[counted["stat"] == "value"]
    assert len(total) == 1 and int(total["value"].iloc[0]) > 1_000_000
    assert (counted["stat"].str.startswith("function ")).sum() >= 5
    assert set(counted["resolution"]) == {32} and set(counted["threads"]) == {1}
    assert counted["cpu_family"].notna().all() and counted["cpu"].notna().all()
    assert "AVX2 path under valgrind" in total["counter"].iloc[0]
    assert '"num_filters": 4' in total["config"].iloc[0]  # the family's small configuration


def test_doctored_instruction_baseline_fails_naming_model_metric_and_functions(baseline, tmp_path,
                                                                               capsys):
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
