"""The one registry of samplers: name -> Sampler class. A new sampler is one module defining a
`Sampler` subclass plus one line here (a diffusers scheduler: a small `DiffusersSampler` subclass
in `diffusers_schedulers` plus its line)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.diffusion.samplers.base import Sampler
from models.diffusion.samplers.ddim import DDIM
from models.diffusion.samplers.ddpm import DDPM
from models.diffusion.samplers.diffusers_schedulers import (
    DiffusersDDIM,
    DiffusersDDPM,
    DPMSolverPlusPlus2M,
    Euler,
    EulerAncestral,
    Heun,
    UniPC,
)
from models.errors import ModelInputError

SAMPLERS: dict[str, type[Sampler]] = {
    "ddpm": DDPM,
    "ddim": DDIM,
    "dpmsolver++": DPMSolverPlusPlus2M,
    "unipc": UniPC,
    "euler": Euler,
    "euler-ancestral": EulerAncestral,
    "heun": Heun,
    "diffusers-ddpm": DiffusersDDPM,
    "diffusers-ddim": DiffusersDDIM,
}
"""Sampler name -> class. `name in SAMPLERS` and `', '.join(SAMPLERS)` give the valid names."""


def _asks_nothing(key: str, value: Any) -> bool:
    """Whether `key=value` is another registered sampler's option at its default (e.g. eta=0.0):
    it asks for nothing, so a caller may pass it to every sampler, as `sample(..., eta=0.0)` could."""
    return any(
        key in cls.options and isinstance(value, int | float | str) and not isinstance(value, bool)
        and value == cls.options[key].default
        for cls in SAMPLERS.values()
    )


def get_sampler(name: str, options: Mapping[str, Any] | None = None, **more: Any) -> Sampler:
    """A fresh sampler `name` with its options (from `options` and/or keywords) validated against
    what its class declares; bad input raises ModelInputError with one line saying what is valid."""
    if not isinstance(name, str) or name not in SAMPLERS:
        raise ModelInputError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    given = dict(options or {})
    twice = sorted(set(given) & set(more))
    if twice:
        raise ModelInputError(f"sampler option(s) {', '.join(twice)} given both in options and as keywords")
    given.update(more)
    cls = SAMPLERS[name]
    takes = ", ".join(cls.options) if cls.options else "no options"
    for key, value in list(given.items()):
        if key in cls.options:
            continue
        if _asks_nothing(key, value):
            del given[key]
            continue
        owners = [other for other, c in SAMPLERS.items() if key in c.options]
        if owners:
            raise ModelInputError(f"{key} applies only to the {', '.join(owners)} sampler(s), got "
                                  f"{key}={value!r} for {name} (which takes {takes})")
        raise ModelInputError(f"unknown sampler option {key!r} for {name} (it takes {takes})")
    return cls(**given)
