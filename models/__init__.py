"""Shared denoiser definitions: the DDPM U-Net baseline, the continuous U-Net and its ablations.

    >>> import models
    >>> models.available()[:2]
    ['unet', 'cunet']
    >>> net = models.build("cunet", num_filters=8, channels=1)

Every model is called as `model(x, t)` with x (B, C, H, W) float and t (B,) integer timesteps in
[0, 1000); it returns a tensor shaped like x.

Non-finite input: x with NaN or inf propagates to the output (as in any torch layer; checking would
synchronise with a GPU on every call), except that a cU-Net on the adaptive `dopri5` raises
`ModelInputError`, since its step control cannot work on NaN.
"""

from __future__ import annotations

from torch import nn

from models import families as _families  # noqa: F401 - registers the built-in families and presets
from models.config import CUNetConfig, UNetConfig
from models.errors import ModelInputError
from models.registry import (
    FAMILIES,
    PRESETS,
    Family,
    Preset,
    available,
    build,
    build_from_config,
    check_resolution,
    family_of,
    preset_config,
    register_family,
    register_preset,
)
from models.source import ModelSource, build_stored, in_model_order, is_model_name, model_source


def last_nfe(model: nn.Module) -> dict[str, int]:
    """ODE-function evaluations of the model's last forward, per block and under "total".

    Empty for discrete models. Unwraps DDP/EMA wrappers that keep the network in `.module`.
    """
    inner = getattr(model, "module", model)
    report = getattr(inner, "last_nfe", None)
    return dict(report()) if callable(report) else {}


def capture_safe(model: nn.Module) -> bool | None:
    """Whether the model says its forward can be captured in a CUDA graph (None: it does not say,
    e.g. a user's model; then capture is simply tried)."""
    value = getattr(getattr(model, "module", model), "capture_safe", None)
    return None if value is None else bool(value)


__all__ = [
    "FAMILIES",
    "PRESETS",
    "Family",
    "ModelSource",
    "Preset",
    "build_stored",
    "family_of",
    "in_model_order",
    "is_model_name",
    "model_source",
    "register_family",
    "register_preset",
    "CUNetConfig",
    "ModelInputError",
    "UNetConfig",
    "available",
    "build",
    "build_from_config",
    "capture_safe",
    "check_resolution",
    "last_nfe",
    "preset_config",
]
