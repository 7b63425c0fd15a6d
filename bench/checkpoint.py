"""The suite's ONE training-checkpoint format, and the paper's "MB" (training-checkpoint MiB).

A checkpoint is one `torch.save` of the dict

    {"format": "beyond-u-bench/1", "model": model.state_dict(),
     "schedule": diffusion.state_dict(), "ema": ema.state_dict(),
     "optimizer": optimizer.state_dict(), "step": int, "meta": dict}

where `ema` is a `torch.optim.swa_utils.AveragedModel` (EMA of parameters AND buffers) holding its
own copy of the model. Size: 4 B (model) + 4 B (EMA copy) per parameter, plus 8 B of Adam moments
per trainable parameter, i.e. about 16 B per trainable and 8 B per frozen float32 parameter.
"""

from __future__ import annotations

import copy
import os
import pickle
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from bench.errors import UsageError
from bench.files import atomic_path
from bench.units import MIB

FORMAT = "beyond-u-bench/1"
KEYS = ("format", "model", "schedule", "ema", "optimizer", "step", "meta")


def make_ema(model: nn.Module, decay: float = 0.9999) -> AveragedModel:
    """EMA copy of `model` (parameters and buffers) updated by `ema.update_parameters(model)`."""
    if not 0.0 <= decay <= 1.0:
        raise UsageError(f"EMA decay must be in [0, 1], got {decay!r}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def checkpoint_dict(
    *,
    model: nn.Module,
    diffusion: nn.Module,
    ema: AveragedModel,
    optimizer: torch.optim.Optimizer,
    step: int,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict of the suite's format (see the module docstring)."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise UsageError(f"checkpoint step must be a non-negative integer, got {step!r}")
    return {
        "format": FORMAT,
        "model": model.state_dict(),
        "schedule": diffusion.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "meta": dict(meta or {}),
    }


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    diffusion: nn.Module,
    ema: AveragedModel,
    optimizer: torch.optim.Optimizer,
    step: int,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temp file in the same folder, then `os.replace`)."""
    target = Path(path)
    state = checkpoint_dict(
        model=model, diffusion=diffusion, ema=ema, optimizer=optimizer, step=step, meta=meta
    )
    if not target.parent.is_dir():
        raise UsageError(f"cannot write checkpoint {target}: folder {target.parent} does not exist")
    with atomic_path(target, make_parents=False) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)  # (a handle: the archive's inner name does not vary with tmp)
    return target


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint of this suite's format; UsageError (one line) for missing/corrupt/foreign."""
    source = Path(path)
    if not source.is_file():
        raise UsageError(f"checkpoint not found: {source}")
    try:
        state = torch.load(source, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile,
            AttributeError, ImportError, KeyError, TypeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"{source} is not a readable checkpoint ({reason[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise UsageError(f"{source} is not a {FORMAT} checkpoint (format: {found!r})")
    missing = [key for key in KEYS if key not in state]
    if missing:
        raise UsageError(f"{source} is an incomplete checkpoint: missing {', '.join(missing)}")
    return state


def checkpoint_mib(
    model: nn.Module,
    *,
    shape: Sequence[int] = (3, 64, 64),
    schedule: str = "sigmoid",
    prediction: str = "v",
    lr: float = 2e-4,
    ema_decay: float = 0.9999,
    diffusion: nn.Module | None = None,
    seed: int = 0,
) -> float:
    """Size in MiB (2**20 B) of a real training checkpoint of `model` after ONE optimizer step.

    Works on a deep copy: builds the diffusion (`GaussianDiffusion(schedule, prediction)` unless
    `diffusion` is given), Adam(lr, betas=(0.9, 0.99)) over the parameters and the EMA; takes one
    step of the DDPM loss on a random batch of 1 of shape (C, H, W); saves; returns the file size.
    """
    from bench.measure.train_step import make_optimizer, train_step
    from bench.measure.workload import build_diffusion, check_shape

    c, h, w = check_shape(shape)
    work = copy.deepcopy(model).cpu()
    diffusion = build_diffusion(schedule, prediction) if diffusion is None else diffusion
    optimizer = make_optimizer(work, lr)
    ema = make_ema(work, ema_decay)
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(1, c, h, w, generator=generator)
    train_step(work, diffusion, optimizer, x0, generator=generator)
    ema.update_parameters(work)
    with tempfile.TemporaryDirectory(prefix="ckpt-mib-") as folder:
        path = save_checkpoint(
            Path(folder) / "probe.pt",
            model=work, diffusion=diffusion, ema=ema, optimizer=optimizer, step=1,
        )
        return path.stat().st_size / MIB

