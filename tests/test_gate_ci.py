"""CI's efficiency gate: the real `python -m bench check` against the committed baseline.

Counts (params, thop/fvcore MACs, FlopCounterMode FLOPs, NFE, checkpoint MiB) are compared
exactly: they do not depend on the machine, so any change to a preset fails here until the
baseline is rewritten on purpose (`python -m bench check --update`).

Latency ratios are compared within CI_TOLERANCE_PCT = 50 %, not the command's default 10 %: CI
may run on another CPU than the one that wrote the baseline, and the ratio of a wide U-Net to the
small-channel, many-evaluation cU-Nets moves between microarchitectures (vector width, cache
sizes). On one busy 2-core VM the ratios of repeated runs stayed within about +-10 %; +-30 % is
allowed for another CPU, and a ratio fails only if a confirming second run is out of tolerance
too. What it still catches: any preset becoming 1.5x slower relative to the U-Net (a Python loop
over heads, a float64 path, attention at a higher resolution), or the U-Net itself 2x slower
(every ratio falls).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "results" / "baseline.csv"
CI_TOLERANCE_PCT = 50


def test_committed_baseline_holds():
    assert BASELINE.is_file(), f"{BASELINE} is missing: create it with python -m bench check --update"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "check", "--baseline", str(BASELINE),
         "--tolerance", str(CI_TOLERANCE_PCT)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    print(done.stdout)  # pytest shows it when the assertion fails: the table of what moved
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "check passed" in done.stdout
