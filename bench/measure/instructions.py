"""Instruction counts of one denoiser forward: callgrind's `Ir`, measured in child processes under
valgrind, with collection switched on only around the measured call.

Why instructions: on a shared CI runner a wall-clock ratio moves with the load and between CPUs
(the suite's latency gate could not see less than a 1.5x slowdown); the number of instructions a
forward executes does not depend on the load, so a 1 % change in the work is visible.

How (measured on the 2-core VM this suite was built on, valgrind 3.19, CUDA build of torch 2.15):

- valgrind starts with instrumentation OFF (`--instr-atstart=no`): importing torch under an
  instrumenting callgrind took 155 s, uninstrumented about 32 s;
- every model is built and called once (warm-up: lazy initialisation, allocator, first-call code
  paths) before instrumentation starts, then instrumentation is switched on once
  (CALLGRIND_START_INSTRUMENTATION) and each model's measured forward is bracketed by
  CALLGRIND_TOGGLE_COLLECT and followed by CALLGRIND_DUMP_STATS_AT, one dump per model. Torch has
  the toggle built in (`torch._C._valgrind_toggle`) but not the instrumentation start, so a
  six-line shim is compiled from valgrind's own `callgrind.h` at first use (cached);
- one thread (`torch.set_num_threads(1)`, OMP/MKL set to 1), address randomisation off
  (`personality(ADDR_NO_RANDOMIZE)`, what `setarch -R` does), `PYTHONHASHSEED=0`, CUDA hidden;
- the models are spread over `processes` children (two by default: valgrind runs a program on one
  core, and the import dominates), which changes nothing in a model's count.

`torch.utils.benchmark.Timer.collect_callgrind` measures the same thing, but instruments from the
start: one collection took 143-148 s here, too slow for every preset in CI.

What a count measures: valgrind hides AVX-512 from the program, so torch's math libraries take their
AVX2 kernels; a count is the work of that code path, not of the AVX-512 one a native run on the
same CPU may take. MKL and oneDNN may choose kernels by CPU vendor, so counts are compared only
within one CPU family (`bench.context.cpu_family`).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UsageError

INSTALL_HINT = "install valgrind (Debian/Ubuntu: apt-get install -y valgrind)"
CALLGRIND_HEADER = Path("/usr/include/valgrind/callgrind.h")
SHIM_SOURCE = """\
#include <valgrind/callgrind.h>
void bench_start_instrumentation(void) { CALLGRIND_START_INSTRUMENTATION; }
void bench_toggle_collect(void) { CALLGRIND_TOGGLE_COLLECT; }
void bench_dump_stats_at(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""
"""The client requests the child needs; valgrind's macros compile to no-ops outside valgrind."""

LABEL = "AVX2 path under valgrind"
"""Said with every count: what code path the instructions are of."""
TOP_FUNCTIONS = 40
"""Functions kept per model (by exclusive Ir), so that a failing gate can say where work grew."""
CHILD_MODULE = "bench.measure._callgrind_child"
ADDR_NO_RANDOMIZE = 0x0040000


@dataclass(frozen=True)
class InstructionJob:
    """One model to count: its name (a preset or a factory reference) and overrides/kwargs."""

    label: str
    model: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InstructionCount:
    label: str
    instructions: int
    """callgrind Ir of the measured forward (collection on only around it)."""
    functions: tuple[tuple[str, int], ...]
    """(function [object], exclusive Ir), largest first, at most TOP_FUNCTIONS."""


@dataclass(frozen=True)
class InstructionRun:
    counts: dict[str, InstructionCount]
    failed: dict[str, str]
    """Label -> why it was not counted."""
    valgrind: str
    seconds: float
    processes: int


def unavailable() -> str | None:
    """Why instruction counts cannot be measured here (one line naming what to install), or None."""
    if not sys.platform.startswith("linux"):
        return f"instruction counts need valgrind on Linux (this is {sys.platform})"
    for tool in ("valgrind", "callgrind_annotate"):
        if shutil.which(tool) is None:
            return f"instruction counts need valgrind ('{tool}' not found): {INSTALL_HINT}"
    if not CALLGRIND_HEADER.is_file():
        return f"instruction counts need valgrind's header {CALLGRIND_HEADER}: {INSTALL_HINT}"
    if shutil.which(os.environ.get("CC", "gcc")) is None:
        return ("instruction counts need a C compiler for a six-line callgrind shim: install gcc "
                "(Debian/Ubuntu: apt-get install -y gcc)")
    return None


def valgrind_version() -> str:
    done = subprocess.run(["valgrind", "--version"], capture_output=True, text=True, timeout=30)
    return done.stdout.strip() or "valgrind"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "beyond-u-bench"


def shim_library() -> Path:
    """The compiled client-request shim (built at first use, atomically, keyed by its source and
    the header); UsageError when it cannot be built."""
    reason = unavailable()
    if reason:
        raise UsageError(reason)
    digest = hashlib.sha256(SHIM_SOURCE.encode() + CALLGRIND_HEADER.read_bytes()).hexdigest()[:16]
    target = _cache_dir() / f"callgrind-shim-{digest}.so"
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # no writable home: a per-user folder in the temporary directory
        target = Path(tempfile.gettempdir()) / f"beyond-u-bench-{os.getuid()}" / target.name
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        source = Path(work) / "shim.c"
        source.write_text(SHIM_SOURCE, encoding="utf-8")
        built = Path(work) / "shim.so"
        done = subprocess.run([os.environ.get("CC", "gcc"), "-O1", "-shared", "-fPIC", "-o",
                               str(built), str(source)], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no output"])[0]
            raise UsageError(f"could not compile the callgrind shim ({first}): {INSTALL_HINT}")
        os.replace(built, target)
    return target


def _no_aslr() -> None:
    """Child-side: turn off address randomisation (the personality flag `setarch -R` sets)."""
    libc = ctypes.CDLL(None, use_errno=True)
    current = libc.personality(0xFFFFFFFF)
    libc.personality(current | ADDR_NO_RANDOMIZE)


def _split(jobs: Sequence[InstructionJob], processes: int) -> list[list[InstructionJob]]:
    """Round-robin split, so that each child gets a mix of large and small models."""
    parts = [list(jobs[i::processes]) for i in range(processes)]
    return [p for p in parts if p]


def count_instructions(
    jobs: Sequence[InstructionJob],
    *,
    channels: int = 3,
    resolution: int = 32,
    batch: int = 1,
    seed: int = 0,
    warmup: int = 1,
    processes: int | None = None,
    python_path: Sequence[str | os.PathLike[str]] = (),
    timeout_s: float = 900.0,
) -> InstructionRun:
    """Count the instructions of one forward of every job's model (see the module docstring).

    `python_path`: directories put first on the children's import path (the `models` package of
    another git revision, for `bench check --against`). Models that fail to build or to run are
    in `failed` with the reason; a missing valgrind is a UsageError naming the package.
    """
    if not jobs:
        return InstructionRun({}, {}, "", 0.0, 0)
    labels = [job.label for job in jobs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"instruction jobs need distinct labels, got {labels}")
    shim = shim_library()
    version = valgrind_version()
    processes = max(1, min(processes or min(2, os.cpu_count() or 1), len(jobs)))
    started = time.perf_counter()
    counts: dict[str, InstructionCount] = {}
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as work:
        children = []
        for index, part in enumerate(_split(jobs, processes)):
            request = {"jobs": [{"label": j.label, "model": j.model, "kwargs": dict(j.kwargs)}
                                for j in part],
                       "channels": channels, "resolution": resolution, "batch": batch,
                       "seed": seed, "warmup": warmup, "shim": str(shim)}
            children.append(_start_child(Path(work), index, request, python_path))
        for index, (process, part_jobs, out_prefix, result_file) in enumerate(children):
            try:
                _, stderr = process.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                for job in part_jobs:
                    failed[job["label"]] = f"valgrind child {index} ran past {timeout_s:.0f} s"
                continue
            result = _read_result(result_file)
            failed.update(result.get("failed", {}))
            measured = result.get("measured", [])
            if process.returncode != 0 and not measured:
                why = result.get("message") or _last_line(stderr)
                for job in part_jobs:
                    failed.setdefault(job["label"], f"valgrind child failed: {why}")
                continue
            dumps = _dump_files(out_prefix)
            for position, label in enumerate(measured):
                if position >= len(dumps):
                    failed[label] = "callgrind wrote no dump for it"
                    continue
                counts[label] = _parse_dump(label, dumps[position])
    return InstructionRun(counts, failed, version, time.perf_counter() - started, len(children))


def _start_child(work: Path, index: int, request: Mapping[str, Any],
                 python_path: Sequence[str | os.PathLike[str]]):
    request_file = work / f"request{index}.json"
    result_file = work / f"result{index}.json"
    request_file.write_text(json.dumps({**request, "result": str(result_file)}), encoding="utf-8")
    out_prefix = work / f"callgrind{index}.out"
    # `-P` keeps the working directory from going first on the path: `python_path` (another
    # revision's `models`) must win; then the caller's directory (a user's package or a factory
    # file named relative to it), this tree, and the caller's PYTHONPATH.
    repo_root = Path(__file__).resolve().parents[2]
    path = [str(Path(p).resolve()) for p in python_path] + [os.getcwd(), str(repo_root)]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTHONHASHSEED": "0",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONDONTWRITEBYTECODE": "1"}
    command = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--instr-atstart=no",
               f"--callgrind-out-file={out_prefix}", "--quiet",
               sys.executable, "-P", "-m", CHILD_MODULE, str(request_file)]
    process = subprocess.Popen(command, cwd=os.getcwd(), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, preexec_fn=_no_aslr)
    return process, list(request["jobs"]), out_prefix, result_file


def _read_result(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()
             and not line.startswith("==")]
    return lines[-1] if lines else "no output"


def _dump_files(prefix: Path) -> list[Path]:
    """The per-model dumps `<prefix>.1`, `<prefix>.2`, ... in dump order (the final, empty
    `<prefix>` of the exit is not one)."""
    found = []
    for path in prefix.parent.glob(prefix.name + ".*"):
        suffix = path.name[len(prefix.name) + 1:]
        if suffix.isdigit():
            found.append((int(suffix), path))
    return [path for _, path in sorted(found)]


_TOTALS = re.compile(r"^totals:\s+(\d+)", re.MULTILINE)
_FUNCTION_LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.+?)\s*$")


def _parse_dump(label: str, path: Path) -> InstructionCount:
    text = path.read_text(encoding="utf-8", errors="replace")
    found = _TOTALS.search(text)
    if not found:
        raise RuntimeError(f"callgrind dump {path.name} has no totals line")
    return InstructionCount(label, int(found.group(1)), top_functions(path))


def top_functions(path: Path, limit: int = TOP_FUNCTIONS) -> tuple[tuple[str, int], ...]:
    """callgrind_annotate's own per-function totals (exclusive Ir) of one dump, largest first:
    ('function [object file]', Ir)."""
    # No --show-percs=no: older callgrind_annotate lacks it; the pattern skips the percentages.
    done = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(path)],
                          capture_output=True, text=True, timeout=300)
    functions: list[tuple[str, int]] = []
    in_table = False
    for line in done.stdout.splitlines():
        if "file:function" in line:
            in_table = True
            continue
        if not in_table:
            continue
        if line.startswith("-----") and functions:
            break
        match = _FUNCTION_LINE.match(line)
        if match and "PROGRAM TOTALS" not in line:
            functions.append((function_name(match.group(2)), int(match.group(1).replace(",", ""))))
    merged: dict[str, int] = {}
    for name, count in functions:
        merged[name] = merged.get(name, 0) + count
    ranked = sorted(merged.items(), key=lambda item: -item[1])
    return tuple(ranked[:limit])


def function_name(annotated: str, width: int = 160) -> str:
    """'???:mkl_sgemm_kernel [/x/libtorch_cpu.so]' -> 'mkl_sgemm_kernel [libtorch_cpu.so]': the file
    part dropped (often '???'), the object file by its base name, long C++ names cut."""
    text = annotated.strip()
    obj = ""
    if text.endswith("]") and " [" in text:
        text, _, obj = text[:-1].rpartition(" [")
        obj = f" [{Path(obj).name}]"
    head, sep, rest = text.partition(":")
    if sep and not rest.startswith(":") and (head == "???" or "/" in head or "." in head):
        text = rest  # callgrind_annotate's 'file:' prefix (C++ names hold '::', never ':x')
    if len(text) > width:
        text = text[: width - 3] + "..."
    return text + obj
