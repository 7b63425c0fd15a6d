"""`python -m bench profile`: where each denoiser's time goes, per block and per kind of work.

Profiles `--calls` calls (after `--warmup` unprofiled ones) of one or more models with
torch.profiler and writes, to `--out DIR`:
- profile.csv: tidy rows with the same context columns as measurements.csv (metrics
  `profile_call_ms`, `profile_block_ms` / `profile_block_pct` with the block in `stat`,
  `profile_kind_ms` with the kind in `stat`, and on CUDA `profile_gpu_busy_ms`,
  `profile_launch_bound_pct`, `profile_kernels`, `profile_mean_kernel_us`);
- trace-<model>.json: a Chrome/Perfetto trace (open in ui.perfetto.dev or chrome://tracing);
- profile.png: stacked bars of the block categories of every profiled model;
and prints the per-block table. Times include the profiler's overhead: they are never latency
measurements (use `run` for those).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.commands.values import parse_model_args
from bench.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--model", action="append", required=True, metavar="NAME",
        help="preset or factory 'package.module:callable' to profile (repeat to compare models)")
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
        help="configuration override for every profiled model, e.g. width=8 (repeatable)")
    add("--out", type=Path, default=Path("runs") / "profile", help="output directory")


def execute(args: argparse.Namespace) -> int:
    import models
    from bench.measure.modes import check_modes
    from bench.measure.workload import check_device, check_positive
    from bench.profile_run import profile_models
    from bench.results import ensure_writable_dir

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
    table, written = profile_models(
        args.model, overrides=overrides, device=dev, batch=args.batch, resolution=args.resolution,
        dtype=args.dtype, mode=args.mode, what=args.what, calls=args.calls, warmup=args.warmup,
        threads=args.threads, out_dir=args.out)
    print(table)
    print(f"{len(written)} files in {args.out} ({time.perf_counter() - started:.1f} s); profiled "
          "times include the profiler's overhead")
    return 0
