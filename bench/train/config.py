"""What a training run is: the settings of `python -m bench train`, validated up front."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UsageError

SPEC_KEYS = ("model", "overrides", "dataset", "resolution", "channels", "prediction", "schedule",
             "timesteps")
"""Settings that define WHAT is trained; a checkpoint made with others cannot be resumed."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run. `batch_size` is the global batch, split evenly across torchrun ranks."""

    model: str
    dataset: str = "digits"
    out: Path = Path("runs/train")
    data_root: str | None = None
    resolution: int | None = None
    """None: the dataset's default (32 for digits, 64 otherwise)."""
    channels: int | None = None
    """None: the dataset's own channel count (1 for digits/mnist, 3 otherwise)."""
    width: int | None = None
    """U-Net `dim` or cU-Net `num_filters`; None keeps the preset's."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Further `models.build` overrides, e.g. {"attn_heads": 2}."""
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-4
    ema_decay: float = 0.999
    ema_every: int = 1
    grad_clip: float = 1.0
    prediction: str = "v"
    """The authors' objective (docs/paper.md, "Training and sampling settings"); eps works for the
    U-Net but not for the released cU-Net, whose instance-normalised input hides the scale of x_t."""
    schedule: str = "sigmoid"
    timesteps: int = 1000
    hflip: bool = False
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    """bf16 autocast; only ever active on CUDA."""
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    limit: int | None = None
    """Train on the first `limit` images only."""
    num_workers: int = 0
    log_every: int = 10
    progress: bool = True

    def model_source(self, channels: int) -> Any:
        """What builds this run's model (`models.ModelSource`): the preset with its overrides or
        the user's factory with its kwargs, `width` folded in, for `channels`-channel images."""
        from models import model_source

        merged = dict(self.overrides)
        if self.width is not None:
            merged["width"] = self.width
        return model_source(self.model, merged).with_channels(channels)

    def model_overrides(self, channels: int) -> dict[str, Any]:
        """The overrides (preset) or keyword arguments (factory) of this run's model."""
        return self.model_source(channels).arguments

    def to_meta(self) -> dict[str, Any]:
        """JSON-friendly copy for a checkpoint's meta."""
        data = dataclasses.asdict(self)
        data["out"] = str(self.out)
        return data


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")


def validate(config: TrainConfig) -> None:
    """Raise UsageError naming the first bad setting."""
    from models.diffusion import PREDICTIONS, SCHEDULES

    config.model_source(3)  # an unknown model fails first, naming presets and factories
    from bench.data import dataset_info

    info = dataset_info(config.dataset)  # an unknown dataset fails before anything is created
    if info.needs_root:
        from bench.data.roots import resolve_root

        resolve_root(config.dataset, config.data_root, info.layout)  # so does a missing data path
    given = sorted({"channels", "in_channels", "out_channels"} & set(config.overrides))
    if given:
        raise UsageError(f"--model-arg {given[0]}: the channels follow the dataset; set them with "
                         "--channels N instead")
    channels = config.channels if _is_positive_int(config.channels) else info.channels
    resolution = config.resolution if _is_positive_int(config.resolution) else info.resolution
    # before any data is loaded or anything written: bad overrides (types and ranges), a model
    # that cannot take the resolution or channels (a user's model: one tiny forward)
    config.model_source(channels).check(channels=channels, resolution=resolution)
    for name in ("steps", "batch_size", "ema_every", "checkpoint_every", "keep_checkpoints",
                 "log_every", "timesteps"):
        _positive_int(name.replace("_", "-"), getattr(config, name))
    for name in ("resolution", "width", "limit"):
        value = getattr(config, name)
        if value is not None:
            _positive_int(name, value)
    if not (isinstance(config.lr, int | float) and math.isfinite(config.lr) and config.lr > 0):
        raise UsageError(f"lr must be a positive number, got {config.lr!r}")
    if not 0.0 <= config.ema_decay <= 1.0:
        raise UsageError(f"ema-decay must be in [0, 1], got {config.ema_decay!r}")
    if not config.grad_clip > 0:
        raise UsageError(f"grad-clip must be > 0, got {config.grad_clip!r}")
    if config.prediction not in PREDICTIONS:
        raise UsageError(f"unknown prediction {config.prediction!r}; use {' or '.join(PREDICTIONS)}")
    if config.schedule not in SCHEDULES:
        raise UsageError(f"unknown schedule {config.schedule!r}; use one of {', '.join(SCHEDULES)}")
    if config.num_workers < 0:
        raise UsageError(f"num-workers must be >= 0, got {config.num_workers}")
