"""One timing process of `bench check --against`: `python -m bench.gate._timing_child REQUEST.json`.

Times every requested model round-robin with the gate's own latency measurement (the matrix
latency cell's `time_pairs`, eager mode, one thread, 64x64, batch 1) and writes
`{"median_ms": {model: ms}, "load": {...}}` to the request's result file. The `models` package is
whichever comes first on the path (another revision's, for the B side).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    from bench.gate.baseline import Context
    from bench.gate.counts import gate_spec
    from bench.gate.run import DEFAULT_THREADS, GateOptions, _time
    from bench.measure.interleaved import InterleavePlan
    from bench.measure.load import load_columns

    names = list(request["models"])
    context = Context(threads=DEFAULT_THREADS)
    spec = gate_spec(names, context, request.get("overrides") or {})
    rounds = int(request.get("rounds") or GateOptions().plan.min_rounds)
    plan = InterleavePlan(min_rounds=rounds, max_rounds=rounds,
                          calls=int(request.get("calls") or 3))
    timing = _time(spec, names, names[0], plan, context)
    load = timing.load
    result = {"median_ms": timing.median_ms, "failed": timing.failed,
              "load": {**load_columns(load), "describe": load.describe() if load else ""}}
    Path(request["result"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
