"""Every command that writes checks its output locations first: a path under a regular file is a
one-line error with exit 2 before anything is measured or trained."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main

TINY = ('[matrix]\nmodels = ["unet"]\nresolutions = [32]\nmetrics = ["params"]\n'
        '[overrides]\nunet = { width = 8 }\n')


@pytest.fixture()
def blocker(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return code, err[0]


def test_run_out_and_reports(tmp_path: Path, blocker: Path, capsys) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    code, line = _run(["run", "--config", str(config), "--out", str(blocker / "out")], capsys)
    assert code == 2 and "--out" in line
    code, line = _run(["run", "--config", str(config), "--out", str(tmp_path / "o"),
                       "--reports", str(blocker / "rep")], capsys)
    assert code == 2 and "--reports" in line
    assert not (tmp_path / "o" / "measurements.csv").exists()  # nothing measured


def test_report_out(blocker: Path, capsys) -> None:
    code, line = _run(["report", "--results", "results/cpu-modes", "--out", str(blocker / "r")], capsys)
    assert code == 2 and "--out" in line and "Not a directory" in line


def test_train_out_and_resolution(tmp_path: Path, blocker: Path, capsys) -> None:
    base = ["train", "--model", "cunet", "--dataset", "digits", "--width", "4", "--steps", "1",
            "--device", "cpu", "--no-progress"]
    code, line = _run([*base, "--out", str(blocker / "t")], capsys)
    assert code == 2 and "--out" in line
    code, line = _run([*base, "--resolution", "16", "--out", str(tmp_path / "t")], capsys)
    assert code == 2 and "cannot take 16x16" in line
    assert not (tmp_path / "t").exists()  # refused before anything was written


def test_check_update_baseline(tmp_path: Path, blocker: Path, capsys) -> None:
    code, line = _run(["check", "--update", "--skip-latency", "--baseline", str(blocker / "b.csv")], capsys)
    assert code == 2 and "--baseline" in line
    code, line = _run(["check", "--update", "--skip-latency", "--baseline", str(tmp_path)], capsys)
    assert code == 2 and "is a directory" in line


def test_check_save(tmp_path: Path, blocker: Path, capsys) -> None:
    code, line = _run(["check", "--skip-latency", "--skip-instructions", "--save",
                       str(blocker / "m.csv")], capsys)
    assert code == 2 and "--save" in line
    code, line = _run(["check", "--update", "--skip-latency", "--baseline", str(tmp_path / "b.csv"),
                       "--save", str(tmp_path / "m.csv")], capsys)
    assert code == 2 and "drop --save" in line
    assert not (tmp_path / "b.csv").exists() and not (tmp_path / "m.csv").exists()
