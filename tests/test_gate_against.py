"""`bench check --against REV`: the working tree against a git revision, both measured in one run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.gate import compare as cmp
from bench.gate.against import paired_verdicts
from bench.measure import instructions

ROOT = Path(__file__).resolve().parents[1]


def bench(*argv: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", "check", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _models_dirty() -> str:
    done = subprocess.run(["git", "status", "--porcelain", "--", "models"], cwd=ROOT,
                          capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "not a git checkout"


def test_an_unknown_revision_exits_2_in_one_line():
    done = bench("--against", "no-such-revision-xyz", timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-revision-xyz" in lines[0] and "Traceback" not in done.stderr


def test_against_with_update_is_refused():
    done = bench("--against", "HEAD", "--update", timeout=120)
    assert done.returncode == 2 and "--against" in done.stderr and "Traceback" not in done.stderr


def _worktrees() -> set[str]:
    listed = subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=ROOT,
                            capture_output=True, text=True)
    return {line for line in listed.stdout.splitlines() if line.startswith("worktree ")}


def _against_head(*extra: str) -> str:
    # One pair of short timing processes: one process differs from the next by up to 20 % here
    # (memory layout, caches), so this checks the machinery at a wide latency tolerance; what the
    # default tolerance resolves is measured in results/gate-sensitivity.
    before = _worktrees()  # a run killed earlier (SIGKILL skips the clean-up) may have left one
    done = bench("--against", "HEAD", "--models", "cunet-noattn-nores", "--override",
                 "cunet-noattn-nores:width=4", "--pairs", "1", "--rounds", "3", "--tolerance", "50",
                 *extra)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-2000:]
    assert "against HEAD" in out and "check passed" in out
    assert "| cunet-noattn-nores | 6/6 equal |" in out
    assert "A/B per pair" in out  # latency ran as alternating processes
    added = _worktrees() - before
    assert not any("bench-against-" in tree for tree in added), added  # its worktree is gone
    return out


@pytest.mark.skipif(bool(_models_dirty()), reason="models/ has uncommitted changes: HEAD differs")
def test_against_head_on_a_clean_tree_passes():
    """The default run's end-to-end test of --against: worktree, counts of both sides, paired
    latency processes. Instruction counts are left out here (four valgrind processes at once cost
    minutes on a 2-core runner); the slow test below and tests/test_gate_ci.py count them."""
    out = _against_head("--skip-instructions")
    row = next(line for line in out.splitlines() if line.startswith("| cunet-noattn-nores |"))
    assert row.split("|")[3].strip() == "-"  # the instructions cell: not counted


@pytest.mark.slow
@pytest.mark.skipif(bool(_models_dirty()), reason="models/ has uncommitted changes: HEAD differs")
def test_against_head_counts_instructions_of_both_sides():
    out = _against_head()
    if instructions.unavailable() is None:
        assert "instructions" in out and "not measured" not in out


def test_paired_latency_verdicts_are_medians_of_same_pair_ratios():
    a = [{"m": 110.0, "r": 50.0}, {"m": 130.0, "r": 52.0}, {"m": 108.0, "r": 49.0}]
    b = [{"m": 100.0, "r": 50.0}, {"m": 100.0, "r": 50.0}, {"m": 100.0, "r": 50.0}]
    findings, ratios = paired_verdicts(a, b, tolerance=0.05)
    verdict = {f.model: f for f in findings}
    assert ratios["m"] == [1.1, 1.3, 1.08]
    assert verdict["m"].now == pytest.approx(1.1) and verdict["m"].verdict == cmp.REGRESSED
    assert verdict["r"].verdict == cmp.OK
