"""`python -m bench check` end to end, in process, on a small baseline made in a temporary folder:
the real cU-Net (so that its width can move 16 -> 17) and its cheapest ablation, latency relative
to the cU-Net, three short rounds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.matrix import measure_cells
from models import registry

MODELS = "cunet,cunet-noattn-nores"
FAST = ["--rounds", "3"]


@pytest.fixture(autouse=True)
def fresh_models():
    """The matrix caches built models by (name, overrides); a test that edits a preset in the
    registry must not get a model built before the edit."""
    measure_cells._cached_model.cache_clear()
    yield
    measure_cells._cached_model.cache_clear()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gate") / "baseline.csv"
    measure_cells._cached_model.cache_clear()
    assert main(["check", "--update", "--baseline", str(path), "--models", MODELS,
                 "--reference", "cunet", "--skip-instructions", *FAST]) == 0
    return path


def check(path: Path, *argv: str) -> int:
    return main(["check", "--baseline", str(path), *FAST, *argv])


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first pipe table in `text`, as lists of stripped cells."""
    lines = [line for line in text.splitlines() if line.startswith("| ")][1:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def failing_rows(output: str) -> list[list[str]]:
    """The regression table's rows: model, metric, baseline, now, change, verdict[, note]."""
    return table_rows(output.split("check FAILED", 1)[1])


def test_update_writes_a_tidy_baseline_with_ratios_and_context(baseline):
    frame = pd.read_csv(baseline)
    assert set(frame["model"]) == {"cunet", "cunet-noattn-nores"}
    assert set(frame["metric"]) == {"params", "macs_thop", "macs_fvcore", "flops_torch", "nfe",
                                    "checkpoint_mib", "latency_ratio", "latency_ms"}
    values = frame.set_index(["model", "metric"])["value"]
    assert values[("cunet", "params")] == 8_811_875  # docs/paper.md, "The continuous U-Net"
    assert values[("cunet-noattn-nores", "params")] == 5_874_915
    assert values[("cunet", "latency_ratio")] == 1.0
    assert set(frame.loc[frame["metric"] == "latency_ratio", "unit"]) == {"x cunet"}
    assert set(frame["status"]) == {"ok"} and set(frame["threads"]) == {1}
    assert set(frame["resolution"]) == {64} and set(frame["device"]) == {"cpu"}
    assert frame["git_commit"].notna().all() and frame["timestamp"].notna().all()


def test_clean_tree_passes(baseline, capsys):
    # Generous tolerance: this machine may be busy; the latency gate's failing is tested below.
    assert check(baseline, "--tolerance", "50") == 0
    out = capsys.readouterr().out
    assert "check passed: 14 values of 2 models" in out
    assert "| cunet-noattn-nores | 6/6 equal |" in out


def test_width_change_in_the_registry_fails_naming_model_and_metric(baseline, capsys, monkeypatch):
    preset = registry.PRESETS["cunet"]
    wider = dataclasses.replace(preset, config=dataclasses.replace(preset.config, num_filters=17))
    monkeypatch.setitem(registry.PRESETS, "cunet", wider)
    assert check(baseline, "--skip-latency") == 1
    rows = failing_rows(capsys.readouterr().out)
    moved = {row[1] for row in rows}
    assert {row[0] for row in rows} == {"cunet"}
    assert {"params", "macs_thop", "macs_fvcore", "flops_torch", "checkpoint_mib"} <= moved
    assert "nfe" not in moved
    params = next(row for row in rows if row[1] == "params")
    assert params[2:4] == ["8,811,875", "9,896,975"] and params[5] == "regressed"


def test_solver_change_moves_nfe_and_fails(baseline, capsys):
    assert check(baseline, "--skip-latency", "--models", "cunet-noattn-nores",
                 "--override", "cunet-noattn-nores:solver_steps=2") == 1
    rows = failing_rows(capsys.readouterr().out)
    nfe = next(row for row in rows if row[1] == "nfe")
    assert nfe[0] == "cunet-noattn-nores" and nfe[2:6] == ["36", "72", "+100.0 %", "regressed"]
    assert "params" not in {row[1] for row in rows}  # the solver adds no parameters


def test_doctored_baseline_fails_on_that_preset_and_metric_only(baseline, tmp_path, capsys):
    frame = pd.read_csv(baseline)
    frame = frame[frame["model"] == "cunet-noattn-nores"].copy()
    row = (frame["metric"] == "params")
    frame.loc[row, "value"] = frame.loc[row, "value"] + 1
    doctored = tmp_path / "doctored.csv"
    frame.to_csv(doctored, index=False)
    assert check(doctored, "--skip-latency") == 1
    out = capsys.readouterr().out
    assert failing_rows(out) == [["cunet-noattn-nores", "params", "5,874,916", "5,874,915",
                                  "-1.7e-05 %", "changed"]]
    assert "1 of 6 values moved" in out


def test_latency_slowdown_fails_after_a_confirming_run(baseline, tmp_path, capsys, monkeypatch):
    # On a busy machine the gate calls a latency failure 'inconclusive (busy)' (not a failure);
    # this test is about detection and the confirming run, so no timing counts as busy here.
    from bench.measure import load

    monkeypatch.setattr(load, "BUSY_SHARE", 1.0)
    frame = pd.read_csv(baseline)
    latency_only = tmp_path / "latency.csv"
    frame[frame["metric"].isin(["latency_ratio", "latency_ms"])].to_csv(latency_only, index=False)
    # Two RK4 steps per block instead of one: twice the work per call, the same parameters.
    assert check(latency_only, "--override", "cunet-noattn-nores:solver_steps=2") == 1
    rows = failing_rows(capsys.readouterr().out)
    assert [row[:2] for row in rows] == [["cunet-noattn-nores", "latency_ratio"]]
    assert rows[0][5] == "regressed" and "re-measured: first run +" in rows[0][6]


def test_update_reports_what_changed_and_keeps_latency_rows(baseline, tmp_path, capsys):
    frame = pd.read_csv(baseline)
    frame.loc[(frame["model"] == "cunet-noattn-nores") & (frame["metric"] == "nfe"), "value"] = 9
    edited = tmp_path / "edited.csv"
    frame.to_csv(edited, index=False)
    assert main(["check", "--update", "--skip-latency", "--skip-instructions", "--baseline", str(edited),
                 "--models", "cunet-noattn-nores", "--reference", "cunet"]) == 0
    out = capsys.readouterr().out
    changes = table_rows(out)
    assert changes[0] == ["cunet-noattn-nores", "nfe", "9", "36", "+300.0 %", "changed"]
    assert ["cunet", "params", "8,811,875", "-", "-", "removed"] in changes  # not in --models
    assert "latency rows kept" in out
    after = pd.read_csv(edited).set_index(["model", "metric"])["value"]
    assert after[("cunet-noattn-nores", "nfe")] == 36
    assert ("cunet", "latency_ratio") in after.index  # the reference's ratio row stays
    assert not list(tmp_path.glob(".edited.csv.*"))  # the atomic write left no temporary file


def test_latency_from_another_generation_of_the_same_named_cpu_is_not_comparable():
    """CI's AMD runners are all named 'AMD EPYC'; in stop 26's CI a family-25 runner timed the
    cU-Nets' ratios to the U-Net 4.5-15.3 % above the family-26 baseline, which the 15 % gate
    read as a regression."""
    from bench.gate.baseline import Machine
    from bench.gate.run import latency_incomparable

    family26 = Machine(cpu="AMD EPYC", family="AuthenticAMD 26/2")
    family25 = Machine(cpu="AMD EPYC", family="AuthenticAMD 25/1")
    assert latency_incomparable(family26, family26) is None
    why = latency_incomparable(family26, family25)
    assert why is not None and why.startswith("not comparable")
    assert "AuthenticAMD 26/2" in why and "AuthenticAMD 25/1" in why
    assert latency_incomparable(Machine(cpu="AMD EPYC"), family25) is None  # older file: name only
    assert latency_incomparable(Machine(cpu="Intel(R) Xeon(R) Processor"), family25) is not None
