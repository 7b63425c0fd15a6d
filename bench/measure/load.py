"""How busy the machine was while a timing ran, so that a time taken beside other work is flagged.

On the shared 2-core machines this suite runs on, one other busy process beside a timing slows it
by tens of per cent, and nothing in the times themselves says so: a slow median looks like a slow
model. So every timed cell records, over its timed window, how much of the machine's cores OTHER
processes held, and flags the timing when that share is above `BUSY_SHARE`.

The share comes from two pairs of counters (psutil), read before and after the window:

- the system-wide CPU times (`psutil.cpu_times()`, summed over every core): busy seconds are the
  total less idle and iowait (a core waiting on I/O is free to run the timing). Steal, the time the
  hypervisor gave this VM's cores to other guests, is part of busy: it is time the timing could not
  have; it is also reported on its own (`steal_share`);
- this process's own CPU times (`psutil.Process().cpu_times()`, user + system, all its threads).

other share = (system busy seconds - own seconds) / (wall seconds x logical cores), in [0, 1].

The kernel counts system CPU time in ticks (10 ms on Linux), so over a window of a fraction of a
second the share is coarse; over the seconds a timed cell takes it is a few per cent at worst.
Without psutil (or where its counters cannot be read) nothing is measured and nothing raises: the
load is None and the rows' load columns are empty.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

BUSY_SHARE = 0.25
"""A timing during which other processes held more than this share of the machine's logical cores
is flagged busy (its times are not to be trusted). A quarter: on a 2-core machine one busy process
beside the timing is 0.5, well above it; a few background daemons are well below it."""


@dataclass(frozen=True)
class MachineLoad:
    """The machine's load over one timed window."""

    other_share: float
    """Share of the machine's cores held by OTHER processes during the window: (system-wide busy
    CPU seconds - this process's CPU seconds) / (wall seconds x cores), clipped to [0, 1]."""
    steal_share: float
    """Share of core time the hypervisor gave to other guests (steal seconds / (wall x cores));
    0 where the platform reports no steal. Already counted in `other_share`."""
    cores: int
    """Logical cores of the machine (`psutil.cpu_count()`)."""
    wall_s: float
    """Wall seconds of the window."""

    @property
    def busy(self) -> bool:
        """Other work held more than `BUSY_SHARE` of the cores: the timing is not to be trusted."""
        return self.other_share > BUSY_SHARE

    def describe(self) -> str:
        """One short phrase, e.g. "other work held 48 % of 2 cores (steal 0 %)"."""
        return (f"other work held {100 * self.other_share:.0f} % of {self.cores} cores "
                f"(steal {100 * self.steal_share:.0f} %)")


class _Counters(NamedTuple):
    wall: float
    busy: float
    steal: float
    own: float
    cores: int


class LoadWindow:
    """What `measure_load` yields: `result` is the window's `MachineLoad` once the block has
    exited (None before, and where psutil is missing or its counters cannot be read)."""

    def __init__(self) -> None:
        self.result: MachineLoad | None = None


def _read_counters() -> _Counters | None:
    """The counters now, or None without psutil (or where they cannot be read)."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        system = psutil.cpu_times()
        own = psutil.Process().cpu_times()
        cores = psutil.cpu_count(logical=True) or 1
    except Exception:  # noqa: BLE001 - a sandbox that hides /proc: no load, never a failed timing
        return None
    fields: dict[str, Any] = system._asdict()
    # Linux counts guest time inside user and nice already: summing it too would count it twice.
    total = sum(v for k, v in fields.items() if k not in ("guest", "guest_nice"))
    idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
    return _Counters(wall=time.perf_counter(), busy=total - idle, steal=fields.get("steal", 0.0),
                     own=own.user + own.system, cores=int(cores))


def _load_between(start: _Counters, end: _Counters) -> MachineLoad | None:
    wall = end.wall - start.wall
    if wall <= 0:
        return None
    capacity = wall * end.cores
    other = ((end.busy - start.busy) - (end.own - start.own)) / capacity
    steal = (end.steal - start.steal) / capacity
    return MachineLoad(other_share=min(max(other, 0.0), 1.0), steal_share=min(max(steal, 0.0), 1.0),
                       cores=end.cores, wall_s=wall)


@contextmanager
def measure_load() -> Iterator[LoadWindow]:
    """Measure the machine's load over the block: `with measure_load() as load: ...`, then
    `load.result` is a `MachineLoad` (None without psutil). Never raises on its own account."""
    window = LoadWindow()
    start = _read_counters()
    try:
        yield window
    finally:
        end = _read_counters() if start is not None else None
        if start is not None and end is not None:
            window.result = _load_between(start, end)


def load_columns(load: MachineLoad | None) -> dict[str, Any]:
    """The row columns `load_other`, `load_steal` and `busy` (`bench.results.schema.Row`) of a
    timed row; all None where the load was not measured."""
    if load is None:
        return {"load_other": None, "load_steal": None, "busy": None}
    return {"load_other": round(load.other_share, 3), "load_steal": round(load.steal_share, 3),
            "busy": load.busy}
