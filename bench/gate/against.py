"""`bench check --against REV`: the working tree (A) and a git revision (B) measured in one run, so
that "does this change regress against main?" needs neither a stored baseline nor a quiet machine.

- B is the revision's `models` package, checked out in a temporary `git worktree`; both sides are
  measured by THIS tree's harness (`bench`), as asv measures every commit with one benchmark
  suite: what is compared is the denoisers, not the measuring code.
- Counts and instruction counts of each side are measured by one `bench check --update` child
  process per side (the revision's `models` first on its path), written to a temporary baseline,
  and compared with the gate's own rules (B as the baseline): counts exactly, instructions within
  --instructions-tolerance. Both sides run on this CPU, so every instruction count is comparable.
- Latency: `pairs` pairs of processes run alternately (A B, B A, A B, ...), each timing every
  model round-robin; a model's verdict is the median over pairs of (A's median / B's median in
  the same pair) against --tolerance, and the range of those ratios is shown. Adjacent processes
  see nearly the same machine, so load that hits a pair hits both sides; but one process differs
  from the next by more than one interleaved run does (memory layout, caches: the same small
  cU-Net measured 20 % apart in two processes here), so use several pairs. A failure while a
  timing process was busy is 'inconclusive (busy)'.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import models
from bench.context import REPO_ROOT
from bench.errors import UsageError
from bench.gate import compare as cmp
from bench.gate.baseline import load_baseline
from bench.gate.run import GateOptions, validate_tolerance

TIMING_CHILD = "bench.gate._timing_child"


@dataclass(frozen=True)
class Side:
    """One side of the comparison: its label and the directories put first on its import path."""

    label: str
    python_path: tuple[str, ...] = ()


@dataclass
class AgainstResult:
    revision: str
    commit: str
    findings: list[cmp.Finding]
    models: list[str]
    notes: list[str]
    seconds: dict[str, float]
    pair_ratios: dict[str, list[float]] = field(default_factory=dict)
    function_changes: dict[str, list[cmp.FunctionChange]] = field(default_factory=dict)
    loads: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(f.failed for f in self.findings)


def _git(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as error:
        raise UsageError(f"--against needs git ({error})") from None


def resolve_revision(revision: str) -> str:
    """The commit `revision` names; UsageError (one line) when it names none."""
    if not revision or revision.startswith("-"):
        raise UsageError(f"--against {revision!r}: give a git revision, e.g. HEAD~1 or main")
    if _git("rev-parse", "--git-dir").returncode != 0:
        raise UsageError(f"--against needs a git checkout; {REPO_ROOT} is not one")
    done = _git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    if done.returncode != 0 or not done.stdout.strip():
        raise UsageError(f"--against {revision}: no such commit in this repository (try HEAD~1, a "
                         "branch or a commit hash; a shallow clone may lack older commits)")
    return done.stdout.strip()


@contextlib.contextmanager
def revision_models(commit: str) -> Iterator[Path]:
    """A directory whose only entry `models` is the revision's `models` package (a temporary git
    worktree, removed afterwards): put first on a child's path, it replaces this tree's models."""
    with tempfile.TemporaryDirectory(prefix="bench-against-") as work:
        tree = Path(work) / "tree"
        done = _git("worktree", "add", "--detach", str(tree), commit)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["git worktree add failed"])[-1]
            raise UsageError(f"--against: cannot check out {commit[:12]} ({reason})")
        try:
            if not (tree / "models" / "__init__.py").is_file():
                raise UsageError(f"--against: revision {commit[:12]} has no models package")
            overlay = Path(work) / "overlay"
            overlay.mkdir()
            (overlay / "models").symlink_to(tree / "models", target_is_directory=True)
            yield overlay
        finally:
            _git("worktree", "remove", "--force", str(tree))
            _git("worktree", "prune")


def _child_env(side: Side) -> dict[str, str]:
    path = [*side.python_path, os.getcwd(), str(REPO_ROOT)]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _override_flags(overrides: Mapping[str, Mapping[str, Any]]) -> list[str]:
    flags = []
    for model, values in overrides.items():
        for key, value in values.items():
            text = json.dumps(value) if not isinstance(value, str) else value
            flags += ["--override", f"{model}:{key}={text}"]
    return flags


def _start_counts(side: Side, names: Sequence[str], options: GateOptions, out: Path
                  ) -> subprocess.Popen:
    """Start measuring the counts and instruction counts of `names` on one side, into a baseline
    file at `out` (a `bench check --update` child with the side's path)."""
    command = [sys.executable, "-P", "-m", "bench", "check", "--update", "--skip-latency",
               "--baseline", str(out), "--models", ",".join(names),
               *_override_flags(options.overrides)]
    if options.skip_instructions:
        command.append("--skip-instructions")
    return subprocess.Popen(command, cwd=os.getcwd(), env=_child_env(side), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish_counts(side: Side, process: subprocess.Popen) -> None:
    stdout, stderr = process.communicate(timeout=3600)
    if process.returncode != 0:
        lines = [ln for ln in (stderr + stdout).splitlines() if ln.strip()]
        raise UsageError(f"--against: measuring {side.label} failed: "
                         f"{lines[-1] if lines else f'exit {process.returncode}'}")


def _time_once(side: Side, names: Sequence[str], options: GateOptions, work: Path,
               index: int) -> dict[str, Any]:
    request = work / f"timing-{index}.json"
    result = work / f"timing-{index}-result.json"
    plan = options.plan
    request.write_text(json.dumps({
        "models": list(names), "overrides": {k: dict(v) for k, v in options.overrides.items()},
        "rounds": plan.min_rounds, "calls": plan.calls, "result": str(result)}), encoding="utf-8")
    done = subprocess.run([sys.executable, "-P", "-m", TIMING_CHILD, str(request)], cwd=os.getcwd(),
                          env=_child_env(side), capture_output=True, text=True, timeout=1800)
    if done.returncode != 0 or not result.is_file():
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        raise UsageError(f"--against: timing {side.label} failed: "
                         f"{lines[-1] if lines else f'exit {done.returncode}'}")
    return json.loads(result.read_text(encoding="utf-8"))


def paired_verdicts(a_runs: Sequence[Mapping[str, float]], b_runs: Sequence[Mapping[str, float]],
                    tolerance: float) -> tuple[list[cmp.Finding], dict[str, list[float]]]:
    """Per model: the median over pairs of A's time / B's time (pair i = A_i, B_i) within
    `tolerance` of 1 (a Finding with baseline 1.0 and the median as `now`), and every pair's
    ratio."""
    findings, ratios = [], {}
    for name in a_runs[0]:
        pairs = [a[name] / b[name] for a, b in zip(a_runs, b_runs, strict=True)
                 if name in a and name in b and b[name] > 0]
        if not pairs:
            continue
        ratios[name] = pairs
        findings.append(cmp.compare_ratio(name, 1.0, statistics.median(pairs), tolerance))
    return findings, ratios


def run_against(revision: str, options: GateOptions, pairs: int = 5) -> AgainstResult:
    """Measure the working tree and `revision` in one run and compare them (see module doc)."""
    tolerance = validate_tolerance(options.tolerance_pct)
    validate_tolerance(options.instructions_tolerance_pct, "--instructions-tolerance")
    if not isinstance(pairs, int) or pairs < 1:
        raise UsageError(f"--pairs must be a positive integer, got {pairs!r}")
    commit = resolve_revision(revision)
    names = models.in_model_order(list(options.models or models.available()))
    unknown = [n for n in names if not models.is_model_name(n)]
    if unknown:
        raise UsageError(f"unknown model(s) {', '.join(unknown)}; available: "
                         f"{', '.join(models.available())}, or 'package.module:callable'")
    seconds: dict[str, float] = {}
    notes: list[str] = []
    with revision_models(commit) as overlay, tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        work = Path(tmp)
        a_side, b_side = Side("the working tree"), Side(f"{revision}", (str(overlay),))
        started = time.perf_counter()
        # Both sides at once: counts do not depend on the load, and valgrind runs each child on
        # one core, so two sides fill a 2-core machine no worse than one side's two children.
        b_run = _start_counts(b_side, names, options, work / "b.csv")
        a_run = _start_counts(a_side, names, options, work / "a.csv")
        try:
            _finish_counts(b_side, b_run)
            _finish_counts(a_side, a_run)
        finally:
            for process in (a_run, b_run):
                if process.poll() is None:
                    process.kill()
        seconds["counts and instructions"] = time.perf_counter() - started
        before, after = load_baseline(work / "b.csv"), load_baseline(work / "a.csv")
        findings = cmp.compare(before.values, after.values, tolerance=tolerance,
                               tolerances={cmp.INSTRUCTIONS: options.instructions_tolerance_pct
                                           / 100.0})
        findings = [f for f in findings if f.metric != cmp.LATENCY_RATIO]
        moved = {f.model: cmp.function_changes(before.functions.get(f.model, {}),
                                               after.functions.get(f.model, {}))
                 for f in findings if f.metric == cmp.INSTRUCTIONS and f.failed
                 and f.now is not None}
        ratios: dict[str, list[float]] = {}
        loads: list[dict[str, Any]] = []
        if options.skip_latency:
            notes.append("latency not compared (--skip-latency)")
        else:
            started = time.perf_counter()
            a_runs, b_runs = [], []
            for index in range(pairs):
                # A B, B A, A B, ...: neither side always runs first (after the other's caches).
                order = (a_side, b_side) if index % 2 == 0 else (b_side, a_side)
                timed = {side.label: _time_once(side, names, options, work, 2 * index + k)
                         for k, side in enumerate(order)}
                a, b = timed[a_side.label], timed[b_side.label]
                a_runs.append(a["median_ms"])
                b_runs.append(b["median_ms"])
                loads += [a.get("load") or {}, b.get("load") or {}]
            latency, ratios = paired_verdicts(a_runs, b_runs, tolerance)
            seconds["latency"] = time.perf_counter() - started
            busy = [load for load in loads if load.get("busy")]
            if busy:
                latency = [cmp.Finding(f.model, f.metric, f.baseline, f.now, cmp.INCONCLUSIVE,
                                       "timed on a busy machine") if f.failed else f
                           for f in latency]
                notes.append(f"BUSY: {len(busy)} of {len(loads)} timing processes ran while other "
                             f"work held more than a quarter of the cores (e.g. "
                             f"{busy[0].get('describe', '')}); a latency change is inconclusive")
            findings += latency
    return AgainstResult(revision, commit, findings, names, notes, seconds, ratios, moved, loads)
