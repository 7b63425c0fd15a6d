"""SIGTERM is a clean stop like Ctrl-C: one line, exit 143, finished cells kept, and no memory-probe
child left behind; a probe child also dies with a parent killed by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

MATRIX = """
[matrix]
models = ["unet"]
resolutions = [32]
metrics = ["params", "peak_infer_mib"]
batch_sizes = [1, 2, 4, 8]
threads = 1

[overrides]
unet = { width = 8 }
"""


def _start(tmp_path: Path) -> subprocess.Popen:
    config = tmp_path / "m.toml"
    config.write_text(MATRIX)
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    return subprocess.Popen([sys.executable, "-m", "bench", "run", "--config", str(config), "--out",
                             str(tmp_path / "out"), "--no-progress"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_probe(parent: psutil.Process, timeout: float = 120.0) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in parent.children(recursive=True):
            try:
                if "_memprobe" in " ".join(child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    pytest.fail("no memory probe started")


def _running(process: psutil.Process) -> bool:
    """Alive and not a zombie (an orphan killed in a container may wait unreaped)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_stop_during_a_memory_probe_leaves_no_child(tmp_path: Path, sig: signal.Signals) -> None:
    run = _start(tmp_path)
    try:
        probe = _wait_for_probe(psutil.Process(run.pid))
        run.send_signal(sig)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    deadline = time.monotonic() + 1.0  # a probe on its own runs for seconds
    while _running(probe) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _running(probe), "the memory probe outlived its parent"
    if sig == signal.SIGTERM:
        assert run.returncode == 143
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert lines[-1].startswith("terminated (SIGTERM): finished cells are kept")
        assert not any("Traceback" in line for line in lines)
        rows = pd.read_csv(tmp_path / "out" / "measurements.csv")
        assert "params" in set(rows["metric"])  # the finished cell is kept
