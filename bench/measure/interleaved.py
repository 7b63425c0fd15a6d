"""Per-call latency of several models measured in ONE interleaved (round-robin) run.

On a shared machine the load changes from second to second: measured on the 2-core VM this suite
was built on, the median of 2.6-second windows of one model's calls ranged from 61 to 89 ms within
one process, and the same model measured one after another in back-to-back processes differed by
up to 37 %. Two models timed one after the other therefore see different loads, and their ratio is
noise. Here every round times a few calls of every model, in an order rotated from round to round,
so load that hits a round hits every model in it:

- each model's statistics (median, p90, min) are over all its timed calls, which are spread over
  the same stretch of time as every other model's;
- its ratio to the reference is the median over rounds of (its round median / the reference's
  round median of the SAME round), which discards rounds that a burst hit unevenly.

Rounds go on until `min_rounds` are done and the time budget is spent, or `max_rounds` are done.
A model that fails its first (warm-up) call, say out of memory at a large batch, is left out with
its reason; the others are still timed.

The C allocator is pinned first (`steady_allocator`): glibc serves large blocks with mmap and
moves that threshold up as the process frees large blocks, so whether a model's big temporaries
cost fresh page faults on every call depended on what the process had done before.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from bench.errors import UsageError, failure_reason
from bench.measure.allocator import steady_allocator
from bench.measure.latency import LatencyStats, stats_of, timer_for
from bench.measure.workload import (
    check_device,
    check_positive,
    denoiser_inputs,
    eval_mode,
    on_device,
    torch_threads,
)


@dataclass(frozen=True)
class InterleavePlan:
    min_rounds: int = 7
    """Rounds always done; every round times every model."""
    max_rounds: int = 7
    """Rounds at most (equal to `min_rounds` for a fixed number of rounds)."""
    calls: int = 3
    """Timed calls per model and round (the round's value is their median, which also discards a
    first call slowed by caches that the previous model filled)."""
    budget_s: float = 0.0
    """Timed seconds (all models together) after which no new round starts once `min_rounds` are
    done."""
    warmup: int = 0
    """Untimed calls before a model's timed calls in each round. Measured on a loaded 2-core VM,
    one warm-up call per round made the ratios no steadier and the run a third longer."""
    initial_warmup: int = 3
    """Untimed calls of every model before the first round (allocator, thread pool, lazy init)."""

    def __post_init__(self) -> None:
        for name in ("min_rounds", "max_rounds", "calls"):
            check_positive(name, getattr(self, name))
        for name in ("warmup", "initial_warmup"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(f"{name} must be a non-negative integer, got {value!r}")
        if self.min_rounds > self.max_rounds:
            raise UsageError(f"min_rounds ({self.min_rounds}) exceeds max_rounds ({self.max_rounds})")
        if not isinstance(self.budget_s, int | float) or not self.budget_s >= 0:
            raise UsageError(f"budget_s must be >= 0 seconds, got {self.budget_s!r}")


@dataclass(frozen=True)
class InterleavedLatency:
    reference: str | None
    """The model the ratios are taken to; None when it failed (then there are no ratios)."""
    stats: dict[str, LatencyStats]
    """Model -> statistics over all its timed calls."""
    ratios: dict[str, float]
    """Model -> median over rounds of (model's round median / reference's round median)."""
    round_medians: dict[str, list[float]]
    """Model -> its median of every round, in round order."""
    rounds: int
    plan: InterleavePlan
    threads: int
    failed: dict[str, str] = field(default_factory=dict)
    """Model -> why it was left out (its warm-up call raised)."""

    @property
    def median_ms(self) -> dict[str, float]:
        """Model -> median over rounds of its round medians."""
        return {name: statistics.median(values) for name, values in self.round_medians.items()}


def round_orders(names: Sequence[str], rounds: int) -> list[list[str]]:
    """The order of every round: `names` rotated by one more place each round, so that no model
    always runs first (or always right after the same neighbour)."""
    count = len(names)
    return [[names[(start + i) % count] for i in range(count)] for start in range(rounds)]


def paired_ratios(per_round: Sequence[Mapping[str, float]], reference: str | Mapping[str, str]
                  ) -> dict[str, float]:
    """Median over rounds of each entry's time divided by its reference's time in that round.

    `reference`: one name for every entry, or a mapping entry -> its own reference (entries whose
    reference is missing from the rounds get no ratio)."""
    if not per_round:
        raise UsageError("no latency rounds to summarise")
    names = list(per_round[0])
    refs = {name: reference for name in names} if isinstance(reference, str) else dict(reference)
    return {name: statistics.median(r[name] / r[refs[name]] for r in per_round)
            for name in names if refs.get(name) in per_round[0]}


@dataclass(frozen=True)
class RoundRobin:
    """Times of several calls timed round-robin (see the module docstring)."""

    calls: dict[str, list[float]]
    """Entry -> every timed call in milliseconds."""
    per_round: list[dict[str, float]]
    """Per round: entry -> its median in that round."""
    failed: dict[str, str]
    """Entry -> why it was left out (its warm-up call raised)."""


def round_robin(calls: Mapping[str, Callable[[], object]], *, plan: InterleavePlan,
                device: torch.device) -> RoundRobin:
    """Warm every call up, then time them round-robin until the plan says stop. The caller sets
    threads, inference mode and eval mode; a call whose warm-up raises is left out."""
    timed_call = timer_for(device)
    works = dict(calls)
    failed: dict[str, str] = {}
    for name, fn in list(works.items()):
        try:
            for _ in range(max(plan.initial_warmup, 1)):
                fn()
        except Exception as error:  # noqa: BLE001 - one model's failure must not stop the rest
            failed[name] = failure_reason(error)
            del works[name]
            if device.type == "cuda":
                torch.cuda.empty_cache()
    names = list(works)
    times: dict[str, list[float]] = {name: [] for name in names}
    per_round: list[dict[str, float]] = []
    spent = 0.0
    for order in round_orders(names, plan.max_rounds) if names else []:
        if len(per_round) >= plan.min_rounds and spent >= plan.budget_s:
            break
        medians = {}
        for name in order:
            fn = works[name]
            for _ in range(plan.warmup):
                fn()
            round_times = [timed_call(fn, device) for _ in range(plan.calls)]
            times[name] += round_times
            spent += sum(round_times) / 1e3
            medians[name] = statistics.median(round_times)
        per_round.append({name: medians[name] for name in names})
    return RoundRobin(calls=times, per_round=per_round, failed=failed)


def interleaved_latency(
    nets: Mapping[str, nn.Module],
    reference: str,
    *,
    plan: InterleavePlan = InterleavePlan(),
    batch: int = 1,
    channels: int = 3,
    resolution: int = 64,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    threads: int | None = None,
    timestep: int = 500,
) -> InterleavedLatency:
    """Time one call `net(x, t)` of every net round-robin (eval, `torch.inference_mode()`); see the
    module docstring. `reference` must be one of `nets`."""
    if reference not in nets:
        raise UsageError(f"the latency reference '{reference}' is not among the timed models")
    dev = check_device(device)
    shape = (check_positive("channels", channels),) + (check_positive("resolution", resolution),) * 2
    x, t = denoiser_inputs(shape, batch=batch, timestep=timestep, device=dev, dtype=dtype)
    steady_allocator()
    works = {name: on_device(net, dev, dtype) for name, net in nets.items()}
    with contextlib.ExitStack() as stack:
        used = stack.enter_context(torch_threads(threads))
        stack.enter_context(torch.inference_mode())
        for net in works.values():
            stack.enter_context(eval_mode(net))
        timed = round_robin({name: (lambda net=net: net(x, t)) for name, net in works.items()},
                            plan=plan, device=dev)
    return summarise(timed, reference, plan=plan, threads=used, device=dev)


def summarise(timed: RoundRobin, reference: str, *, plan: InterleavePlan, threads: int,
              device: torch.device) -> InterleavedLatency:
    """Statistics and same-run ratios of a round-robin timing."""
    timer = "cuda-event" if device.type == "cuda" else "perf_counter"
    names = list(timed.calls)
    ok_reference = reference if reference in names else None
    return InterleavedLatency(
        reference=ok_reference,
        stats={name: stats_of(values, timer) for name, values in timed.calls.items()},
        ratios=paired_ratios(timed.per_round, reference) if ok_reference and timed.per_round else {},
        round_medians={name: [r[name] for r in timed.per_round] for name in names},
        rounds=len(timed.per_round),
        plan=plan,
        threads=threads,
        failed=timed.failed,
    )
