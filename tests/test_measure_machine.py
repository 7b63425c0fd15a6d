"""Measured float32 matmul peak."""

from __future__ import annotations

import pytest
import torch

from bench.measure.machine import matmul_peak


def test_matmul_peak_is_positive_and_restores_threads():
    before = torch.get_num_threads()
    peak = matmul_peak("cpu", threads=1, size=192, repeats=2)
    assert peak.gflops > 0 and peak.size == 192 and peak.threads == 1
    assert peak.gflops == 2 * 192**3 / peak.best_s / 1e9
    assert torch.get_num_threads() == before


def test_matmul_peak_calibrates_its_size():
    peak = matmul_peak("cpu", repeats=1, target_s=0.02)
    assert 128 <= peak.size <= 8192 and peak.size % 64 == 0 and peak.gflops > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matmul_peak():
    peak = matmul_peak("cuda", repeats=2, target_s=0.05)
    assert peak.gflops > 0 and peak.threads is None and peak.device.startswith("cuda")
