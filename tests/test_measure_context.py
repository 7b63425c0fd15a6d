"""Run context: versions, git commit, machine, timestamp."""

from __future__ import annotations

import datetime
import re

import torch

from bench.context import git_commit, run_context


def test_context_has_the_keys(tmp_path):
    context = run_context()
    assert {
        "versions", "git_commit", "hostname", "cpu_model", "cpu_count_logical", "torch_threads",
        "cuda_device", "timestamp_utc",
    } <= set(context)
    versions = context["versions"]
    assert set(versions) >= {"python", "torch", "torchdiffeq", "thop", "fvcore", "torch_fidelity",
                             "numpy"}
    assert versions["torch"] == torch.__version__.split("+")[0]
    commit = context["git_commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit)
    assert datetime.datetime.fromisoformat(context["timestamp_utc"]).utcoffset().total_seconds() == 0
    assert git_commit(tmp_path) is None  # outside git: None, no crash
