"""CI's efficiency gate: the real `python -m bench check` against the committed baseline, at its
default tolerances for counts and instructions.

- Counts (params, thop/fvcore MACs, FlopCounterMode FLOPs, NFE, checkpoint MiB) are compared
  exactly: they do not depend on the machine.
- Instruction counts (callgrind Ir of one forward of each preset's small configuration, valgrind's
  AVX2 path) are compared within 1 % with the set the baseline holds from this CPU family (it holds
  one per family that CI's runners have had: an AMD EPYC and an Intel Xeon). On a family it has no
  set from they are 'not comparable', and the second test compares the working tree with the
  parent commit, both counted now (twice the valgrind work), so that CI never goes without a
  timing-free check of the work done.
- Latency ratios are compared on the CPU that wrote the baseline within CI_LATENCY_TOLERANCE_PCT
  = 15 % (tests/conftest.py runs the check once per session, for this file and
  tests/test_gate_instructions.py), not the command's 10 %: on that CPU, from one process to the
  next, the presets' ratios moved by up to 8 % and a small cU-Net's by 11 %
  (results/gate-sensitivity: the latency gate at 10 % raised a false alarm in 1 of 5 quiet runs),
  and a ratio that moves within one process moves again in its confirming run. On another CPU
  they are 'not comparable (baseline from <CPU>)', not a false regression; a failure timed on a
  busy machine is 'inconclusive (busy)'. Executed work is what the instruction counts gate
  tightly.
"""

from __future__ import annotations

import io
import subprocess

import pandas as pd
import pytest
from conftest import BASELINE, ROOT, bench_check

from bench.measure import instructions


def test_committed_baseline_holds(committed_check):
    done = committed_check.done
    print(done.stdout)  # pytest shows it when the assertion fails: what moved
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "check passed" in done.stdout
    saved = pd.read_csv(committed_check.measured)  # --save kept what was measured
    assert set(saved["model"]) == set(pd.read_csv(BASELINE)["model"])
    assert (saved["status"] == "ok").all() and saved["cpu"].notna().all()


def _git(*args: str) -> str | None:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def _models_changed_by_head() -> set[str]:
    """Models whose committed baseline rows HEAD changed: an intended change, declared by
    rewriting the baseline, that an A/B against the parent would rightly see."""
    before = _git("show", f"HEAD~1:{BASELINE.relative_to(ROOT)}")
    after = _git("show", f"HEAD:{BASELINE.relative_to(ROOT)}")
    if before is None or after is None:
        return set()
    columns = ["model", "metric", "stat", "value"]
    old = pd.read_csv(io.StringIO(before))
    new = pd.read_csv(io.StringIO(after))
    old, new = (f[[c for c in columns if c in f.columns]].astype(str) for f in (old, new))
    merged = old.merge(new, how="outer", indicator=True)
    return set(merged.loc[merged["_merge"] != "both", "model"])


def test_instruction_counts_hold_against_the_parent_on_another_cpu_family(committed_check):
    if instructions.unavailable():
        pytest.skip(f"no instruction gate here: {instructions.unavailable()}")
    if "instruction counts not comparable" not in committed_check.done.stdout:
        pytest.skip("the committed instruction counts come from this CPU family and were checked "
                    "by test_committed_baseline_holds")
    if _git("rev-parse", "--verify", "--quiet", "HEAD~1^{commit}") is None:
        pytest.skip("no parent commit (a shallow clone): only the exact counts were checked")
    names = sorted(set(pd.read_csv(BASELINE)["model"]) - _models_changed_by_head())
    if not names:
        pytest.skip("HEAD rewrote every model's baseline rows: nothing to compare with its parent")
    done = bench_check("--against", "HEAD~1", "--skip-latency", "--models", ",".join(names))
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
