"""`python -m bench train`: train one denoiser on one dataset with the DDPM loss.

Runs as one process, or under torchrun for DistributedDataParallel:
    torchrun --nproc_per_node 2 -m bench train --model unet --dataset digits --width 16
Running the same command again resumes from the newest checkpoint in --out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.commands.values import parse_model_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register this command's flags."""
    from bench.train.config import TrainConfig

    d = TrainConfig(model="unet")
    add = parser.add_argument
    add("--model", required=True, help="a preset (see models.available()) or a factory "
        "'package.module:callable' / 'file.py:callable' (your own denoiser)")
    add("--dataset", default=d.dataset, help="digits (offline), mnist, celeba, lsun-church, folder")
    add("--data-root", default=None, help="dataset path (default $BENCH_DATA_DIR/<dataset>)")
    add("--resolution", type=int, default=None, help="image side (default: the dataset's)")
    add("--channels", type=int, default=None, help="1 or 3 (default: the dataset's)")
    add("--width", type=int, default=None, help="U-Net dim / cU-Net num_filters")
    add("--model-arg", action="append", default=[], metavar="KEY=VALUE",
        help="a preset override or a factory keyword argument, e.g. attn_heads=2 (repeatable)")
    add("--steps", type=int, default=d.steps, help="total optimiser steps")
    add("--batch-size", type=int, default=d.batch_size, help="global batch (split across ranks)")
    add("--lr", type=float, default=d.lr)
    add("--ema-decay", type=float, default=d.ema_decay)
    add("--ema-every", type=int, default=d.ema_every, help="update the EMA every N steps")
    add("--grad-clip", type=float, default=d.grad_clip)
    add("--prediction", default=d.prediction, help="eps or v")
    add("--schedule", default=d.schedule, help="linear, cosine or sigmoid")
    add("--hflip", action="store_true", help="random horizontal flips")
    add("--out", type=Path, default=None, help="checkpoint folder (default runs/train/<model>-<dataset>)")
    add("--seed", type=int, default=d.seed)
    add("--device", default=d.device, help="auto, cpu or cuda")
    add("--amp", action=argparse.BooleanOptionalAction, default=d.amp,
        help="bf16 autocast (CUDA only; ignored on CPU)")
    add("--checkpoint-every", type=int, default=d.checkpoint_every)
    add("--keep-checkpoints", type=int, default=d.keep_checkpoints)
    add("--limit", type=int, default=None, help="train on the first N images only")
    add("--num-workers", type=int, default=d.num_workers, help="DataLoader worker processes")
    add("--log-every", type=int, default=d.log_every)
    add("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace):
    from bench.results.paths import safe_name
    from bench.train.config import TrainConfig

    out = args.out or Path("runs") / "train" / f"{safe_name(args.model)}-{args.dataset}"
    return TrainConfig(
        model=args.model, dataset=args.dataset, out=out, data_root=args.data_root,
        resolution=args.resolution, channels=args.channels, width=args.width,
        overrides=parse_model_args(args.model_arg), steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema_decay,
        ema_every=args.ema_every, grad_clip=args.grad_clip, prediction=args.prediction,
        schedule=args.schedule, hflip=args.hflip, seed=args.seed, device=args.device,
        amp=args.amp, checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints, limit=args.limit, num_workers=args.num_workers,
        log_every=args.log_every, progress=not args.no_progress,
    )


def execute(args: argparse.Namespace) -> int:
    from bench.results.paths import ensure_writable_dir
    from bench.train import TrainingDiverged, init_distributed, train
    from bench.train.config import validate

    config = config_from_args(args)
    validate(config)
    ensure_writable_dir(config.out, "--out")
    dist = init_distributed(config.device)
    try:
        result = train(config, dist)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        dist.close()
    if dist.is_main:
        resumed = f", resumed from step {result.resumed_from}" if result.resumed_from else ""
        print(f"trained {config.model} on {config.dataset}: step {result.step}, "
              f"loss {result.loss:.4f}, {result.seconds:.1f} s{resumed}; checkpoint {result.checkpoint}")
    return 0
