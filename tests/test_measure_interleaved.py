"""The round-robin latency measurement shared by the matrix and the gate."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from bench.errors import UsageError
from bench.measure.interleaved import InterleavePlan, interleaved_latency


class Sleeper(nn.Module):
    """A 'denoiser' whose call takes a known wall time, so ratios are known in advance."""

    def __init__(self, seconds: float, fail: bool = False) -> None:
        super().__init__()
        self.seconds = seconds
        self.fail = fail
        self.calls = 0
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail:
            raise RuntimeError("out of memory (simulated)\nsecond line")
        time.sleep(self.seconds)
        return x


def test_every_model_is_timed_in_every_round_and_ratios_are_paired():
    nets = {"slow": Sleeper(0.004), "fast": Sleeper(0.002)}
    plan = InterleavePlan(min_rounds=4, max_rounds=4, calls=2, initial_warmup=1)
    result = interleaved_latency(nets, "slow", plan=plan, resolution=8, threads=1)
    assert result.rounds == 4 and result.reference == "slow"
    assert {name: s.n for name, s in result.stats.items()} == {"slow": 8, "fast": 8}
    assert nets["slow"].calls == 1 + 8  # one warm-up, then 4 rounds x 2 calls
    assert result.ratios["slow"] == 1.0
    assert 0.4 < result.ratios["fast"] < 0.75  # 2 ms / 4 ms, with sleep's overshoot
    assert result.stats["fast"].min_ms >= 2.0 and result.stats["slow"].median_ms >= 4.0
    assert all(len(v) == 4 for v in result.round_medians.values())


def test_rounds_continue_until_the_budget_is_spent():
    nets = {"a": Sleeper(0.002), "b": Sleeper(0.002)}
    plan = InterleavePlan(min_rounds=1, max_rounds=50, calls=1, budget_s=0.04)
    result = interleaved_latency(nets, "a", plan=plan, resolution=8, threads=1)
    # 4 ms of timed calls per round: the 40 ms budget ends the run after about 10 rounds.
    assert 8 <= result.rounds <= 12
    capped = interleaved_latency(nets, "a", plan=InterleavePlan(min_rounds=1, max_rounds=3, calls=1,
                                                                 budget_s=10.0),
                                 resolution=8, threads=1)
    assert capped.rounds == 3


def test_a_failing_model_is_left_out_with_its_reason():
    nets = {"ref": Sleeper(0.001), "broken": Sleeper(0.001, fail=True)}
    result = interleaved_latency(nets, "ref", plan=InterleavePlan(min_rounds=2, max_rounds=2),
                                 resolution=8, threads=1)
    assert result.failed == {"broken": "RuntimeError: out of memory (simulated)"}
    assert set(result.stats) == {"ref"} and result.ratios == {"ref": 1.0}


def test_a_failing_reference_leaves_times_but_no_ratios():
    nets = {"ref": Sleeper(0.001, fail=True), "other": Sleeper(0.001)}
    result = interleaved_latency(nets, "ref", plan=InterleavePlan(min_rounds=2, max_rounds=2),
                                 resolution=8, threads=1)
    assert result.reference is None and result.ratios == {} and set(result.stats) == {"other"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"min_rounds": 0}, "min_rounds must be a positive integer"),
     ({"min_rounds": 5, "max_rounds": 2}, "exceeds max_rounds"),
     ({"budget_s": -1.0}, "budget_s must be >= 0"),
     ({"warmup": -1}, "warmup must be a non-negative integer")],
)
def test_bad_plans_are_usage_errors(kwargs, message):
    with pytest.raises(UsageError, match=message):
        InterleavePlan(**kwargs)


def test_the_reference_must_be_timed():
    with pytest.raises(UsageError, match="not among the timed models"):
        interleaved_latency({"a": Sleeper(0.0)}, "b", resolution=8)
