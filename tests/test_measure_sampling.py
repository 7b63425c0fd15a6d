"""Time per sample = wall time of a whole sampling run / batch, after one warm-up run."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from bench.measure.sampling import time_per_sample


class StandInDiffusion(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("betas", torch.linspace(1e-4, 0.02, 1000))


def test_per_sample_time_divides_run_time_by_batch():
    runs: list[dict] = []

    def fake_sample(model, diffusion, shape, *, steps, sampler, seed, device, dtype):
        runs.append({"steps": steps, "shape": shape, "sampler": sampler, "seed": seed})
        time.sleep(0.01 * steps)
        return torch.zeros(shape)

    result = time_per_sample(
        nn.Identity(), steps=3, batch=2, channels=1, resolution=4, sampler="ddim",
        repeats=3, seed=5, diffusion=StandInDiffusion(), sample_fn=fake_sample,
    )
    assert [r["steps"] for r in runs] == [1, 3, 3, 3]  # 1-step warm-up, then 3 timed runs
    assert runs[1]["shape"] == (2, 1, 4, 4) and runs[1]["sampler"] == "ddim"
    assert runs[1]["seed"] == 5
    assert result.n == 3 and result.steps == 3 and result.batch == 2
    assert 0.015 <= result.min_s <= result.median_s <= result.p90_s < 0.5  # 30 ms / 2 samples


def test_real_sampler_runs():
    pytest.importorskip("models.diffusion")

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)

        def forward(self, x, t):
            return self.conv(x)

    result = time_per_sample(Tiny(), steps=2, batch=1, channels=1, resolution=4, repeats=1)
    assert result.n == 1 and result.median_s > 0
