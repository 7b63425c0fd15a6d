"""Per-call latency of several models measured in ONE interleaved run, as ratios to a reference.

On a shared machine the load changes from second to second, so absolute times of two runs (or of
two models measured one after the other) are not comparable. The gate therefore times the models
round-robin: each round times a few calls of every model, in an order rotated from round to round,
and divides each model's median by the reference's median of the SAME round. Load that hits a
round hits every model in it; the median over rounds of these paired ratios discards the rounds
that a burst of load hit unevenly.

The C allocator is pinned first (`steady_allocator`): glibc serves large blocks with mmap and
moves that threshold up as the process frees large blocks, so whether a model's big temporaries
(a 32x32 attention matrix is 16 MiB) cost fresh page faults on every call depended on what the
process had done before. Measured on a 2-core VM: cunet-attn5 ran at 0.85 x unet in a fresh
process and at 0.66 x unet after one training step had run in it.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from bench.errors import UsageError
from bench.measure.allocator import steady_allocator
from bench.measure.latency import denoiser_latency


@dataclass(frozen=True)
class LatencyPlan:
    rounds: int = 7
    """Rounds of the round-robin; every round times every model."""
    calls: int = 3
    """Timed calls per model and round (the round's value is their median, which also discards a
    first call slowed by caches that the previous model filled)."""
    warmup: int = 0
    """Untimed calls before a model's timed calls in each round. Measured on a loaded 2-core VM,
    one warm-up call per round made the ratios no steadier and the run a third longer."""
    initial_warmup: int = 3
    """Untimed calls of every model before the first round (allocator, thread pool, lazy init)."""


@dataclass(frozen=True)
class InterleavedLatency:
    reference: str
    ratios: dict[str, float]
    """Model -> median over rounds of (model's round median / reference's round median)."""
    median_ms: dict[str, float]
    """Model -> median over rounds of its round medians (absolute, for information)."""
    plan: LatencyPlan


def round_orders(names: Sequence[str], rounds: int) -> list[list[str]]:
    """The order of every round: `names` rotated by one more place each round, so that no model
    always runs first (or always right after the same neighbour)."""
    count = len(names)
    return [[names[(start + i) % count] for i in range(count)] for start in range(rounds)]


def paired_ratios(per_round: Sequence[Mapping[str, float]], reference: str) -> dict[str, float]:
    """Median over rounds of each model's time divided by the reference's time in that round."""
    if not per_round:
        raise UsageError("no latency rounds to summarise")
    names = list(per_round[0])
    return {name: statistics.median(r[name] / r[reference] for r in per_round) for name in names}


def interleaved_latency(
    nets: Mapping[str, nn.Module],
    reference: str,
    *,
    plan: LatencyPlan = LatencyPlan(),
    batch: int = 1,
    channels: int = 3,
    resolution: int = 64,
    device: str = "cpu",
    threads: int | None = None,
) -> InterleavedLatency:
    """Time every net of `nets` (which must include `reference`) round-robin; see the module doc."""
    if reference not in nets:
        raise UsageError(f"the latency reference '{reference}' is not among the timed models")
    if plan.rounds < 1 or plan.calls < 1:
        raise UsageError(f"latency rounds and calls must be >= 1, got {plan.rounds}, {plan.calls}")

    def median_ms(net: nn.Module, warmup: int, calls: int) -> float:
        result = denoiser_latency(
            net, batch=batch, channels=channels, resolution=resolution, device=device,
            threads=threads, warmup=warmup, min_repeats=calls, max_repeats=calls, budget_s=0.0,
        )
        return result.stats.median_ms

    steady_allocator()
    for net in nets.values():
        median_ms(net, plan.initial_warmup, 1)
    per_round = []
    for order in round_orders(list(nets), plan.rounds):
        times = {name: median_ms(nets[name], plan.warmup, plan.calls) for name in order}
        per_round.append({name: times[name] for name in nets})
    absolute = {name: statistics.median(r[name] for r in per_round) for name in nets}
    return InterleavedLatency(reference, paired_ratios(per_round, reference), absolute, plan)
