"""The run's environment as a plain dict (versions, git commit, machine), cheap to call."""

from __future__ import annotations

import datetime
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

DISTRIBUTIONS = {
    "torch": "torch",
    "torchdiffeq": "torchdiffeq",
    "thop": "thop",
    "fvcore": "fvcore",
    "torch_fidelity": "torch-fidelity",
    "numpy": "numpy",
}
REPO_ROOT = Path(__file__).resolve().parents[1]
THREADING_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OMP_PROC_BIND", "OMP_PLACES", "GOMP_SPINCOUNT",
                 "KMP_BLOCKTIME", "KMP_AFFINITY", "MKL_NUM_THREADS")
"""Environment variables that change CPU timings (OpenMP/MKL thread pools); recorded when set."""


def package_versions() -> dict[str, str | None]:
    """Installed versions (importlib.metadata) of the measuring stack; None when missing."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in DISTRIBUTIONS.items():
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = None
    return versions


def git_commit(root: str | os.PathLike[str] = REPO_ROOT) -> str | None:
    """HEAD commit of the tree at `root`, + "-dirty" with uncommitted changes; None outside git."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        # A copy of the tree without .git (e.g. shipped to a remote GPU machine) can say which
        # commit it is through the environment.
        return os.environ.get("BENCH_GIT_COMMIT") or None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit + ("-dirty" if status else "")


def cpu_model() -> str | None:
    """CPU model name from /proc/cpuinfo (Linux), else `platform.processor()`; None if unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def cpu_family() -> str | None:
    """Vendor and family/model numbers of the CPU ("GenuineIntel 6/143", "AuthenticAMD 25/1") from
    /proc/cpuinfo, the key within which instruction counts are compared; None where unknown."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
    except OSError:
        return None
    vendor = fields.get("vendor_id")
    if not vendor:
        return None
    return f"{vendor} {fields.get('cpu family', '?')}/{fields.get('model', '?')}"


def run_context() -> dict[str, Any]:
    """Versions, git commit, host, CPU, core counts, torch threads, CUDA device, UTC timestamp."""
    import torch

    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:
        physical = None
    cuda = torch.cuda.is_available()
    return {
        "versions": package_versions(),
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_family": cpu_family(),
        "cpu_count_logical": os.cpu_count(),
        "cpu_count_physical": physical,
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "threading_env": {k: os.environ[k] for k in THREADING_ENV if k in os.environ},
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
        "timestamp_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
