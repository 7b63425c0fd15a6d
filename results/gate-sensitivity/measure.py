"""How well the efficiency gate resolves a change: determinism, sensitivity and cost of the
instruction gate, beside the latency gate, alone and beside two CPU hogs.

    uv run python results/gate-sensitivity/measure.py     # resumable; appends to runs.csv

1. determinism: `count_instructions` of every preset's small configuration (the gate's
   instruction part), 5 runs alone and 5 beside two hogs;
2. sensitivity: `bench check` on a user factory (`tests/gate_factories.py:cunet_extra_ops`, the
   cU-Net at width 4 with `extra_ops` more elementwise additions after every ODE-function
   evaluation), against a baseline written at extra_ops=0: the instruction gate (default 1 %)
   and the latency gate (default 10 %), each 5 runs alone and 5 beside two hogs, for the changed
   model (extra_ops=1, about +2 % of the instructions) and the unchanged one (extra_ops=0).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import models  # noqa: E402
from bench.context import run_context  # noqa: E402
from bench.gate.baseline import INSTRUCTION_CONTEXT  # noqa: E402
from bench.measure.instructions import InstructionJob, count_instructions  # noqa: E402
from models.source import model_source  # noqa: E402

RUNS = HERE / "runs.csv"
FIELDS = ["experiment", "case", "hogs", "run", "model", "value", "verdict", "change_pct",
          "seconds", "timestamp"]
FACTORY = "tests/gate_factories.py:cunet_extra_ops"
REFERENCE = "cunet"
REPEATS = 5


@contextlib.contextmanager
def hogs(count: int):
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(1.0 if count else 0.0)
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def done_keys() -> set[tuple[str, str, str, str]]:
    if not RUNS.is_file():
        return set()
    with RUNS.open(newline="") as handle:
        return {(r["experiment"], r["case"], r["hogs"], r["run"]) for r in csv.DictReader(handle)}


def append(rows: list[dict]) -> None:
    new = not RUNS.is_file()
    with RUNS.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k) for k in FIELDS})
        handle.flush()
        os.fsync(handle.fileno())


def stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def determinism(done) -> None:
    jobs = [InstructionJob(name, name, model_source(name).small().arguments)
            for name in models.available()]
    for hog_count in (0, 2):
        for run in range(REPEATS):
            key = ("determinism", "presets", str(hog_count), str(run))
            if key in done:
                continue
            with hogs(hog_count):
                started = time.perf_counter()
                result = count_instructions(jobs, resolution=INSTRUCTION_CONTEXT.resolution)
                seconds = time.perf_counter() - started
            append([{"experiment": "determinism", "case": "presets", "hogs": hog_count, "run": run,
                     "model": name, "value": result.counts[name].instructions if name in
                     result.counts else None, "verdict": result.failed.get(name, "ok"),
                     "seconds": round(seconds, 1), "timestamp": stamp()}
                    for name in models.available()])
            print(f"determinism hogs={hog_count} run={run}: {seconds:.1f} s", flush=True)


def bench(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", "check", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)


def summary_change(stdout: str, model: str, column: int) -> str | None:
    """The change cell (column index) of `model`'s line in the summary table."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells and cells[0] == model:
            return cells[column]
    return None


def sensitivity(done) -> None:
    baseline = HERE / "factory-baseline.csv"
    if not baseline.is_file():
        made = bench("--update", "--baseline", str(baseline), "--models", f"{REFERENCE},{FACTORY}",
                     "--reference", REFERENCE, "--rounds", "21")
        if made.returncode != 0:
            raise SystemExit(made.stdout + made.stderr)
    for gate, flags, column in (("instructions", ["--skip-latency"], 2),
                                ("latency", ["--skip-instructions"], 6)):
        for case, extra in (("changed", ["--override", f"{FACTORY}:extra_ops=1"]),
                            ("unchanged", [])):
            for hog_count in (0, 2):
                for run in range(REPEATS):
                    key = (f"sensitivity-{gate}", case, str(hog_count), str(run))
                    if key in done:
                        continue
                    with hogs(hog_count):
                        started = time.perf_counter()
                        out = bench("--baseline", str(baseline), "--models", f"{REFERENCE},{FACTORY}",
                                    *flags, *extra)
                        seconds = time.perf_counter() - started
                    verdict = {0: "pass", 1: "FAIL"}.get(out.returncode, f"exit {out.returncode}")
                    if gate == "latency" and "inconclusive (busy)" in out.stdout:
                        verdict += " (inconclusive: busy)"
                    change = summary_change(out.stdout, FACTORY, column)
                    append([{"experiment": f"sensitivity-{gate}", "case": case, "hogs": hog_count,
                             "run": run, "model": FACTORY, "verdict": verdict,
                             "change_pct": re.sub(r"[ %+]", "", change or "") or None,
                             "seconds": round(seconds, 1), "timestamp": stamp()}])
                    print(f"{gate} {case} hogs={hog_count} run={run}: {verdict} {change} "
                          f"{seconds:.1f} s", flush=True)


def main() -> None:
    env = HERE / "environment.json"
    if not env.is_file():
        env.write_text(json.dumps(run_context(), indent=2, default=str) + "\n")
    done = done_keys()
    sensitivity(done)
    determinism(done)


if __name__ == "__main__":
    main()
