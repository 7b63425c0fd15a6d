"""Fixtures shared by several test files.

`committed_check`: the real `python -m bench check` against the committed baseline, run once per
session with `--save`, so that tests/test_gate_ci.py judges it and tests/test_gate_instructions.py
takes its instruction count of a preset from the saved rows instead of paying for another valgrind
run (about 100 s on a 2-core runner).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "results" / "baseline.csv"
CI_LATENCY_TOLERANCE_PCT = 15
"""The latency tolerance CI's gate runs at (the command's default is 10 %): why, in
tests/test_gate_ci.py's docstring."""


@dataclass(frozen=True)
class CommittedCheck:
    done: subprocess.CompletedProcess
    measured: Path
    """The rows the check measured (`--save`), in the baseline's format."""


def bench_check(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", "check", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="session")
def committed_check(tmp_path_factory) -> CommittedCheck:
    assert BASELINE.is_file(), f"{BASELINE} is missing: create it with python -m bench check --update"
    measured = tmp_path_factory.mktemp("committed-check") / "measured.csv"
    done = bench_check("--baseline", str(BASELINE), "--tolerance", str(CI_LATENCY_TOLERANCE_PCT),
                       "--save", str(measured))
    return CommittedCheck(done, measured)
