"""`python -m bench breakdown`: where each denoiser's time goes, per block and per kind of work.

Runs `--calls` calls (after `--warmup` unprofiled ones) of one or more models under torch.profiler
(`bench.measure.breakdown` measures; this module adds the context and writes files) and writes, to
`--out DIR`:
- breakdown.csv: tidy rows with the same context columns as measurements.csv (metrics
  `breakdown_call_ms`, `breakdown_block_ms` / `breakdown_block_pct` with the block in `stat`,
  `breakdown_kind_ms` with the kind in `stat`, and on CUDA `breakdown_gpu_busy_ms`,
  `breakdown_launch_bound_pct`, `breakdown_kernels`, `breakdown_mean_kernel_us`);
- trace-<model>.json: a Chrome/Perfetto trace (open in ui.perfetto.dev or chrome://tracing);
- breakdown.png: stacked bars of the block categories of every model;
and prints the per-block table. Times include the profiler's overhead: they are never latency
measurements (use `run` for those).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.commands.values import parse_model_args
from bench.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd
    import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--model", action="append", required=True, metavar="NAME",
        help="preset or factory 'package.module:callable' to break down (repeat to compare models)")
    add("--device", default="cpu", help="cpu or cuda")
    add("--batch", type=int, default=1)
    add("--resolution", type=int, default=64)
    add("--dtype", default="float32", help="float32 or bfloat16")
    add("--mode", default="eager", help="eager, compile or cudagraph (blocks are named in eager only)")
    add("--what", default="call", choices=("call", "sample-step"),
        help="one denoiser call, or one sampler step (denoiser + DDPM update)")
    add("--calls", type=int, default=5, help="profiled calls (default 5)")
    add("--warmup", type=int, default=3, help="unprofiled calls first (default 3)")
    add("--threads", type=int, default=None, help="torch threads on the CPU (default: all)")
    add("--model-arg", action="append", default=[], metavar="KEY=VALUE",
        help="configuration override for every model, e.g. width=8 (repeatable)")
    add("--out", type=Path, default=Path("runs") / "breakdown", help="output directory")


def execute(args: argparse.Namespace) -> int:
    import models
    from bench.measure.modes import check_modes
    from bench.measure.workload import check_device, check_positive
    from bench.results.paths import ensure_writable_dir

    dev = check_device(args.device)
    for name in ("batch", "resolution", "calls"):
        check_positive(f"--{name}", getattr(args, name))
    if args.warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {args.warmup}")
    if args.dtype not in ("float32", "bfloat16"):
        raise UsageError(f"--dtype {args.dtype!r} is unknown; use float32 or bfloat16")
    check_modes([args.mode])
    if args.mode == "cudagraph" and dev.type != "cuda":
        raise UsageError("--mode cudagraph needs --device cuda (and a CUDA machine)")
    overrides = parse_model_args(args.model_arg)
    for name in args.model:  # unknown model, bad override; a user's model: one tiny forward
        models.model_source(name, overrides).check(channels=3, resolution=args.resolution)
    ensure_writable_dir(args.out, "--out")
    started = time.perf_counter()
    table, written = break_down_models(
        args.model, overrides=overrides, device=dev, batch=args.batch, resolution=args.resolution,
        dtype=args.dtype, mode=args.mode, what=args.what, calls=args.calls, warmup=args.warmup,
        threads=args.threads, out_dir=args.out)
    print(table)
    print(f"{len(written)} files in {args.out} ({time.perf_counter() - started:.1f} s); profiled "
          "times include the profiler's overhead")
    return 0


def break_down_models(names: list[str], *, overrides: dict[str, Any], device: torch.device,
                      batch: int, resolution: int, dtype: str, mode: str, what: str, calls: int,
                      warmup: int, threads: int | None, out_dir: Path) -> tuple[str, list[Path]]:
    """Break down every model's call; returns the printed table and the files written."""
    import pandas as pd
    import torch

    import models
    from bench.context import run_context
    from bench.files import atomic_write_text
    from bench.measure.breakdown import breakdown_denoiser, breakdown_rows
    from bench.measure.workload import torch_threads
    from bench.report import render
    from bench.report.breakdown_report import draw_blocks
    from bench.results.keys import cell_key
    from bench.results.paths import safe_name
    from bench.results.schema import COLUMNS, context_row

    env = run_context()
    rows: list[dict[str, Any]] = []
    written: list[Path] = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with torch_threads(threads) as used:
        for name in names:
            source = models.model_source(name, overrides)
            net = source.build()
            trace = out_dir / f"trace-{safe_name(name)}.json"
            result = breakdown_denoiser(
                net, device=device, dtype=getattr(torch, dtype),
                batch=batch, resolution=resolution, mode=mode, what=what, calls=calls, warmup=warmup,
                trace_path=trace)
            written.append(trace)
            context = context_row(
                env, model=name, source=source, device=str(device), batch_size=batch,
                resolution=resolution, channels=3, dtype=dtype, mode=mode,
                threads=used if device.type == "cpu" else None, counter="torch.profiler",
                status="ok", n=calls, profile=f"breakdown ({what})",
                cell=cell_key("breakdown", name, device=str(device), resolution=resolution,
                              batch=batch, dtype=dtype, extra=(mode, what)),
                timestamp=stamp)
            rows += [{**context, **row, "method": f"{row['method']}; {'; '.join(result.notes)}"
                      if result.notes else row["method"]} for row in breakdown_rows(result)]
    frame = pd.DataFrame([{c: r.get(c) for c in COLUMNS} for r in rows], columns=COLUMNS)
    path = out_dir / "breakdown.csv"
    atomic_write_text(path, frame.to_csv(index=False))
    written.append(path)
    written.append(render.save_figure(draw_blocks(frame), out_dir / "breakdown.png"))
    return block_table(frame), written


def block_table(frame: pd.DataFrame) -> str:
    """The per-block table printed by the command (ms and % per call, per model)."""
    from bench.measure.breakdown import BLOCK_MS, BLOCK_PCT, CALL_MS, KIND_MS, LAUNCH_BOUND_PCT

    lines = []
    for model, rows in frame.groupby("model", sort=False):
        call = rows[rows["metric"] == CALL_MS]["value"].iloc[0]
        lines.append(f"{model}: {call:.2f} ms per profiled call")
        ms = rows[rows["metric"] == BLOCK_MS].set_index("stat")["value"]
        pct = rows[rows["metric"] == BLOCK_PCT].set_index("stat")["value"]
        lines += [f"  {block:<28} {ms[block]:9.3f} ms {pct[block]:6.1f} %" for block in ms.index]
        kinds = rows[rows["metric"] == KIND_MS].set_index("stat")["value"]
        lines.append("  by kind: " + ", ".join(f"{k} {100 * v / call:.1f} %" for k, v in kinds.items()))
        busy = rows[rows["metric"] == LAUNCH_BOUND_PCT]["value"]
        if not busy.empty:
            lines.append(f"  GPU idle (launch-bound) {busy.iloc[0]:.1f} % of the call")
    return "\n".join(lines)
