"""A damaged results file or baseline never becomes a number: a CSV cut short is refused by
`report` (one line naming the line, exit 2), set aside and re-measured on resume, and a cut or
malformed baseline is a one-line error of `check`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main

MATRIX = """
[matrix]
models = ["unet", "cunet"]
resolutions = [32]
metrics = ["params", "macs_thop", "nfe"]
threads = 1

[overrides]
unet = { width = 8, attn_heads = 1, attn_dim_head = 8 }
cunet = { width = 4 }
"""


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("damaged")
    config = root / "tiny.toml"
    config.write_text(MATRIX)
    assert main(["run", "--config", str(config), "--out", str(root / "run"), "--no-progress",
                 "--reports", str(root / "reports")]) == 0
    return root


def _copy_run(measured: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("measurements.csv", "environment.json"):
        (run / name).write_bytes((measured / "run" / name).read_bytes())
    return run


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("cut", [7, 40, 90])
def test_report_refuses_a_file_cut_short(measured, tmp_path, capsys, cut: int) -> None:
    run = _copy_run(measured, tmp_path)
    text = (run / "measurements.csv").read_text()
    (run / "measurements.csv").write_text(text[: len(text) - cut])  # a copy that stopped mid-line
    assert main(["report", "--results", str(run), "--out", str(tmp_path / "rep")]) == 2
    line = _one_error_line(capsys)
    lines = len(text[: len(text) - cut].splitlines())
    assert f"line {lines}:" in line and "damaged" in line
    assert not (tmp_path / "rep").exists() or not list((tmp_path / "rep").iterdir())


def test_resume_sets_damaged_rows_aside_and_measures_their_cell_again(measured, tmp_path, capsys) -> None:
    run = _copy_run(measured, tmp_path)
    full = pd.read_csv(run / "measurements.csv")
    text = (run / "measurements.csv").read_text()
    (run / "measurements.csv").write_text(text[:-60])
    last_cell = full["cell"].iloc[-1]
    config = tmp_path / "tiny.toml"
    config.write_text(MATRIX)
    assert main(["run", "--config", str(config), "--out", str(run), "--no-progress",
                 "--reports", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "set aside" in out and "cell(s) to re-measure" in out
    assert "1 cells measured" in out
    assert list(run.glob("measurements.csv.damaged-*"))
    again = pd.read_csv(run / "measurements.csv")
    key = ["cell", "model", "metric", "stat"]
    assert sorted(map(tuple, again[key].values)) == sorted(map(tuple, full[key].values))
    assert again.loc[again["cell"] == last_cell, "value"].tolist() == \
        full.loc[full["cell"] == last_cell, "value"].tolist()


@pytest.mark.parametrize(("metric", "value", "message"), [
    ("params", "12x4", "not a number"),
    ("params", "1234.5", "not an integer"),
    ("macs_thop", "-5", "is negative"),
])
def test_report_refuses_impossible_values(measured, tmp_path, capsys, metric, value, message) -> None:
    run = _copy_run(measured, tmp_path)
    frame = pd.read_csv(run / "measurements.csv", dtype=str, keep_default_na=False)
    index = frame.index[frame["metric"] == metric][0]
    frame.loc[index, "value"] = value
    frame.to_csv(run / "measurements.csv", index=False)
    assert main(["report", "--results", str(run), "--out", str(tmp_path / "rep")]) == 2
    line = _one_error_line(capsys)
    assert f"line {index + 2}" in line and message in line


def test_check_refuses_a_baseline_cut_short(tmp_path, capsys) -> None:
    text = Path("results/baseline.csv").read_text()
    for cut in (3, 25):
        path = tmp_path / f"baseline-{cut}.csv"
        path.write_text(text[: len(text) - cut])
        assert main(["check", "--baseline", str(path), "--skip-latency"]) == 2
        line = _one_error_line(capsys)
        assert "damaged or cut short" in line and f"line {len(text[:-cut].splitlines())}" in line


def test_one_row_definition_names_every_column() -> None:
    """The typed row is the column list; a context column that does not exist is refused."""
    import pytest

    from bench.results.schema import COLUMNS, Row, context_row

    assert COLUMNS == list(Row.__annotations__)
    env = {"versions": {"torch": "2.x"}, "git_commit": "abc", "hostname": "h"}
    row = context_row(env, model="unet", device="cpu", batch_size=1)
    assert row["torch"] == "2.x" and row["host"] == "h" and set(row) <= set(COLUMNS)
    with pytest.raises(ValueError, match="batchsize"):
        context_row(env, model="unet", batchsize=1)


def _header_cut(text: str) -> str:
    return text[:200]  # `head -c 200 measurements.csv`: a header cut mid-line, no rows


def _header_only(text: str) -> str:
    return text.splitlines(keepends=True)[0]  # a full header line, no rows


@pytest.mark.parametrize(("damage", "reason"), [(_header_cut, "ends inside its header line"),
                                                (_header_only, "holds a header but no rows")])
def test_report_refuses_a_file_without_rows(measured, tmp_path, capsys, damage, reason) -> None:
    """Not tables of 'not measured' with exit 0: the rows such a file held are lost, not absent."""
    run = _copy_run(measured, tmp_path)
    path = run / "measurements.csv"
    path.write_text(damage(path.read_text()))
    assert main(["report", "--results", str(run), "--out", str(tmp_path / "rep")]) == 2
    line = _one_error_line(capsys)
    assert str(path) in line and reason in line and "restore it" in line and "move it away" in line
    assert not (tmp_path / "rep").exists() or not list((tmp_path / "rep").iterdir())


@pytest.mark.parametrize(("damage", "reason"), [(_header_cut, "ends inside its header line"),
                                                (_header_only, "holds a header but no rows")])
def test_resume_refuses_a_file_without_rows(measured, tmp_path, capsys, damage, reason) -> None:
    """A resumed run neither measures afresh over such a file nor rewrites it: the user decides."""
    run = _copy_run(measured, tmp_path)
    path = run / "measurements.csv"
    path.write_text(damage(path.read_text()))
    before = path.read_bytes()
    config = tmp_path / "tiny.toml"
    config.write_text(MATRIX)
    assert main(["run", "--config", str(config), "--out", str(run), "--no-progress",
                 "--reports", str(tmp_path / "rep")]) == 2
    line = _one_error_line(capsys)
    assert str(path) in line and reason in line and "move it away" in line
    assert path.read_bytes() == before and not list(run.glob("measurements.csv.damaged-*"))


def test_a_store_whose_every_row_is_set_aside_leaves_no_file(measured, tmp_path) -> None:
    """So the store itself never leaves a header without rows, which is why such a file is damage:
    the damaged copy is kept and the next run starts afresh."""
    from bench.results.store import MeasurementStore

    run = _copy_run(measured, tmp_path)
    path = run / "measurements.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1][:20])  # the only row, cut short
    store = MeasurementStore(run)
    assert store.frame.empty and not path.exists() and store.done_cells() == set()
    assert "set aside 1 row(s)" in store.notices[0]
    assert list(run.glob("measurements.csv.damaged-*"))
    assert MeasurementStore(run).frame.empty  # reopening finds nothing to refuse


def test_config_that_is_a_directory_says_so(tmp_path, capsys) -> None:
    assert main(["run", "--config", str(tmp_path), "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 2
    line = _one_error_line(capsys)
    assert "is a directory" in line and "does not exist" not in line
