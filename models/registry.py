"""Model families and presets, and `build`.

A *family* is a configuration dataclass with its builder, its rules (validation, accepted
resolutions) and friendly override names; a *preset* is a named configuration of a family. The
built-in families (`models/families.py`) register themselves with the same two calls a new family
would use:

    register_family(Family(MyConfig, build=MyNet, validate=check_my_config,
                           resolution_rule=lambda c: (8, 8), aliases={"width": "channels_base"}))
    register_preset("mynet", Preset(MyConfig(), "what it is"))

(A user's denoiser needs neither: a factory reference, see `models.factory`.) The parameter
counts in each preset description are the exact values at the default width; the tests check them.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from models.errors import ModelInputError


@dataclass(frozen=True)
class Family:
    """A model family: what `build`, `preset_config` and `check_resolution` need to know of it."""

    config: type
    """The configuration dataclass (fields with type hints; the registry checks values by them)."""
    build: Callable[[typing.Any], nn.Module]
    validate: Callable[[str, typing.Any], None]
    """Raise ModelInputError (one line, starting with the model name) for an invalid configuration."""
    resolution_rule: Callable[[typing.Any], tuple[int, int]]
    """configuration -> (the resolution must be a multiple of, and at least)."""
    aliases: dict[str, str] = field(default_factory=dict)
    """Friendly override names -> this family's field, e.g. {"width": "dim"}."""
    continuous: bool = False
    """Neural-ODE family: its models report ODE-function evaluations (`last_nfe`)."""
    small: dict[str, object] = field(default_factory=dict)
    """Overrides that make a member small enough for one forward to run under valgrind in seconds
    (the efficiency gate's instruction counts); the architecture is kept, only widths shrink."""

    @property
    def name(self) -> str:
        return self.config.__name__


@dataclass(frozen=True)
class Preset:
    config: typing.Any
    description: str


FAMILIES: dict[str, Family] = {}
"""Configuration class name -> family (filled by `register_family`)."""
PRESETS: dict[str, Preset] = {}
"""Preset name -> preset, in registration order (filled by `register_preset`)."""


def register_family(family: Family) -> Family:
    """Add a model family; ValueError if another family already uses its configuration class or
    the configuration lacks `in_channels` / `out_channels` (every family takes `channels`)."""
    fields = {f.name for f in dataclasses.fields(family.config)}
    missing = sorted({"in_channels", "out_channels"} - fields)
    if missing:  # the registry sets them from `channels` and checks them for every preset
        raise ValueError(f"model family {family.name}: its configuration needs the fields {missing}")
    existing = FAMILIES.get(family.name)
    if existing is not None and existing is not family:
        raise ValueError(f"model family {family.name} is already registered")
    FAMILIES[family.name] = family
    return family


def register_preset(name: str, preset: Preset) -> None:
    """Add a preset of a registered family; ValueError for a taken name or an unknown family."""
    if name in PRESETS:
        raise ValueError(f"preset {name!r} is already registered")
    if type(preset.config).__name__ not in FAMILIES:
        raise ValueError(f"preset {name!r}: register the family {type(preset.config).__name__} first")
    PRESETS[name] = preset


def family_of(config: object) -> Family:
    """The registered family of a configuration."""
    family = FAMILIES.get(type(config).__name__)
    if family is None:
        raise ModelInputError(f"no registered model family for {type(config).__name__}")
    return family


def available() -> list[str]:
    """Names of every preset, in registry order."""
    return list(PRESETS)


def preset_config(name: str, **overrides: object) -> typing.Any:
    """The configuration of preset `name` with `overrides` applied and validated."""
    if name not in PRESETS:
        raise ModelInputError(f"unknown model '{name}'; available: {', '.join(PRESETS)}")
    config = PRESETS[name].config
    aliases = family_of(config).aliases
    fields = {f.name for f in dataclasses.fields(config)}
    changes: dict[str, object] = {}
    spelled: dict[str, str] = {}
    for key, value in overrides.items():
        if key in aliases:
            spelled[aliases[key]] = f"{key} ({aliases[key]})"
            key = aliases[key]
        if key == "channels":
            _check_type(name, "channels", value, int)
            changes["in_channels"] = changes["out_channels"] = value
            continue
        if key not in fields:
            valid = sorted(fields | set(aliases) | {"channels"})
            raise ModelInputError(
                f"{name}: unknown override '{key}'; valid overrides: {', '.join(valid)}"
            )
        if key in ("attention", "dim_mults", "full_attention") and isinstance(value, list):
            value = tuple(value)
        changes[key] = value
    for key, value in changes.items():
        _check_type(name, spelled.get(key, key), value, _field_types(type(config))[key])
    config = dataclasses.replace(config, **changes)
    _require(config.in_channels >= 1 and config.out_channels >= 1,
             f"{name}: channel counts must be >= 1")
    family_of(config).validate(name, config)
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


def build_from_config(config: object) -> nn.Module:
    """Instantiate the network a configuration describes (by its registered family)."""
    return family_of(config).build(config)


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
    multiple, minimum = family_of(config).resolution_rule(config)
    if resolution < minimum or resolution % multiple:
        raise ModelInputError(
            f"{name} cannot take {resolution}x{resolution} inputs: the resolution must be a multiple "
            f"of {multiple} and at least {minimum}"
        )
