"""The round-robin latency measurement (`time_round_robin`) shared by the matrix and the gate."""

from __future__ import annotations

import time

import pytest
import torch

from bench.errors import UsageError
from bench.gate import run as gate_run
from bench.gate.baseline import Context
from bench.gate.counts import gate_spec
from bench.matrix import measure_cells
from bench.matrix.cells import Cell
from bench.matrix.spec import parse_spec
from bench.measure import interleaved
from bench.measure.interleaved import InterleavePlan, time_round_robin

CPU = torch.device("cpu")


class Sleeper:
    """A call that takes a known wall time, so ratios are known in advance."""

    def __init__(self, seconds: float, fail: bool = False) -> None:
        self.seconds = seconds
        self.fail = fail
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.fail:
            raise RuntimeError("out of memory (simulated)\nsecond line")
        time.sleep(self.seconds)


def test_every_model_is_timed_in_every_round_and_ratios_are_paired():
    calls = {"slow": Sleeper(0.004), "fast": Sleeper(0.002)}
    plan = InterleavePlan(min_rounds=4, max_rounds=4, calls=2, initial_warmup=1)
    result = time_round_robin(calls, "slow", plan=plan, device=CPU)
    assert result.rounds == 4 and result.timer == "perf_counter"
    assert {name: s.n for name, s in result.stats.items()} == {"slow": 8, "fast": 8}
    assert calls["slow"].calls == 1 + 8  # one warm-up, then 4 rounds x 2 calls
    assert result.ratios["slow"] == 1.0
    assert 0.4 < result.ratios["fast"] < 0.75  # 2 ms / 4 ms, with sleep's overshoot
    assert result.stats["fast"].min_ms >= 2.0 and result.stats["slow"].median_ms >= 4.0
    assert all(len(v) == 4 for v in result.round_medians.values())
    assert result.median_ms["slow"] >= 4.0


def test_each_entry_may_have_its_own_reference():
    calls = {"a|x": Sleeper(0.002), "a|y": Sleeper(0.004), "b|y": Sleeper(0.002)}
    plan = InterleavePlan(min_rounds=3, max_rounds=3, calls=1, initial_warmup=0)
    result = time_round_robin(calls, {"a|x": "a|x", "a|y": "a|y", "b|y": "a|y"}, plan=plan,
                              device=CPU)
    assert result.ratios["a|x"] == result.ratios["a|y"] == 1.0
    assert 0.4 < result.ratios["b|y"] < 0.75
    assert 1.4 < result.ratios_to({"a|y": "a|x"})["a|y"] < 2.5  # another pairing, same rounds


def test_rounds_continue_until_the_budget_is_spent():
    calls = {"a": Sleeper(0.002), "b": Sleeper(0.002)}
    plan = InterleavePlan(min_rounds=1, max_rounds=50, calls=1, budget_s=0.04)
    result = time_round_robin(calls, "a", plan=plan, device=CPU)
    # 4 ms of timed calls per round: the 40 ms budget ends the run after about 10 rounds.
    assert 8 <= result.rounds <= 12
    capped = time_round_robin(calls, "a", plan=InterleavePlan(min_rounds=1, max_rounds=3, calls=1,
                                                              budget_s=10.0), device=CPU)
    assert capped.rounds == 3


def test_a_failing_model_is_left_out_with_its_reason():
    calls = {"ref": Sleeper(0.001), "broken": Sleeper(0.001, fail=True)}
    result = time_round_robin(calls, "ref", plan=InterleavePlan(min_rounds=2, max_rounds=2),
                              device=CPU)
    assert result.failed == {"broken": "RuntimeError: out of memory (simulated)"}
    assert set(result.stats) == {"ref"} and result.ratios == {"ref": 1.0}


def test_a_failing_reference_leaves_times_but_no_ratios():
    calls = {"ref": Sleeper(0.001, fail=True), "other": Sleeper(0.001)}
    result = time_round_robin(calls, "ref", plan=InterleavePlan(min_rounds=2, max_rounds=2),
                              device=CPU)
    assert result.ratios == {} and set(result.stats) == {"other"} and "ref" in result.failed


def test_nothing_timed_is_no_rounds_and_no_ratios():
    result = time_round_robin({"a": Sleeper(0.0, fail=True)}, "a", plan=InterleavePlan(),
                              device=CPU)
    assert result.rounds == 0 and result.stats == {} and result.ratios == {}
    assert result.ratios_to({"a": "a"}) == {}


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
        time_round_robin({"a": Sleeper(0.0)}, "b", plan=InterleavePlan(), device=CPU)


def test_the_matrix_cell_and_the_gate_time_through_one_function(monkeypatch):
    """One latency timer: the matrix's latency cell and the gate both reach `time_round_robin`
    (through `measure_cells.time_pairs`), and both take their ratios from it."""
    seen: list[list[str]] = []
    real = interleaved.time_round_robin

    def recording(calls, reference, **kwargs):
        seen.append(list(calls))
        return real(calls, reference, **kwargs)

    monkeypatch.setattr(interleaved, "time_round_robin", recording)
    overrides = {"unet": {"width": 8}, "cunet-noattn-nores": {"width": 4}}
    names = ["unet", "cunet-noattn-nores"]
    spec = parse_spec({
        "matrix": {"models": names, "resolutions": [32], "metrics": ["latency_ms"], "threads": 1},
        "overrides": overrides,
        "latency": {"warmup": 1, "calls_per_round": 1, "min_rounds": 2, "max_rounds": 2,
                    "budget_s": 0.0},
    }, name="t")
    cell = Cell("latency_ms", ("latency_ms",), "unet+cunet-noattn-nores", resolution=32,
                batch_size=1, members=tuple(names))
    rows = measure_cells.measure_latency(spec, cell)
    context = Context(resolution=32, threads=1)
    gate = gate_run._time(gate_spec(names, context, overrides), ["cunet-noattn-nores"], "unet",
                          InterleavePlan(min_rounds=2, max_rounds=2, calls=1), context)
    assert seen == [["unet|eager", "cunet-noattn-nores|eager"]] * 2
    ratio = {r["model"]: r["value"] for r in rows if r["metric"] == "latency_ratio"}
    assert ratio["unet"] == gate.ratios["unet"] == 1.0
    assert set(gate.ratios) == set(gate.median_ms) == set(ratio) and gate.reference == "unet"
