"""Shared building blocks of a measurement: validated settings, denoiser inputs, one training step.

Every measuring function describes its input as `shape = (C, H, W)` of ONE sample plus a separate
`batch`; the denoiser is called as `model(x, t)` with `x` of shape (batch, C, H, W) and `t` an
int64 tensor of shape (batch,).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from bench.errors import UsageError

"""Adam betas of the authors' training recipe (docs/paper.md, "Training and sampling settings")."""


def check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """Return `shape` as a (C, H, W) tuple of positive ints, or raise UsageError."""
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise UsageError(f"input shape must be (C, H, W) integers, got {shape!r}") from None
    if len(dims) != 3 or any(d <= 0 for d in dims):
        raise UsageError(f"input shape must be 3 positive integers (C, H, W), got {shape!r}")
    return dims  # type: ignore[return-value]


def check_positive(name: str, value: int) -> int:
    """Return `value` as an int >= 1, or raise UsageError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_device(device: str | torch.device) -> torch.device:
    """Parse a device string; raise UsageError when it is malformed or CUDA is not available."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}: use 'cpu' or 'cuda[:index]'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} requested but CUDA is not available here")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"device {device!r} is not supported: use 'cpu' or 'cuda[:index]'")
    return dev


def denoiser_inputs(
    shape: Sequence[int],
    *,
    batch: int = 1,
    timestep: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return `(x, t)`: x ~ N(0, 1) of shape (batch, C, H, W), t filled with `timestep` (int64)."""
    c, h, w = check_shape(shape)
    check_positive("batch", batch)
    if not 0 <= int(timestep) < 1000:
        raise UsageError(f"timestep must be in [0, 1000), got {timestep!r}")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c, h, w, generator=generator, dtype=torch.float32)
    t = torch.full((batch,), int(timestep), dtype=torch.int64)
    return x.to(device=device, dtype=dtype), t.to(device=device)


def build_diffusion(schedule: str = "sigmoid", prediction: str = "v") -> nn.Module:
    """Build `models.diffusion.GaussianDiffusion` (imported lazily: it lives in another package)."""
    from models.diffusion import GaussianDiffusion

    return GaussianDiffusion(schedule=schedule, prediction=prediction)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Set `torch.set_num_threads(threads)` for the block (None: keep), restore afterwards."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_positive("threads", threads))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def on_device(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """`model` itself when all its tensors are already on `device` in `dtype`, else a moved copy."""
    tensors = [*model.parameters(), *model.buffers()]
    floating = [p for p in tensors if p.is_floating_point()]
    if all(p.device == device for p in tensors) and all(p.dtype == dtype for p in floating):
        return model
    return copy.deepcopy(model).to(device=device, dtype=dtype)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the block, restoring each module's own training flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag
