"""The machine's load over a timed window (`bench.measure.load`) and the rows, warnings and report
lines it feeds: a timing beside other work must say so."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.matrix import measure_cells, runner
from bench.matrix.cells import Cell
from bench.matrix.spec import parse_spec
from bench.measure.interleaved import InterleavePlan, time_round_robin
from bench.measure.load import BUSY_SHARE, MachineLoad, load_columns, measure_load
from bench.measure.sampling import time_per_sample
from bench.report.data import load_results
from bench.report.latency_table import write_latency_table
from bench.results.store import MeasurementStore

CPU = torch.device("cpu")
LOAD_COLUMNS = ("load_other", "load_steal", "busy")


def _cpu_quota() -> float | None:
    """Cores the cgroup lets this process use (cgroup v2 cpu.max), None when unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _tiny_calls() -> dict[str, object]:
    a, b = torch.ones(96, 96), torch.ones(128, 128)
    return {"small": lambda: a @ a, "large": lambda: b @ b}


def test_a_timing_beside_hogs_on_every_core_is_flagged_busy():
    cores = os.cpu_count() or 1
    quota = _cpu_quota()
    if quota is not None and quota < 0.75 * cores:
        pytest.skip(f"a cgroup quota of {quota:g} of {cores} cores: hogs cannot fill the machine")
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    if allowed < 0.75 * cores:
        pytest.skip(f"this process may use {allowed} of {cores} cores: hogs cannot fill the machine")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.5)  # the hogs are up and spinning before the timing starts
        timing = time_round_robin(_tiny_calls(), "small", device=CPU, plan=InterleavePlan(
            min_rounds=2, max_rounds=20_000, calls=3, budget_s=0.8, initial_warmup=1))
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()
    load = timing.load
    assert load is not None and load.cores >= 1 and load.wall_s >= 0.8
    assert load.other_share > BUSY_SHARE and load.busy, (load.describe(), load.wall_s)
    assert load_columns(load)["busy"] is True
    assert "other work held" in load.describe() and f"of {load.cores} cores" in load.describe()


def test_an_idle_window_gives_a_share_in_range():
    with measure_load() as window:
        assert window.result is None  # set on exit
        time.sleep(0.3)
    load = window.result
    assert load is not None  # psutil is a dependency of the suite
    assert 0.0 <= load.other_share <= 1.0 and 0.0 <= load.steal_share <= 1.0
    assert load.wall_s >= 0.3 and load.cores >= 1
    assert load.busy == (load.other_share > BUSY_SHARE)
    columns = load_columns(load)
    assert set(columns) == set(LOAD_COLUMNS) and isinstance(columns["busy"], bool)


def test_busy_is_strictly_above_the_threshold_and_described_in_one_phrase():
    at = MachineLoad(other_share=BUSY_SHARE, steal_share=0.0, cores=2, wall_s=1.0)
    above = MachineLoad(other_share=0.48, steal_share=0.01, cores=2, wall_s=1.0)
    assert not at.busy and above.busy
    assert above.describe() == "other work held 48 % of 2 cores (steal 1 %)"
    assert load_columns(above) == {"load_other": 0.48, "load_steal": 0.01, "busy": True}


def test_without_psutil_nothing_is_measured_and_nothing_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` raises ImportError
    with measure_load() as window:
        pass
    assert window.result is None
    assert load_columns(window.result) == dict.fromkeys(LOAD_COLUMNS)
    timing = time_round_robin(_tiny_calls(), "small", device=CPU,
                              plan=InterleavePlan(min_rounds=1, max_rounds=1, calls=1))
    assert timing.load is None and timing.stats


def _tiny_spec(metrics: list[str]) -> tuple[object, list[str]]:
    names = ["unet", "cunet-noattn-nores"]
    return parse_spec({
        "matrix": {"models": names, "resolutions": [32], "metrics": metrics, "threads": 1},
        "overrides": {"unet": {"width": 8, "dim_mults": [1, 2], "full_attention": [False, True]},
                      "cunet-noattn-nores": {"width": 4}},
        "latency": {"warmup": 1, "calls_per_round": 1, "min_rounds": 2, "max_rounds": 2,
                    "budget_s": 0.0},
        "sampling": {"steps": {"unet": [1], "cunet": [1]}, "batch": 1, "repeats": 1},
    }, name="t"), names


def test_every_timed_row_of_a_matrix_latency_cell_carries_the_load():
    spec, names = _tiny_spec(["latency_ms"])
    cell = Cell("latency_ms", ("latency_ms",), "+".join(names), resolution=32, batch_size=1,
                members=tuple(names))
    rows = measure_cells.measure_latency(spec, cell)
    timed = [r for r in rows if r["metric"] in ("latency_ms", "latency_ratio", "mode_speedup")]
    assert len(timed) == 8 and all(r["status"] == "ok" for r in timed)  # (3 stats + ratio) x 2
    for row in timed:
        assert 0.0 <= row["load_other"] <= 1.0 and 0.0 <= row["load_steal"] <= 1.0
        assert isinstance(row["busy"], bool)
        assert row["busy"] == (row["load_other"] > BUSY_SHARE)


def test_sample_time_rows_carry_the_load():
    spec, _ = _tiny_spec(["sample_time_s"])
    cell = Cell("sample_time_s", ("sample_time_s",), "unet", resolution=16, batch_size=1, steps=1)
    rows = measure_cells.measure_sample_time(spec, cell)
    assert {r["stat"] for r in rows} == {"median", "p90", "min"}
    assert all(set(LOAD_COLUMNS) <= set(r) and isinstance(r["busy"], bool) for r in rows)

    def fake_sample(model, diffusion, shape, *, steps, sampler, seed, device, dtype):
        time.sleep(0.01)
        return torch.zeros(shape)

    result = time_per_sample(torch.nn.Identity(), steps=1, channels=1, resolution=4, repeats=2,
                             sample_fn=fake_sample)
    assert result.load is not None and result.load.wall_s >= 0.02


def test_a_busy_cell_prints_one_warning_line(tmp_path, monkeypatch, capsys):
    spec = parse_spec({
        "matrix": {"models": ["unet"], "resolutions": [16], "batch_sizes": [1], "devices": ["cpu"],
                   "metrics": ["params", "latency_ms"], "threads": 1},
        "overrides": {"unet": {"width": 8, "dim_mults": [1, 2], "full_attention": [False, True]}},
    }, name="t")
    loaded = {"load_other": 0.52, "load_steal": 0.0, "busy": True}

    def busy_latency(spec, cell):
        return [{"model": "unet", "metric": "latency_ms", "value": 1.0, "unit": "ms",
                 "stat": stat, "status": "ok", **loaded} for stat in ("median", "p90", "min")]

    monkeypatch.setattr(measure_cells, "measure_latency", busy_latency)
    runner.run_matrix(spec, tmp_path / "out", progress=False)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, warnings  # one line for the busy cell, none for params
    assert warnings[0].startswith("warning: latency_ms|unet")
    assert "52 % of" in warnings[0] and "--remeasure latency_ms" in warnings[0]
    frame = pd.read_csv(tmp_path / "out" / "measurements.csv")
    latency = frame[frame["metric"] == "latency_ms"]
    assert latency["busy"].astype(str).eq("True").all()
    assert latency["load_other"].eq(0.52).all()
    assert frame.loc[frame["metric"] == "params", "busy"].isna().all()


def test_busy_warning_names_the_cell_and_is_none_for_a_quiet_one():
    cell = Cell("latency_ms", ("latency_ms",), "unet+cunet", resolution=64, batch_size=1,
                members=("unet", "cunet"))
    quiet = [{"metric": "latency_ms", "busy": False, "load_other": 0.1}]
    assert runner.busy_warning(cell, quiet) is None
    line = runner.busy_warning(cell, quiet + [{"metric": "latency_ms", "busy": True,
                                               "load_other": 0.61}])
    assert line is not None and "\n" not in line
    assert line.startswith(f"warning: {cell.key} was timed while other work held 61 % of ")


def _latency_rows(load: dict[str, object]) -> list[dict[str, object]]:
    context = {"device": "cpu", "threads": 2, "dtype": "float32", "resolution": 64,
               "batch_size": 1, "status": "ok", "cell": "latency_ms|unet+cunet|cpu|64|1|float32|"}
    rows = []
    for model, ms in (("unet", 10.0), ("cunet", 20.0)):
        rows += [{**context, "model": model, "metric": "latency_ms", "value": ms * f, "unit": "ms",
                  "stat": stat, "n": 6, **load} for stat, f in (("median", 1), ("p90", 1.1),
                                                                  ("min", 0.9))]
        rows.append({**context, "model": model, "metric": "latency_ratio", "value": ms / 10.0,
                     "unit": "x unet", "stat": "median", "n": 2, **load})
    return rows


def test_the_latency_report_shows_the_load_and_marks_a_busy_context(tmp_path):
    busy = tmp_path / "busy"
    MeasurementStore(busy).add(_latency_rows({"load_other": 0.52, "load_steal": 0.0, "busy": True}))
    write_latency_table(load_results(busy), busy / "reports")
    text = (busy / "reports" / "latency.md").read_text()
    assert "other load" in text and "52 % BUSY" in text
    assert "timed while other work held 52 % of the cores" in text
    table = pd.read_csv(busy / "reports" / "latency_table.csv")
    assert table["load_other"].eq(0.52).all()

    quiet = tmp_path / "quiet"
    MeasurementStore(quiet).add(_latency_rows({"load_other": 0.03, "load_steal": 0.0, "busy": False}))
    write_latency_table(load_results(quiet), quiet / "reports")
    text = (quiet / "reports" / "latency.md").read_text()
    assert "| 3 % |" in text and "BUSY" not in text.replace("BUSY: more than", "")

    old = tmp_path / "old"  # a run from before the load was recorded: drawn as before
    MeasurementStore(old).add(_latency_rows({}))
    write_latency_table(load_results(old), old / "reports")
    text = (old / "reports" / "latency.md").read_text()
    assert "other load" not in text.lower() and "BUSY" not in text


def test_the_quality_sweeps_time_per_sample_rows_carry_the_load(tmp_path):
    from bench.measure.workload import build_diffusion
    from bench.quality.sweep import SweepContext, SweepEntry, SweepSettings, time_entry

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 1)

        def forward(self, x, t):
            return self.conv(x)

    entry = SweepEntry("tiny", Tiny(), build_diffusion("sigmoid", "v"), "checkpoints/tiny.pt",
                       steps=(2,), samplers=("ddim",), seeds=(0,))
    store = MeasurementStore(tmp_path)
    ctx = SweepContext(dataset="digits", real=None, shape=(1, 8, 8), store=store, base_row={},
                       samples_dir=tmp_path / "samples")
    time_entry(entry, SweepSettings(steps=(2,), time_repeats=1), ctx, done=set())
    timed = store.frame[store.frame["metric"] == "time_per_sample_s"]
    assert set(timed["stat"]) == {"median", "p90"}
    assert timed["load_other"].between(0.0, 1.0).all() and timed["busy"].isin([True, False]).all()
