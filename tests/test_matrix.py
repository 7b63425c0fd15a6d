"""End-to-end runs of the efficiency matrix on a tiny profile, resuming, failures, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.matrix import measure_cells

TINY = """
description = "tiny end-to-end profile for the tests"
[matrix]
models = ["unet", "cunet"]
resolutions = [32]
batch_sizes = [1, 2]
devices = ["cpu", "cuda"]
dtypes = ["float32"]
metrics = {metrics}
threads = 1
seed = 3

[overrides]
unet = {{ width = 8, dim_mults = [1, 2] , full_attention = [false, true] }}
cunet = {{ width = 2 }}

[latency]
warmup = 1
calls_per_round = 2
min_rounds = 2
max_rounds = 3
budget_s = 0.05

[sampling]
steps = {{ unet = [2], cunet = [1] }}
batch = 1
repeats = 1
"""
ALL = ["params", "params_trainable", "param_mib", "macs_thop", "macs_fvcore", "flops_torch", "nfe",
       "checkpoint_mib", "latency_ms", "sample_time_s", "peak_gflops"]


def write_profile(tmp_path: Path, metrics: list[str] = ALL, **replace: str) -> Path:
    text = TINY.format(metrics=json.dumps(metrics))
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module", autouse=True)
def no_cuda():
    """Pinned to a machine without CUDA: the tiny matrix asks for cuda, and these tests are about
    how its absence is handled (skipped, not failed); the CUDA paths have their own tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", lambda: False)
        yield


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("matrix")
    config = write_profile(tmp)
    out = tmp / "out"
    assert main(["run", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    return config, out


def test_run_writes_tidy_rows_with_context(tiny_run):
    _, out = tiny_run
    frame = pd.read_csv(out / "measurements.csv")
    assert set(ALL) <= set(frame["metric"])
    assert (frame["status"] == "ok").all(), frame.loc[frame["status"] != "ok", "error"].tolist()
    for column in ("model", "metric", "value", "unit", "stat", "counter", "device", "batch_size",
                   "resolution", "dtype", "threads", "seed", "torch", "git_commit", "host",
                   "timestamp"):
        assert column in frame.columns
    assert set(frame["threads"]) == {1} and set(frame["seed"]) == {3}
    latency = frame[frame["metric"] == "latency_ms"]
    assert set(latency["stat"]) == {"median", "p90", "min"}
    assert set(latency["batch_size"]) == {1, 2}
    assert set(frame["device"]) == {"cpu"}  # cuda requested but absent: skipped, not failed
    nfe = frame[(frame["metric"] == "nfe") & (frame["stat"] == "value")]
    assert nfe.set_index("model")["value"].to_dict() == {"cunet": 36}
    medians = latency[latency["stat"] == "median"]["value"]
    p90 = latency[latency["stat"] == "p90"]["value"]
    assert (medians.to_numpy() <= p90.to_numpy()).all()
    # Both models of a batch size are timed in ONE cell, with same-run ratios to unet.
    assert latency.groupby("batch_size")["cell"].nunique().to_dict() == {1: 1, 2: 1}
    ratios = frame[frame["metric"] == "latency_ratio"].set_index(["batch_size", "model"])["value"]
    assert ratios[(1, "unet")] == 1.0 and ratios[(2, "unet")] == 1.0 and ratios[(1, "cunet")] > 0
    assert set(frame.loc[frame["metric"] == "latency_ratio", "unit"]) == {"x unet"}
    env = json.loads((out / "environment.json").read_text())
    assert env["wall_time_s"] > 0 and env["threads"] == 1 and env["environment"]["versions"]["torch"]


def test_run_draws_the_reports(tiny_run):
    _, out = tiny_run
    for name in ("table2.md", "table2.tex", "figure4.png", "figure4.pdf", "table1_time.md",
                 "latency_vs_batch.png"):
        assert (out / "reports" / name).stat().st_size > 0


def test_report_redraws_without_measuring(tiny_run, tmp_path):
    _, out = tiny_run
    before = (out / "measurements.csv").read_bytes()
    assert main(["report", "--results", str(out), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "table2.md").exists()
    assert (out / "measurements.csv").read_bytes() == before


def test_rerun_resumes_and_measures_nothing_new(tiny_run, capsys):
    config, out = tiny_run
    rows_before = len(pd.read_csv(out / "measurements.csv"))
    assert main(["run", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    assert "0 cells measured" in capsys.readouterr().out
    assert len(pd.read_csv(out / "measurements.csv")) == rows_before


def test_remeasure_forgets_a_metric_and_measures_it_again(tmp_path, capsys):
    config = write_profile(tmp_path, ["params", "latency_ms"])
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    first = pd.read_csv(out / "measurements.csv")
    # A stale row of an old per-model latency cell, as a run of an earlier version wrote them.
    stale = first[first["metric"] == "latency_ms"].iloc[:1].assign(cell="latency_ms|unet|cpu|32|1|float32|")
    pd.concat([first, stale]).to_csv(out / "measurements.csv", index=False)
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--out", str(out), "--no-progress",
                 "--remeasure", "latency_ms"]) == 0
    assert "2 cells measured" in capsys.readouterr().out  # the two batch sizes; params resumed
    again = pd.read_csv(out / "measurements.csv")
    assert len(again) == len(first) and "latency_ms|unet|cpu|32|1|float32|" not in set(again["cell"])
    assert (again[again["metric"] == "params"]["timestamp"].to_numpy()
            == first[first["metric"] == "params"]["timestamp"].to_numpy()).all()
    assert main(["run", "--config", str(config), "--out", str(out), "--remeasure", "joules"]) == 2
    assert "unknown metric joules" in capsys.readouterr().err


def test_interrupted_run_resumes_from_the_last_finished_cell(tmp_path, monkeypatch):
    config = write_profile(tmp_path, ["params", "macs_thop", "checkpoint_mib"])
    out = tmp_path / "out"
    calls: list[str] = []
    real = measure_cells.measure_checkpoint

    def interrupt_on_second(spec, cell):
        calls.append(cell.model)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(spec, cell)

    monkeypatch.setattr(measure_cells, "measure_checkpoint", interrupt_on_second)
    assert main(["run", "--config", str(config), "--out", str(out), "--no-progress"]) == 130
    first = pd.read_csv(out / "measurements.csv")
    assert set(first["metric"]) == {"params", "macs_thop", "checkpoint_mib"}
    monkeypatch.setattr(measure_cells, "measure_checkpoint", real)
    assert main(["run", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    final = pd.read_csv(out / "measurements.csv")
    assert sorted(final.loc[final["metric"] == "checkpoint_mib", "model"]) == ["cunet", "unet"]
    assert len(final) == len(first) + 1


def test_a_failing_cell_is_recorded_and_the_others_go_on(tmp_path, monkeypatch):
    config = write_profile(tmp_path, ["params", "latency_ms"])

    def out_of_memory(spec, cell):
        if cell.batch_size == 2:
            raise RuntimeError("out of memory (simulated)")
        return real(spec, cell)

    real = measure_cells.measure_latency
    monkeypatch.setattr(measure_cells, "measure_latency", out_of_memory)
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    frame = pd.read_csv(out / "measurements.csv")
    failed = frame[frame["status"] == "failed"]
    assert set(failed["batch_size"]) == {2} and len(failed) == 2
    assert failed["error"].str.contains("out of memory").all()
    assert (frame.loc[frame["batch_size"] == 1, "status"] == "ok").all()


@pytest.mark.parametrize(
    ("replace", "message"),
    [({'"cunet"]': '"cunet", "vit"]'}, "unknown model vit"),
     ({"[matrix]": "[matrix]\nthreads_x = 1"}, "unknown key(s) threads_x"),
     ({"[latency]": "[latency]\nrepeats = 1"}, "[latency] takes only"),
     ({"[latency]": "[latency]\nreference = 'cunet-attn5'"}, "reference 'cunet-attn5' is not among"),
     ({"min_rounds = 2": "min_rounds = 9"}, "min_rounds (9) exceeds max_rounds (3)"),
     ({"resolutions = [32]": "resolutions = [40]"}, "cannot take 40x40"),
     ({"batch_sizes = [1, 2]": "batch_sizes = [0]"}, "positive integers")],
)
def test_bad_profile_content_is_one_line_and_exit_2(tmp_path, capsys, replace, message):
    config = write_profile(tmp_path, **replace)
    code = main(["run", "--config", str(config), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_unknown_metric(tmp_path, capsys):
    config = write_profile(tmp_path, ["params", "joules"])
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "unknown metric joules" in capsys.readouterr().err


def test_unknown_profile(capsys):
    """The error and `run --help` list every profile file in bench/profiles, of both kinds."""
    from bench.profiles import PROFILE_DIR

    every = {p.stem for p in PROFILE_DIR.glob("*.toml")}
    assert {"quick", "paper", "where", "peers", "smoke", "digits", "paper-quality"} <= every
    assert main(["run", "--profile", "huge"]) == 2
    err = capsys.readouterr().err
    assert "unknown profile 'huge'" in err and len(err.strip().splitlines()) == 1
    listed = set(err.split("available: ", 1)[1].replace("efficiency: ", "").replace("quality: ", "")
                 .replace(";", ",").strip().split(", "))
    assert listed == every
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = "".join(capsys.readouterr().out.split())  # wrapped lines joined again
    assert all(name in help_text for name in every)


def test_missing_config_file(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_directory_as_user(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    config = write_profile(tmp_path, ["params"])
    assert main(["run", "--config", str(config), "--out", str(locked / "o")]) == 2


def test_output_path_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = write_profile(tmp_path, ["params"])
    assert main(["run", "--config", str(config), "--out", str(blocker / "o")]) == 2
    err = capsys.readouterr().err
    assert "cannot write to output directory" in err and len(err.strip().splitlines()) == 1


def test_report_without_results_is_exit_2(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path)]) == 2
    assert "no measurements.csv" in capsys.readouterr().err
