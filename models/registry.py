"""Preset names -> configurations, and `build`.

The parameter counts in each description are the exact values at the default width; the tests
check them.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass

from torch import nn

from models.config import (
    ATTENTION_SITES,
    NORMS,
    SOLVERS,
    TIME_CONDITIONING,
    CUNetConfig,
    ModelConfig,
    UNetConfig,
)
from models.errors import ModelInputError
from models.solvers import check_backend

ATTN5 = ("enc2", "enc4", "mid", "dec1", "dec3")


@dataclass(frozen=True)
class Preset:
    config: ModelConfig
    description: str
    paper_label: str | None = None
    """How the paper's tables and figures name this model (None: not in the paper)."""


PRESETS: dict[str, Preset] = {
    "unet": Preset(UNetConfig(), "DDPM U-Net baseline, 35,710,339 params", "U-Net"),
    "cunet": Preset(
        CUNetConfig(),
        "continuous U-Net as released (2 attention blocks; output ignores t), 8,811,875 params",
        "cU-Net",
    ),
    "cunet-noattn": Preset(
        CUNetConfig(attention=()), "cU-Net without attention (wo/A), 8,548,707 params", "cU-Net wo/A"
    ),
    "cunet-nores": Preset(
        CUNetConfig(ode_residual=False, time_conditioning="additive"),
        "cU-Net without residual ODE functions, additive time MLPs (wo/R), 6,138,083 params",
        "cU-Net wo/R",
    ),
    "cunet-noattn-nores": Preset(
        CUNetConfig(ode_residual=False, time_conditioning="additive", attention=()),
        "cU-Net wo/A/R, 5,874,915 params",
        "cU-Net wo/A/R",
    ),
    "cunet-attn5": Preset(
        CUNetConfig(attention=ATTN5),
        "cU-Net with five attention blocks (the paper's Table 2 cU-Net row), 9,140,835 params",
        "cU-Net (Table 2)",
    ),
    "cunet-film": Preset(
        CUNetConfig(time_conditioning="film"),
        "cU-Net as the paper describes it: FiLM time conditioning in every ODE function",
    ),
}

# Friendly names accepted by `build` for the width and the channel count of either family.
_ALIASES = {"width": {"UNetConfig": "dim", "CUNetConfig": "num_filters"}}


def available() -> list[str]:
    """Names of every preset, in registry order."""
    return list(PRESETS)


def preset_config(name: str, **overrides: object) -> ModelConfig:
    """The configuration of preset `name` with `overrides` applied and validated."""
    if name not in PRESETS:
        raise ModelInputError(f"unknown model '{name}'; available: {', '.join(PRESETS)}")
    config = PRESETS[name].config
    kind = type(config).__name__
    fields = {f.name for f in dataclasses.fields(config)}
    changes: dict[str, object] = {}
    spelled: dict[str, str] = {}
    for key, value in overrides.items():
        if key in _ALIASES:
            spelled[_ALIASES[key][kind]] = f"{key} ({_ALIASES[key][kind]})"
            key = _ALIASES[key][kind]
        if key == "channels":
            _check_type(name, "channels", value, int)
            changes["in_channels"] = changes["out_channels"] = value
            continue
        if key not in fields:
            valid = sorted(fields | set(_ALIASES) | {"channels"})
            raise ModelInputError(
                f"{name}: unknown override '{key}'; valid overrides: {', '.join(valid)}"
            )
        if key in ("attention", "dim_mults", "full_attention") and isinstance(value, list):
            value = tuple(value)
        changes[key] = value
    for key, value in changes.items():
        _check_type(name, spelled.get(key, key), value, _field_types(type(config))[key])
    config = dataclasses.replace(config, **changes)
    _validate(name, config)
    return config


def _field_types(kind: type) -> dict[str, object]:
    return typing.get_type_hints(kind)


def _describe(expected: object) -> str:
    if expected is bool:
        return "true or false"
    if expected is int:
        return "a positive integer"
    if expected is float:
        return "a positive number"
    if expected is str:
        return "a string"
    inner = typing.get_args(expected)[0] if typing.get_args(expected) else str
    return f"a list of {_describe(inner).removeprefix('a ').removeprefix('an ')}s"


def _type_ok(value: object, expected: object) -> bool:
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if expected is float:
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value) and value > 0)
    if expected is str:
        return isinstance(value, str)
    if typing.get_origin(expected) is tuple:
        inner = typing.get_args(expected)[0]
        return isinstance(value, tuple) and all(_type_ok(v, inner) for v in value)
    return True


def _check_type(name: str, key: str, value: object, expected: object) -> None:
    """A value of the wrong type or range is a one-line ModelInputError naming the key, the value
    and what is accepted (never a traceback from deep inside torch)."""
    if not _type_ok(value, expected):
        raise ModelInputError(f"{name}: {key} = {value!r} is not accepted; {key} takes "
                              f"{_describe(expected)}")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ModelInputError(message)


def _validate(name: str, c: ModelConfig) -> None:
    _require(c.in_channels >= 1 and c.out_channels >= 1, f"{name}: channel counts must be >= 1")
    if isinstance(c, UNetConfig):
        _require(c.dim >= 1 and c.dim % c.resnet_groups == 0,
                 f"{name}: dim={c.dim} must be a positive multiple of resnet_groups={c.resnet_groups}")
        _require(len(c.full_attention) == len(c.dim_mults),
                 f"{name}: full_attention needs one flag per entry of dim_mults")
        return
    _require(c.num_filters >= 1, f"{name}: num_filters must be >= 1, got {c.num_filters}")
    _require(c.solver in SOLVERS, f"{name}: unknown solver '{c.solver}'; use one of {', '.join(SOLVERS)}")
    _require(c.solver_steps >= 1, f"{name}: solver_steps must be >= 1, got {c.solver_steps}")
    _require(c.norm in NORMS, f"{name}: unknown norm '{c.norm}'; use one of {', '.join(NORMS)}")
    _require(c.time_conditioning in TIME_CONDITIONING,
             f"{name}: unknown time_conditioning '{c.time_conditioning}'; "
             f"use one of {', '.join(TIME_CONDITIONING)}")
    bad = [s for s in c.attention if s not in ATTENTION_SITES]
    _require(not bad, f"{name}: unknown attention site(s) {bad}; use {', '.join(ATTENTION_SITES)}")
    _require(c.rtol > 0 and c.atol > 0, f"{name}: rtol and atol must be > 0")
    check_backend(c.solver_backend, c.solver, c.adjoint, name=name)


def build_from_config(config: ModelConfig) -> nn.Module:
    """Instantiate the network a configuration describes."""
    from models.cunet import ContinuousUNet
    from models.unet import UNet

    return UNet(config) if isinstance(config, UNetConfig) else ContinuousUNet(config)


def build(name: str, **overrides: object) -> nn.Module:
    """Build preset `name` (see `available()`), with configuration fields overridden.

    Overrides are config fields (e.g. `dim`, `num_filters`, `solver`, `solver_steps`, `rtol`,
    `atol`, `adjoint`, `norm`, `in_channels`, `out_channels`) plus `width` (dim or num_filters)
    and `channels` (in and out).
    """
    return build_from_config(preset_config(name, **overrides))


def check_resolution(name: str, resolution: int, **overrides: object) -> None:
    """Raise ModelInputError when preset `name` cannot take `resolution` x `resolution` inputs."""
    config = preset_config(name, **overrides)
    if isinstance(config, UNetConfig):
        multiple, minimum = 2 ** (len(config.dim_mults) - 1), 2 ** (len(config.dim_mults) - 1)
    else:
        multiple, minimum = 16, 32
    if resolution < minimum or resolution % multiple:
        raise ModelInputError(
            f"{name} cannot take {resolution}x{resolution} inputs: the resolution must be a multiple "
            f"of {multiple} and at least {minimum}"
        )
