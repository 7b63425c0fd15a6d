"""Input checks shared by every denoiser, so that bad input fails with one clear line instead of
a shape mismatch deep inside torch."""

from __future__ import annotations

import torch

from models.errors import ModelInputError


def check_denoiser_inputs(
    name: str,
    x: torch.Tensor,
    t: torch.Tensor,
    *,
    in_channels: int,
    multiple: int,
    num_timesteps: int,
    min_size: int | None = None,
) -> None:
    """Validate `model(x, t)` arguments.

    The range of `t` is checked only for CPU tensors, read through numpy: on CUDA reading values
    would force a device synchronisation on every call, distort latency measurements and make the
    call impossible to capture in a CUDA graph. Nothing here reads a device value.
    """
    if x.dim() != 4:
        raise ModelInputError(f"{name}: x must have shape (B, C, H, W), got {tuple(x.shape)}")
    batch, channels, height, width = x.shape
    if channels != in_channels:
        raise ModelInputError(
            f"{name}: x has {channels} channels but the model takes {in_channels}; "
            f"build it with in_channels={channels} (and out_channels)"
        )
    if height % multiple or width % multiple or height == 0 or width == 0:
        raise ModelInputError(
            f"{name}: resolution {height}x{width} is not a multiple of {multiple}, which its "
            f"down-sampling needs; use e.g. {max(multiple, min_size or 0, height // multiple * multiple)}"
        )
    if min_size and (height < min_size or width < min_size):
        raise ModelInputError(
            f"{name}: resolution {height}x{width} is too small; it needs at least {min_size}x{min_size} "
            f"so that its deepest level keeps more than one pixel to normalise"
        )
    if t.dim() != 1 or t.shape[0] != batch:
        raise ModelInputError(
            f"{name}: t must have shape ({batch},) (one timestep per image), got {tuple(t.shape)}"
        )
    if t.is_floating_point() or t.is_complex():
        raise ModelInputError(f"{name}: t must hold integer timesteps, got dtype {t.dtype}")
    if (t.device.type == "cpu" and t.numel() and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling()):
        values = t.detach().numpy()  # host memory already: no device read, no Tensor.item
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= num_timesteps:
            raise ModelInputError(
                f"{name}: timesteps must lie in [0, {num_timesteps}), got values in [{low}, {high}]"
            )
