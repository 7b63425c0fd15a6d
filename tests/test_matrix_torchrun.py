"""The matrix sharded over two CPU processes under torchrun (gloo): rank 0 merges one
measurements.csv with exactly the cells of a one-process run, no duplicates, each row with its
rank; CPU timings are refused under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.errors import UsageError
from bench.matrix.runner import check_shardable
from bench.matrix.spec import parse_spec

MATRIX = """
[matrix]
models = ["unet", "cunet", "cunet-noattn"]
resolutions = [32]
metrics = ["params", "macs_thop", "nfe", "checkpoint_mib"]
threads = 1

[overrides]
unet = { width = 8, attn_heads = 1, attn_dim_head = 8 }
cunet = { width = 4 }
cunet-noattn = { width = 4 }
"""


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "bench", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def _cells(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path / "measurements.csv")
    return frame[["cell", "model", "metric", "stat", "value"]]


def test_two_ranks_merge_exactly_the_cells_of_one_process(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(MATRIX)
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "one"), "--no-progress",
                 "--reports", str(tmp_path / "r1")]) == 0
    done = _torchrun(["run", "--config", str(config), "--out", str(tmp_path / "two"), "--no-progress",
                      "--reports", str(tmp_path / "r2")], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = _cells(tmp_path / "one"), _cells(tmp_path / "two")
    assert not two.duplicated(["cell", "model", "metric", "stat"]).any()
    key = ["cell", "model", "metric", "stat"]
    merged = one.merge(two, on=key, suffixes=("_one", "_two"), how="outer", indicator=True)
    assert (merged["_merge"] == "both").all()
    assert (merged["value_one"] == merged["value_two"]).all()  # counts are deterministic
    ranks = pd.read_csv(tmp_path / "two" / "measurements.csv")["rank"]
    assert set(ranks) == {0, 1}
    assert not list((tmp_path / "two").glob(".measurements.rank*"))
    # a restart resumes everything, across ranks
    again = _torchrun(["run", "--config", str(config), "--out", str(tmp_path / "two"), "--no-progress",
                       "--reports", str(tmp_path / "r2")], tmp_path)
    assert again.returncode == 0 and "0 cells measured" in again.stdout


def test_cpu_timings_are_refused_under_torchrun() -> None:
    spec = parse_spec({"matrix": {"models": ["unet"], "metrics": ["params", "latency_ms"]}}, name="t")
    with pytest.raises(UsageError, match="share cores"):
        check_shardable(spec)
    check_shardable(parse_spec({"matrix": {"models": ["unet"], "metrics": ["params"]}}, name="t"))


def _tiny_spec():
    import tomllib

    return parse_spec(tomllib.loads(MATRIX), name="tiny")


def test_rank_files_left_by_a_crash_are_resumed(tmp_path: Path) -> None:
    from bench.matrix.runner import run_matrix
    from bench.results.store import MeasurementStore

    leftover = MeasurementStore(tmp_path, ".measurements.rank1.csv")
    leftover.add([{"model": "unet", "metric": "macs_thop", "value": 123.0, "status": "ok",
                   "stat": "value", "cell": "macs_thop|unet|cpu|32|1|float32|", "rank": 1}])
    run_matrix(_tiny_spec(), tmp_path, progress=False)
    frame = pd.read_csv(tmp_path / "measurements.csv")
    kept = frame[frame["cell"] == "macs_thop|unet|cpu|32|1|float32|"]
    assert list(kept["value"]) == [123.0]
    assert not list(tmp_path.glob(".measurements.rank*"))


def test_a_broken_rank_records_its_cells_as_failed(tmp_path: Path, monkeypatch) -> None:
    from bench.matrix import runner

    def broken(spec, cell):
        raise RuntimeError("CUDA error: an illegal memory access")

    monkeypatch.setattr(runner, "measure_cell", broken)
    runner.run_matrix(_tiny_spec(), tmp_path, progress=False)
    frame = pd.read_csv(tmp_path / "measurements.csv")
    assert (frame["status"] == "failed").all()
    assert frame["error"].str.startswith("rank 0 failed: RuntimeError: CUDA error").all()
    assert frame["cell"].nunique() == 3 + 3 + 2 + 3  # params, thop, nfe (cU-Nets), checkpoint
