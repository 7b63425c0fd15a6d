"""The prepared GPU check (.ci/gpu-check) rehearsed on the CPU: its argument handling, the parts'
refusal without CUDA, the suite part, and the output layout that comes back from a GPU machine.
CUDA is hidden from it, so that on a GPU machine it rehearses too instead of measuring."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "gpu-check"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="the GPU check is a bash script that needs coreutils' timeout")


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(["bash", str(SCRIPT), "--python", sys.executable,
                           "--results-root", str(tmp_path / "results"), *args],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize(("args", "named"), [
    (["--parts", "where,fid"], "unknown part 'fid'"),
    (["--budget", "ten"], "--budget must be whole seconds"),
    (["--device-name", "H 200"], "--device-name must be lower-case"),
    (["--fast"], "unknown argument '--fast'"),
    (["--parts"], "--parts needs a value"),
    (["--results-root", "my results"], "--results-root must be a non-empty path without spaces"),
])
def test_bad_arguments_are_refused_in_one_line(tmp_path: Path, args: list[str], named: str) -> None:
    done = _run(tmp_path, *args)
    assert done.returncode == 2
    assert named in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "parts.tsv").exists()


def test_a_cpu_rehearsal_refuses_the_gpu_parts_and_runs_the_suite(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny" / "test_tiny.py"
    tiny.parent.mkdir()
    tiny.write_text("def test_one():\n    assert 1 + 1 == 2\n")
    done = _run(tmp_path, "--parts", "where,suite", "--pytest-args", f"{tiny} -p no:xdist")
    out = tmp_path / "out"
    assert done.returncode == 1, done.stdout + done.stderr  # a part was refused
    rows = [line.split("\t") for line in (out / "parts.tsv").read_text().splitlines()]
    assert rows[0] == ["part", "exit_code", "status", "seconds", "cap_s"]
    assert [(r[0], r[1], r[2]) for r in rows[1:]] == [("where", "2", "refused"), ("suite", "0", "ok")]
    assert "measures only on cuda" in (out / "where.log").read_text()
    assert "1 passed" in (out / "suite.log").read_text()
    env = (out / "env.txt").read_text()
    assert "cuda_available: False" in env
    assert "missing_imports: none" in env
    assert "results in" in done.stdout and "gpu-no-gpu" in done.stdout
    assert not (tmp_path / "results").exists()  # refused before writing anything
    assert sorted(p.name for p in out.iterdir()) == ["env.txt", "parts.tsv", "suite.log",
                                                      "where.log"]


def test_the_dry_run_prints_every_command_in_order(tmp_path: Path) -> None:
    done = _run(tmp_path, "--dry-run", "--device-name", "h200", "--parts", "where,gpu,mnist-paper")
    assert done.returncode == 0, done.stderr
    commands = [line for line in done.stdout.splitlines() if line.startswith("+ ")]
    assert [c.split("--profile ")[1].split()[0] for c in commands] == \
        ["where-gpu", "gpu", "gpu", "gpu", "mnist-paper"]
    assert "--model unet --model cunet --model cunet-attn5" in commands[1]
    assert "--model ddpm-cifar10" in commands[2]
    assert all(str(tmp_path / "results" / "gpu-h200") in c for c in commands[:4])
    assert str(tmp_path / "results" / "mnist-paper-h200") in commands[4]
