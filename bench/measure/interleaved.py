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

The machine's load over the timed rounds is recorded with the timing (`bench.measure.load`): what
same-round ratios cannot remove, other work that held the cores for the whole run, is flagged.

The C allocator is pinned first (`steady_allocator`): glibc serves large blocks with mmap and
moves that threshold up as the process frees large blocks, so whether a model's big temporaries
cost fresh page faults on every call depended on what the process had done before.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from bench.errors import UsageError, failure_reason
from bench.measure.allocator import steady_allocator
from bench.measure.latency import LatencyStats, stats_of, timer_for, timer_name
from bench.measure.load import MachineLoad, measure_load
from bench.measure.workload import check_positive


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
class RoundRobinTiming:
    """What one round-robin run measured (see the module docstring), entry by entry."""

    stats: dict[str, LatencyStats]
    """Entry -> statistics over all its timed calls."""
    ratios: dict[str, float]
    """Entry -> median over rounds of (its round median / its reference's round median); entries
    whose reference was not timed have none."""
    per_round: list[dict[str, float]]
    """Per round: entry -> its median in that round."""
    failed: dict[str, str]
    """Entry -> why it was left out (its warm-up call raised)."""
    plan: InterleavePlan
    timer: str
    """What timed the calls (`bench.measure.latency.timer_name`)."""
    load: MachineLoad | None = None
    """How busy the machine was over the timed rounds (`bench.measure.load`); None without psutil.
    `load.busy`: other work held more than `BUSY_SHARE` of the cores, the times are not to be
    trusted."""

    @property
    def rounds(self) -> int:
        return len(self.per_round)

    @property
    def round_medians(self) -> dict[str, list[float]]:
        """Entry -> its median of every round, in round order."""
        return {name: [r[name] for r in self.per_round] for name in self.stats}

    @property
    def median_ms(self) -> dict[str, float]:
        """Entry -> median over rounds of its round medians."""
        return {name: statistics.median(values) for name, values in self.round_medians.items()}

    def ratios_to(self, reference: str | Mapping[str, str]) -> dict[str, float]:
        """Same-round ratios to other references (`paired_ratios`); none when nothing was timed."""
        return paired_ratios(self.per_round, reference) if self.per_round else {}


def time_round_robin(calls: Mapping[str, Callable[[], object]], reference: str | Mapping[str, str],
                     *, plan: InterleavePlan, device: torch.device) -> RoundRobinTiming:
    """THE latency measurement of the matrix and the gate: warm every call up, time them
    round-robin until the plan says stop, and take every entry's statistics and its same-round
    ratio to `reference` (one name, which must be among `calls`, or entry -> its own reference).

    The caller sets threads, inference mode and eval mode; a call whose warm-up raises is left out
    (with its reason in `failed`)."""
    if isinstance(reference, str) and reference not in calls:
        raise UsageError(f"the latency reference '{reference}' is not among the timed models")
    steady_allocator()
    works, failed = _warmed_up(calls, plan, device)
    with measure_load() as load:  # over the timed rounds only, not the warm-up
        times, per_round = _rounds(works, plan, device)
    timer = timer_name(device)
    return RoundRobinTiming(
        stats={name: stats_of(values, timer) for name, values in times.items()},
        ratios=paired_ratios(per_round, reference) if per_round else {},
        per_round=per_round,
        failed=failed,
        plan=plan,
        timer=timer,
        load=load.result,
    )


def _warmed_up(calls: Mapping[str, Callable[[], object]], plan: InterleavePlan, device: torch.device
               ) -> tuple[dict[str, Callable[[], object]], dict[str, str]]:
    """(the calls whose warm-up ran, entry -> why the others failed)."""
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
    return works, failed


def _rounds(works: Mapping[str, Callable[[], object]], plan: InterleavePlan, device: torch.device
            ) -> tuple[dict[str, list[float]], list[dict[str, float]]]:
    """(entry -> every timed call in ms, per round: entry -> its median in that round)."""
    timed_call = timer_for(device)
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
    return times, per_round
