"""Where a denoiser comes from: a registered preset with overrides, or a user's factory with keyword
arguments. Every harness (matrix, gate, training, quality sweep, profiler) names its models with
text, turns that text into a `ModelSource` here, and from then on asks the source, never the
model's class:

    source = model_source("cunet", {"width": 8})            # a preset and its overrides
    source = model_source("my_pkg.nets:make_net", {"width": 64})  # a user's factory and its kwargs
    source.with_channels(1).check(channels=1, resolution=32)  # before anything is measured
    net = source.with_channels(1).build()
    source.config()                                          # stored with rows and checkpoints

`build_stored(config)` turns a stored configuration back into the network it describes, so a
checkpoint rebuilds the network it was trained as, even after the preset changed.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from models.errors import ModelInputError
from models.factory import build_factory_model, check_user_model, is_factory_reference, load_factory

CHANNELS_PARAMETER = "channels"
"""A factory with a parameter of this name is given the channel count the harness needs (1 for
digits and MNIST, 3 for RGB) unless its kwargs set it."""


def _frozen(values: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in values.items()))


@dataclass(frozen=True)
class ModelSource:
    """A preset (`preset`, with overrides in `kwargs`) or a user's factory (`factory`, called with
    `kwargs`); hashable, so harnesses can cache what it builds."""

    preset: str | None = None
    factory: str | None = None
    kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        """The preset name or the factory reference."""
        return str(self.preset or self.factory)

    @property
    def is_user(self) -> bool:
        return self.factory is not None

    @property
    def arguments(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def with_arguments(self, **extra: Any) -> ModelSource:
        return dataclasses.replace(self, kwargs=_frozen({**self.arguments, **extra}))

    def with_channels(self, channels: int) -> ModelSource:
        """This source building a model for `channels`-channel images: a preset's `channels`
        override; a factory's `channels` parameter when it has one and its kwargs leave it unset
        (else the model must take them as it is, which `check` tries)."""
        if self.preset is not None:
            return self.with_arguments(channels=channels)
        if CHANNELS_PARAMETER in self.arguments or not _accepts(self.factory, CHANNELS_PARAMETER):
            return self
        if _default(self.factory, CHANNELS_PARAMETER) == channels:
            return self  # its own default: the stored kwargs stay as the user wrote them
        return self.with_arguments(**{CHANNELS_PARAMETER: channels})

    def small(self) -> ModelSource:
        """This source at its family's small configuration (`Family.small`: narrower, the same
        architecture), under this source's own overrides, which win; a user's factory as it is
        (its kwargs say how large it is)."""
        if self.preset is None:
            return self
        from models.registry import PRESETS, family_of

        shrunk = dict(family_of(PRESETS[self.preset].config).small)
        return dataclasses.replace(self, kwargs=_frozen({**shrunk, **self.arguments}))

    def preset_config(self) -> Any:
        """The validated preset configuration (ModelInputError for a bad override); None for a
        user's factory."""
        if self.preset is None:
            return None
        from models.registry import preset_config

        return preset_config(self.preset, **self.arguments)

    def build(self) -> nn.Module:
        if self.preset is not None:
            from models.registry import build_from_config

            return build_from_config(self.preset_config())
        return build_factory_model(str(self.factory), self.arguments)

    def check(self, *, channels: int, resolution: int) -> None:
        """ModelInputError (one line) unless the model can be built and take (1, channels,
        resolution, resolution) inputs: a preset's rules are checked from its configuration, a
        user's model by one tiny forward."""
        if self.preset is not None:
            from models.registry import check_resolution

            check_resolution(self.preset, resolution, **self.arguments)
            return
        check_user_model(self.build(), str(self.factory), channels=channels, resolution=resolution)

    def config(self) -> dict[str, Any]:
        """The full configuration, as rows and checkpoints store it: a preset's family and every
        field, or the factory reference and its keyword arguments."""
        if self.preset is None:
            return {"factory": self.factory, "kwargs": self.arguments}
        config = self.preset_config()
        return {"preset": self.preset, "family": type(config).__name__, **dataclasses.asdict(config)}

    def solver(self) -> tuple[str | None, int | None, str | None]:
        """(method, steps per block, backend) of a continuous preset; Nones otherwise (a user's
        model reports its evaluations through `last_nfe` but not a solver)."""
        config = self.preset_config()
        if config is not None and self.continuous():
            return config.solver, config.solver_steps, config.solver_backend
        return None, None, None

    def continuous(self) -> bool:
        """Whether the model is a neural-ODE denoiser, which reports its ODE-function evaluations
        (the protocol's `last_nfe`). The one answer to that question: a preset's family says so
        (`Family.continuous`); a user's model says so by having `last_nfe`."""
        config = self.preset_config()
        if config is not None:
            from models.registry import family_of

            return family_of(config).continuous
        net = self.build()
        return callable(getattr(getattr(net, "module", net), "last_nfe", None))


@functools.lru_cache(maxsize=64)
def _parameters(reference: str | None) -> Mapping[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(load_factory(str(reference))).parameters)
    except (TypeError, ValueError):
        return {}


def _accepts(reference: str | None, parameter: str) -> bool:
    return parameter in _parameters(reference)


def _default(reference: str | None, parameter: str) -> Any:
    found = _parameters(reference).get(parameter)
    return None if found is None or found.default is inspect.Parameter.empty else found.default


def model_source(text: str, kwargs: Mapping[str, Any] | None = None) -> ModelSource:
    """A preset name or a factory reference (with its overrides or keyword arguments) as a
    ModelSource; ModelInputError naming both ways for anything else."""
    from models.registry import available

    text = str(text)
    if text in available():
        return ModelSource(preset=text, kwargs=_frozen(kwargs or {}))
    if is_factory_reference(text):
        return ModelSource(factory=text, kwargs=_frozen(kwargs or {}))
    raise ModelInputError(f"unknown model {text!r}; use a preset ({', '.join(available())}) or a "
                          "factory 'package.module:callable' (or 'path/to/file.py:callable')")


def config_from_stored(stored: Mapping[str, Any]) -> Any:
    """A preset family's configuration from its stored form ({"family": class name, field: value})."""
    from models.registry import FAMILIES

    family = FAMILIES.get(str(stored.get("family")))
    if family is not None:
        family = family.config
    if family is None:
        raise ModelInputError(f"stored model configuration names an unknown family "
                              f"{stored.get('family')!r}; known: {', '.join(FAMILIES)}")
    names = {f.name for f in dataclasses.fields(family)}
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in names}
    try:
        return family(**fields)
    except TypeError as error:
        raise ModelInputError(f"stored model configuration does not fit {family.__name__}: "
                              f"{error}") from None


def build_stored(stored: Mapping[str, Any]) -> nn.Module:
    """The network a stored configuration (`ModelSource.config()`) describes: the stored family
    configuration itself (never today's preset), or the factory called with the stored kwargs."""
    if "factory" in stored:
        return build_factory_model(str(stored["factory"]), dict(stored.get("kwargs") or {}))
    from models.registry import build_from_config

    return build_from_config(config_from_stored(stored))


def is_model_name(text: str) -> bool:
    """A preset name or a factory reference (whether the factory imports is checked when built)."""
    from models.registry import available

    return str(text) in available() or is_factory_reference(str(text))


def in_model_order(names: list[str]) -> list[str]:
    """`names` without repeats: presets in registry order, then the user's models as given."""
    from models.registry import available

    unique = list(dict.fromkeys(names))
    return [n for n in available() if n in unique] + [n for n in unique if n not in available()]
