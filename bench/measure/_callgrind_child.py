"""The process valgrind runs for `bench.measure.instructions`: `python -m bench.measure._callgrind_child
REQUEST.json`.

Builds every requested model, calls each once uninstrumented (warm-up), switches callgrind's
instrumentation on once, and brackets one forward of each model with collection on/off, dumping
the counters after each (one dump file per model, in request order). Writes
`{"measured": [labels in dump order], "failed": {label: reason}}` to the request's result file;
outside valgrind the client requests are no-ops, so this runs (uselessly) anywhere.

Imports only torch and the `models` package found first on the path (that of another git revision
under `bench check --against`), and bench's input builder.
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path
from typing import Any


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def main(argv: list[str]) -> int:
    request: dict[str, Any] = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result_file = Path(request["result"])
    import torch

    from bench.measure.workload import denoiser_inputs
    from models.source import model_source

    torch.set_num_threads(1)
    torch.manual_seed(int(request["seed"]))
    shim = ctypes.CDLL(request["shim"])
    channels, resolution = int(request["channels"]), int(request["resolution"])
    x, t = denoiser_inputs((channels, resolution, resolution), batch=int(request["batch"]),
                           timestep=500, seed=int(request["seed"]))
    nets: dict[str, Any] = {}
    failed: dict[str, str] = {}
    with torch.inference_mode():
        for job in request["jobs"]:
            try:
                source = model_source(job["model"], job["kwargs"]).with_channels(channels)
                net = source.build().eval()
                for _ in range(int(request["warmup"])):
                    net(x, t)
                nets[job["label"]] = net
            except Exception as error:  # noqa: BLE001 - one model's failure is its row's reason
                failed[job["label"]] = _reason(error)
        measured = []
        shim.bench_start_instrumentation()
        for label, net in nets.items():
            shim.bench_toggle_collect()
            net(x, t)
            shim.bench_toggle_collect()
            shim.bench_dump_stats_at(label.encode())
            measured.append(label)
    result_file.write_text(json.dumps({"measured": measured, "failed": failed}), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
