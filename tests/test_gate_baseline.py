"""Reading and writing the gate's baseline CSV: every malformed file is one UsageError (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.errors import UsageError
from bench.gate.baseline import load_baseline, write_baseline
from bench.results.schema import COLUMNS


def rows(**changes) -> list[dict]:
    base = {"unit": "count", "stat": "value", "status": "ok", "device": "cpu", "batch_size": 1,
            "resolution": 64, "channels": 3, "threads": 1}
    out = [
        {**base, "model": "unet", "metric": "params", "value": 35_710_339, "batch_size": None},
        {**base, "model": "cunet", "metric": "params", "value": 8_811_875, "batch_size": None},
        {**base, "model": "cunet", "metric": "nfe", "value": 36, "unit": "evaluations"},
        {**base, "model": "unet", "metric": "latency_ratio", "value": 1.0, "unit": "x unet",
         "stat": "median"},
        {**base, "model": "cunet", "metric": "latency_ratio", "value": 0.587, "unit": "x unet",
         "stat": "median"},
        {**base, "model": "cunet", "metric": "latency_ms", "value": 110.5, "unit": "ms",
         "stat": "median"},
    ]
    for index, row_changes in changes.items():
        out[int(index.removeprefix("row"))].update(row_changes)
    return out


def write(tmp_path: Path, table: list[dict]) -> Path:
    path = tmp_path / "baseline.csv"
    write_baseline(path, table)
    return path


def test_round_trip_keeps_counts_integer_and_reads_the_context(tmp_path):
    path = write(tmp_path, rows())
    text = path.read_text()
    assert text.splitlines()[0] == ",".join(COLUMNS)
    assert "unet,params,35710339," in text and "35710339.0" not in text
    baseline = load_baseline(path)
    assert baseline.values[("cunet", "params")] == 8_811_875
    assert baseline.models == ["unet", "cunet"]
    assert baseline.reference == "unet"
    assert (baseline.context.device, baseline.context.resolution, baseline.context.threads,
            baseline.context.batch_size) == ("cpu", 64, 1, 1)


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "baseline.csv"
    path.write_bytes(b"\xff\xfe\x00garbage\x00\n\x01\x02")
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "baseline.csv"
    path.write_text("")
    return path


def _header_only(tmp_path: Path) -> Path:
    path = tmp_path / "baseline.csv"
    path.write_text(",".join(COLUMNS) + "\n")
    return path


def _without(column: str):
    def make(tmp_path: Path) -> Path:
        path = write(tmp_path, rows())
        frame = pd.read_csv(path)
        frame.drop(columns=[column]).to_csv(path, index=False)
        return path
    return make


def _ragged(tmp_path: Path) -> Path:
    path = write(tmp_path, rows())
    with path.open("a") as handle:
        # more fields than the header has columns (whatever their number)
        handle.write("cunet,params," + ",".join(str(i) for i in range(len(COLUMNS) + 5)) + "\n")
    return path


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "absent.csv", "does not exist"),
    (lambda tmp: tmp, "is a directory"),
    (_empty, "is empty"),
    (_header_only, "has no rows"),
    (_garbage, "baseline"),
    (_ragged, "not a readable CSV"),
    (_without("value"), "lacks the columns value"),
    (_without("resolution"), "lacks the columns resolution"),
    (lambda tmp: write(tmp, rows(row0={"model": "unet9"})), "unknown model(s) unet9"),
    (lambda tmp: write(tmp, rows(row2={"metric": "gflops"})), "does not know: gflops"),
    (lambda tmp: write(tmp, rows(row1={"value": "many"})), "non-numeric value for cunet params"),
    (lambda tmp: write(tmp, rows(row1={"model": "unet"})), "two rows for unet params"),
    (lambda tmp: write(tmp, rows(row2={"resolution": 32})), "mixes several resolution"),
    (lambda tmp: write(tmp, [{**r, "threads": 0} for r in rows()]), "threads = 0"),
    (lambda tmp: write(tmp, rows(row2={"status": "failed"})), "failed measurements"),
    (lambda tmp: write(tmp, rows(row4={"unit": "x cunet"})), "latency_ratio units"),
    (lambda tmp: write(tmp, rows(row3={"unit": "ms"}, row4={"unit": "ms"})), "latency_ratio units"),
])
def test_malformed_baselines_are_usage_errors(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(UsageError, match="baseline") as error:
        load_baseline(path)
    assert message in str(error.value)


def test_cli_exit_2_with_one_line_on_a_malformed_or_missing_baseline(tmp_path, capsys):
    bad = write(tmp_path, rows(row1={"value": "many"}))
    assert main(["check", "--baseline", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "non-numeric value" in err and "--update" in err
    assert main(["check", "--baseline", str(tmp_path / "nope.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--tolerance", "0"], "--tolerance"),
    (["--tolerance", "-5"], "--tolerance"),
    (["--tolerance", "nan"], "--tolerance"),
    (["--tolerance", "ten"], "invalid float"),
    (["--models", "cunet,unet9"], "unknown model(s) unet9"),
    (["--models", "cunet-nores"], "no rows in"),
    (["--models", ","], "at least one model"),
    (["--reference", "cunet"], "relative to 'unet'"),
    (["--reference", "unet9"], "unknown model(s) unet9"),
    (["--override", "cunet:num_filters"], "MODEL:KEY=VALUE"),
    (["--override", "cunet:no_such_field=3"], "unknown override"),
    (["--override", "unet9:width=3"], "unknown model"),
    (["--rounds", "0"], "--rounds"),
])
def test_bad_options_exit_2_before_measuring(tmp_path, capsys, argv, message):
    path = write(tmp_path, rows())
    assert main(["check", "--baseline", str(path), *argv]) == 2
    assert message in capsys.readouterr().err


def _counted(model: str, value: int, family: str, cpu: str) -> list[dict]:
    """A model's instruction count and its top function, counted on `family`."""
    common = {"model": model, "metric": "instructions", "unit": "instructions", "status": "ok",
              "device": "cpu", "batch_size": 1, "resolution": 32, "channels": 3, "threads": 1,
              "cpu": cpu, "cpu_family": family}
    return [{**common, "stat": "value", "value": value},
            {**common, "stat": "function f [libtorch.so]", "value": value // 2}]


def _two_families(tmp_path: Path) -> Path:
    table = [r for r in rows() if r["metric"] == "params"]
    for family, cpu, extra in (("AuthenticAMD 26/2", "AMD EPYC", 0),
                               ("GenuineIntel 6/167", "Intel Xeon", 1_000)):
        table += _counted("unet", 63_000_000 + extra, family, cpu)
        table += _counted("cunet", 70_000_000 + extra, family, cpu)
    return write(tmp_path, table)


def test_a_baseline_gates_with_the_instruction_counts_of_this_cpu_family(tmp_path):
    path = _two_families(tmp_path)
    amd = load_baseline(path, family="AuthenticAMD 26/2")
    intel = load_baseline(path, family="GenuineIntel 6/167")
    assert amd.values[("cunet", "instructions")] == 70_000_000
    assert intel.values[("cunet", "instructions")] == 70_001_000
    assert intel.functions["unet"] == {"f [libtorch.so]": 31_500_500}
    assert (amd.instruction_machine.family, intel.instruction_machine.cpu) == (
        "AuthenticAMD 26/2", "Intel Xeon")
    assert amd.instruction_families == ("AuthenticAMD 26/2", "GenuineIntel 6/167")
    assert amd.values[("unet", "params")] == intel.values[("unet", "params")] == 35_710_339
    # a third family: neither set is comparable, and the verdict names both
    other = load_baseline(path, family="HygonGenuine 24/0")
    assert other.instruction_machine.family == "AuthenticAMD 26/2 / GenuineIntel 6/167"
    assert ("unet", "instructions") in other.values
    # two counts of one model from one family are damage, in whichever family's set they are
    table = pd.read_csv(path).to_dict("records")
    duplicated = write(tmp_path, [*table, *_counted("unet", 1_000_000, "AuthenticAMD 26/2", "x")])
    for family in ("AuthenticAMD 26/2", "GenuineIntel 6/167"):
        with pytest.raises(UsageError, match="two rows for unet instructions counted on Authentic"):
            load_baseline(duplicated, family=family)
    # with several sets, a count that names no family cannot be placed
    nameless = write(tmp_path, [*table, *[{**r, "cpu_family": None}
                                          for r in _counted("cunet-film", 9_000_000, "", "x")]])
    with pytest.raises(UsageError, match="of cunet-film names none"):
        load_baseline(nameless)


def test_update_replaces_this_familys_counts_and_keeps_the_others(tmp_path, monkeypatch, capsys):
    """`--update` counts this machine's family again (stubbed here: no valgrind run) and keeps the
    sets of other families as they were."""
    from bench.context import cpu_family
    from bench.gate import run as gate_run

    here = cpu_family()
    path = write(tmp_path, [
        {**r, "resolution": 64} for r in rows() if r["metric"] == "params" and r["model"] == "cunet"]
        + _counted("cunet", 70_000_000, "Elsewhere 1/1", "Some CPU")
        + _counted("cunet", 80_000_000, here, "this CPU"))
    monkeypatch.setattr(gate_run.callgrind, "unavailable", lambda: None)
    monkeypatch.setattr(gate_run, "measure_instruction_rows", lambda spec, env, stamp: [
        {**_counted("cunet", 75_000_000, here, "this CPU")[0], "timestamp": stamp}])
    assert main(["check", "--update", "--baseline", str(path), "--models", "cunet",
                 "--skip-latency"]) == 0
    out = capsys.readouterr().out
    assert "instruction counts of other CPU families kept" in out
    # the changes printed are this family's: 80 M -> 75 M, not the other family's 70 M
    change = next(line for line in out.splitlines() if "instructions" in line and "| cunet" in line)
    assert "80" in change and "75" in change and "70" not in change, change
    frame = pd.read_csv(path)
    counted = frame[frame["metric"] == "instructions"]
    totals = counted[counted["stat"] == "value"].set_index("cpu_family")["value"]
    assert totals.to_dict() == {here: 75_000_000, "Elsewhere 1/1": 70_000_000}
    assert len(counted[counted["cpu_family"] == "Elsewhere 1/1"]) == 2  # its function row too
