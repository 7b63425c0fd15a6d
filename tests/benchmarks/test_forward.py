"""pytest-benchmark: one denoiser forward call `model(x, t)` per preset at 1x3x64x64 on the CPU.

Kept out of the default test run (pyproject's addopts deselect the `benchmark` marker and pass
--benchmark-disable). Run, save and compare them with (see docs/regression-gate.md):

    uv run pytest tests/benchmarks -m benchmark --benchmark-enable --benchmark-save=main
    uv run pytest tests/benchmarks -m benchmark --benchmark-enable \\
        --benchmark-compare --benchmark-compare-fail=median:10%

Settings match `python -m bench check`: eval + inference_mode, one thread (BENCH_THREADS to change
it), glibc's allocator pinned, fixed seeds; pedantic mode with warm-up rounds so every preset gets
the same number of timed calls whatever its speed.
"""

from __future__ import annotations

import os

import pytest
import torch

import models
from bench.measure.allocator import steady_allocator
from bench.measure.workload import denoiser_inputs, torch_threads

THREADS = int(os.environ.get("BENCH_THREADS", "1"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
WARMUP_ROUNDS = 3
SHAPE = (3, 64, 64)

pytestmark = pytest.mark.benchmark(group="forward 1x3x64x64 cpu")


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return denoiser_inputs(SHAPE, batch=1, timestep=500, seed=0)


@pytest.mark.parametrize("name", models.available())
def test_forward(benchmark, inputs, name):
    steady_allocator()
    torch.manual_seed(0)
    net = models.build(name).eval()
    x, t = inputs
    benchmark.extra_info.update(model=name, threads=THREADS, shape=[1, *SHAPE],
                                params=sum(p.numel() for p in net.parameters()))
    with torch_threads(THREADS), torch.inference_mode():
        out = benchmark.pedantic(net, args=(x, t), rounds=ROUNDS, iterations=1,
                                 warmup_rounds=WARMUP_ROUNDS)
    assert out.shape == x.shape
