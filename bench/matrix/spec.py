"""Matrix descriptions: built-in TOML profiles or a user's TOML file, validated up front so that a
typo fails in one line before anything is measured.

Two steps: `parse_spec` reads the description (types, names, what this machine has) without
building anything; `validate_models` checks that every model can be built as configured and take
the matrix's inputs (a user's model runs one tiny forward), called when the matrix is run and by the
`run` command before it creates any output directory."""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import models
from bench.errors import UsageError
from bench.matrix.metrics import UNITS, current_name, renamed
from bench.measure.interleaved import InterleavePlan
from bench.measure.modes import check_modes
from bench.profiles import DEFAULT, load_profile, read_config
from models.diffusion.samplers import SAMPLERS
from models.factory import is_factory_reference
from models.source import ModelSource, model_source

METRICS: dict[str, str] = UNITS
"""Every metric the matrix can measure, with its unit."""

MATRIX_KEYS = {"models", "resolutions", "batch_sizes", "devices", "dtypes", "metrics", "seed",
               "threads", "channels", "cpu_max_batch_pixels", "modes", "mode_models"}
DTYPES = ("float32", "bfloat16")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class LatencySettings:
    """How the latency cells time the models round-robin (see `bench.measure.interleaved`)."""

    warmup: int = 3
    """Untimed calls of every model before the first round."""
    calls_per_round: int = 3
    """Timed calls of each model in every round."""
    min_rounds: int = 5
    max_rounds: int = 20
    budget_s: float = 2.0
    """Timed seconds per model: no new round starts once `min_rounds` are done and the cell has
    spent budget_s x (number of models)."""
    reference: str = "unet"
    """The model the same-run ratios are taken to (the matrix's first model if it is absent)."""

    def __post_init__(self) -> None:
        if isinstance(self.budget_s, bool) or not isinstance(self.budget_s, int | float):
            raise UsageError(f"[latency] budget_s = {self.budget_s!r} is not accepted; it takes a "
                             "number of seconds >= 0")
        try:
            self.plan(1)  # the measuring side's own checks, so a bad table fails before measuring
        except UsageError as error:
            message = str(error)
            for plan_name, key in (("initial_warmup", "warmup"), ("calls", "calls_per_round")):
                if message.startswith(plan_name + " "):
                    message = key + message[len(plan_name):]
            raise UsageError(f"[latency] {message}") from None
        if not isinstance(self.reference, str):
            raise UsageError(f"[latency] reference must be a model name, got {self.reference!r}")

    def plan(self, n_models: int) -> InterleavePlan:
        """The round-robin plan for a cell timing `n_models` models (the budget is per model)."""
        return InterleavePlan(min_rounds=self.min_rounds, max_rounds=self.max_rounds,
                              calls=self.calls_per_round, budget_s=self.budget_s * n_models,
                              initial_warmup=self.warmup)

    def reference_for(self, model_names: list[str]) -> str:
        return self.reference if self.reference in model_names else model_names[0]


@dataclass(frozen=True)
class SamplingSettings:
    steps: dict[str, list[int]] = field(default_factory=dict)
    """Preset name (or family prefix such as 'cunet') -> sampling step counts."""
    batch: int = 1
    sampler: str = "ddpm"
    repeats: int = 3

    def steps_for(self, model: str) -> list[int]:
        """Step counts for `model`: its own entry, else the longest matching family prefix."""
        if model in self.steps:
            return self.steps[model]
        prefixes = [p for p in self.steps if model.startswith(p + "-")]
        return self.steps[max(prefixes, key=len)] if prefixes else []


@dataclass(frozen=True)
class MatrixSpec:
    name: str
    description: str
    models: list[str]
    resolutions: list[int]
    batch_sizes: list[int]
    devices: list[str]
    dtypes: list[str]
    metrics: list[str]
    seed: int
    threads: int
    channels: int = 3
    cpu_max_batch_pixels: int | None = None
    """Skip CPU memory/latency cells with batch * resolution**2 above this (they would exhaust
    RAM); recorded as failed with the reason."""
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    """Matrix model name -> the preset it builds (`[models.NAME] preset = "cunet"`, with its
    `kwargs` in `overrides`), so one preset can run in several configurations side by side."""
    factories: dict[str, str] = field(default_factory=dict)
    """Matrix model name -> a user's factory reference (`[models.NAME] factory = "pkg.mod:fn"`,
    with its `kwargs` in `overrides`)."""
    modes: list[str] = field(default_factory=lambda: ["eager"])
    """Execution modes (`bench.measure.modes.MODES`) of the latency and time-per-sample cells."""
    mode_models: dict[str, list[str]] = field(default_factory=dict)
    """Mode -> the only models run in it (default: every model runs in every mode)."""
    latency: LatencySettings = field(default_factory=LatencySettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    source: str = ""

    def preset_of(self, model: str) -> str:
        """The preset a matrix model name builds."""
        return self.aliases.get(model, model)

    def source_of(self, model: str) -> ModelSource:
        """What builds the matrix model `model` (a preset and its overrides, or a user's factory
        and its kwargs) for this matrix's channel count."""
        built = self.factories.get(model) or self.preset_of(model)
        return model_source(built, self.overrides.get(model, {})).with_channels(self.channels)

    def modes_for(self, model: str) -> list[str]:
        """The modes `model` is run in."""
        return [m for m in self.modes if model in self.mode_models.get(m, [model])]


def available_threads() -> int:
    """Cores this process may run on (the default thread count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_spec(profile: str | None = None, config: Path | None = None, *,
              models_override: list[str] | None = None,
              model_args: dict[str, Any] | None = None) -> MatrixSpec:
    """The matrix of a built-in efficiency profile (bench/profiles/, `quick` by default) or of a TOML
    file; `models_override` (`run --model`) replaces its models (see `with_models`)."""
    found = read_config(config) if config is not None else load_profile(profile or DEFAULT)
    if found.kind != "matrix":
        raise UsageError(f"{found.path}: '{found.name}' is a quality profile ([quality]), not a "
                         "matrix; run it with python -m bench run --profile NAME")
    raw = found.raw
    if models_override:
        raw = with_models(raw, models_override, model_args or {})
    return parse_spec(raw, name=found.name, source=str(found.path))


def with_models(raw: dict[str, Any], names: list[str], model_args: dict[str, Any]) -> dict[str, Any]:
    """A matrix description measuring `names` (presets, `[models]` names or factory references)
    instead of its own models: each keeps what the matrix configures for it, with `model_args`
    (preset overrides or factory kwargs) applied on top; tables naming other models are cut."""
    raw = copy.deepcopy(raw)
    matrix = raw.setdefault("matrix", {})
    matrix["models"] = list(dict.fromkeys(names))
    if isinstance(matrix.get("mode_models"), dict):
        matrix["mode_models"] = {mode: [n for n in listed if n in names]
                                 for mode, listed in matrix["mode_models"].items()}
    for table in ("models", "overrides"):
        if isinstance(raw.get(table), dict):
            raw[table] = {n: t for n, t in raw[table].items() if n in names}
    if model_args:
        overrides = raw.setdefault("overrides", {})
        for name in names:
            overrides[name] = {**overrides.get(name, {}), **model_args}
    latency = raw.get("latency", {})
    if isinstance(latency, dict) and latency.get("reference") not in (None, *names):
        latency.pop("reference")  # the matrix's first model becomes the reference
    return raw


def _list(section: dict[str, Any], key: str, kind: type, default: list | None = None) -> list:
    value = section.get(key, default)
    if value is None:
        raise UsageError(f"matrix.{key} is missing; give a list, e.g. {key} = [...]")
    if not isinstance(value, list) or not value or not all(isinstance(v, kind) for v in value):
        raise UsageError(f"matrix.{key} must be a non-empty list of {kind.__name__}, got {value!r}")
    return value


def _known(values: list[str], allowed, what: str) -> None:
    bad = [v for v in values if v not in allowed]
    if bad:
        raise UsageError(f"unknown {what} {', '.join(map(str, bad))}; available: {', '.join(allowed)}")


def _metric_names(names: list[str]) -> list[str]:
    """The matrix's metrics, checked, with former names (aliases) mapped to today's and said."""
    for note in renamed(names):
        print(f"note: {note}", file=sys.stderr)
    names = [current_name(n) for n in names]
    _known(names, list(METRICS), "metric")
    return names


def _positive_ints(values: list[int], what: str) -> None:
    if any(v < 1 for v in values):
        raise UsageError(f"{what} must be positive integers, got {values}")


def parse_spec(raw: dict[str, Any], *, name: str, source: str = "") -> MatrixSpec:
    """Validate a decoded TOML matrix description: its tables and keys, the values' types, the
    names it uses (models, metrics, modes, devices) and what this machine can run. Builds no model:
    `validate_models` does that when the matrix is run."""
    matrix = _matrix_table(raw, name, source)
    aliases, alias_overrides, factories = _model_tables(raw.get("models", {}))
    model_names = _model_names(matrix, aliases, factories)
    modes, mode_models = _modes(matrix, model_names)
    metrics = _metric_names(_list(matrix, "metrics", str))
    resolutions, batch_sizes, devices, dtypes = _axes(matrix)
    threads, seed, channels, limit = _settings(matrix)
    latency = _latency(raw, model_names)
    sampling = _sampling(raw)
    _check_this_machine(name, source, devices, modes)
    if "sample_time_s" in metrics and not sampling.steps:
        raise UsageError("metric sample_time_s needs [sampling] steps = { unet = [30], cunet = [5] }")
    return MatrixSpec(
        name=name,
        description=str(raw.get("description", "")),
        models=model_names,
        resolutions=resolutions,
        batch_sizes=batch_sizes,
        devices=devices,
        dtypes=dtypes,
        metrics=metrics,
        seed=seed,
        threads=threads,
        channels=channels,
        cpu_max_batch_pixels=limit,
        overrides=_overrides(raw, alias_overrides),
        aliases=aliases,
        factories=factories,
        modes=modes,
        mode_models=mode_models,
        latency=latency,
        sampling=sampling,
        source=source,
    )


def validate_models(spec: MatrixSpec) -> None:
    """Check, before anything is measured or written, that every model of `spec` can be built as
    configured and take the matrix's inputs: a preset's overrides and resolution rules from its
    configuration, a user's model by one tiny forward per resolution. A one-line ModelInputError
    (or UsageError) otherwise."""
    for model, values in spec.overrides.items():
        if model not in spec.factories:  # unknown model/override -> one-line ModelInputError
            models.preset_config(spec.preset_of(model), **values)
    for model in spec.models:
        source = spec.source_of(model)
        for resolution in spec.resolutions:
            source.check(channels=spec.channels, resolution=resolution)


def _matrix_table(raw: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    """The [matrix] table, after checking that `raw` has only known tables and keys."""
    matrix = raw.get("matrix")
    if not isinstance(matrix, dict):
        raise UsageError(f"{source or name}: no [matrix] table; see bench/profiles/quick.toml")
    unknown = set(matrix) - MATRIX_KEYS
    if unknown:
        raise UsageError(f"unknown key(s) {', '.join(sorted(unknown))} in [matrix]; "
                         f"valid: {', '.join(sorted(MATRIX_KEYS))}")
    unknown = set(raw) - {"description", "matrix", "overrides", "latency", "sampling", "models"}
    if unknown:
        raise UsageError(f"unknown table(s) {', '.join(sorted(unknown))}; valid: description, "
                         "[matrix], [models], [overrides], [latency], [sampling]")
    return matrix


def _model_names(matrix: dict[str, Any], aliases: dict[str, str], factories: dict[str, str]) -> list[str]:
    """matrix.models, each a preset, a [models] name or a factory reference; a reference listed
    directly ("my_pkg.nets:make_net") is added to `factories` as its own [models] table."""
    names = _list(matrix, "models", str)
    factories.update({n: n for n in names if n not in factories and is_factory_reference(n)})
    _known(names, models.available() + list(aliases) + list(factories), "model")
    return names


def _modes(matrix: dict[str, Any], model_names: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """matrix.modes and matrix.mode_models (mode -> the only models run in it)."""
    modes = _list(matrix, "modes", str, ["eager"])
    check_modes(modes)
    mode_models = matrix.get("mode_models", {})
    if not isinstance(mode_models, dict) or not all(
            isinstance(v, list) and all(isinstance(n, str) for n in v) for v in mode_models.values()):
        raise UsageError("matrix.mode_models must map a mode to a list of models, "
                         "e.g. mode_models = { compile = [\"unet\", \"cunet\"] }")
    check_modes(list(mode_models))
    for listed in mode_models.values():
        _known(listed, model_names, "model in matrix.mode_models")
    return modes, mode_models


def _axes(matrix: dict[str, Any]) -> tuple[list[int], list[int], list[str], list[str]]:
    """(resolutions, batch sizes, devices, dtypes), with their defaults."""
    resolutions = _list(matrix, "resolutions", int, [64])
    batch_sizes = _list(matrix, "batch_sizes", int, [1])
    _positive_ints(resolutions, "resolutions")
    _positive_ints(batch_sizes, "batch_sizes")
    devices = _list(matrix, "devices", str, ["cpu"])
    _known(devices, DEVICES, "device")
    dtypes = _list(matrix, "dtypes", str, ["float32"])
    _known(dtypes, DTYPES, "dtype")
    return resolutions, batch_sizes, devices, dtypes


def _settings(matrix: dict[str, Any]) -> tuple[int, int, int, int | None]:
    """(threads, seed, channels, cpu_max_batch_pixels), each checked for its type."""
    threads = matrix.get("threads", available_threads())
    if not isinstance(threads, int) or threads < 1:
        raise UsageError(f"matrix.threads must be a positive integer, got {threads!r}")
    seed = matrix.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"matrix.seed = {seed!r} is not accepted; seed takes a non-negative integer")
    channels = matrix.get("channels", 3)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise UsageError(f"matrix.channels = {channels!r} is not accepted; channels takes a positive "
                         "integer (1 or 3 for images)")
    limit = matrix.get("cpu_max_batch_pixels")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UsageError(f"matrix.cpu_max_batch_pixels = {limit!r} is not accepted; it takes a "
                         "positive integer (batch x height x width)")
    return threads, seed, channels, limit


def _overrides(raw: dict[str, Any], alias_overrides: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """[overrides] on top of the [models] tables' kwargs (model -> preset overrides or kwargs)."""
    overrides = raw.get("overrides", {})
    if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
        raise UsageError("[overrides] must map model names to tables, e.g. unet = { width = 32 }")
    return {**alias_overrides, **{k: {**alias_overrides.get(k, {}), **v} for k, v in overrides.items()}}


def _latency(raw: dict[str, Any], model_names: list[str]) -> LatencySettings:
    latency = LatencySettings(**_table(raw, "latency", LatencySettings))
    if "reference" in raw.get("latency", {}) and latency.reference not in model_names:
        raise UsageError(f"[latency] reference '{latency.reference}' is not among matrix.models; "
                         f"use one of {', '.join(model_names)}")
    return latency


def _sampling(raw: dict[str, Any]) -> SamplingSettings:
    table = _table(raw, "sampling", SamplingSettings)
    _check_sampling(table)
    sampling = SamplingSettings(**table)
    if sampling.sampler not in SAMPLERS:
        raise UsageError(f"[sampling] sampler {sampling.sampler!r} is unknown; "
                         f"use one of {', '.join(SAMPLERS)}")
    return sampling


def _check_this_machine(name: str, source: str, devices: list[str], modes: list[str]) -> None:
    """Refuse a matrix this machine cannot run at all (CUDA only, without CUDA)."""
    devices_here = [d for d in devices if d != "cuda" or torch.cuda.is_available()]
    if not devices_here:
        raise UsageError(f"{source or name} measures only on {', '.join(devices)}, which this machine "
                         "lacks (torch.cuda.is_available() is False); run it on a CUDA machine")
    if "cudagraph" in modes and "cuda" not in devices_here:
        raise UsageError("mode cudagraph needs a CUDA device and this matrix measures on "
                         f"{', '.join(devices_here)}; drop it from matrix.modes or run on a CUDA machine")


def _check_sampling(table: dict[str, Any]) -> None:
    """[sampling] values: typed before anything is built (steps lists of positive integers)."""
    steps = table.get("steps", {})
    if not isinstance(steps, dict) or not all(
            isinstance(v, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                                        for n in v) for v in steps.values()):
        raise UsageError(f"[sampling] steps = {steps!r} is not accepted; it maps model names to lists "
                         "of positive integers, e.g. steps = { unet = [30, 100], cunet = [5] }")
    for key in ("batch", "repeats"):
        value = table.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"[sampling] {key} = {value!r} is not accepted; {key} takes a positive "
                             "integer")
    if not isinstance(table.get("sampler", "ddpm"), str):
        raise UsageError(f"[sampling] sampler = {table['sampler']!r} is not accepted; use one of "
                         f"{', '.join(SAMPLERS)}")


def _model_tables(tables: Any) -> tuple[dict[str, str], dict[str, dict[str, Any]], dict[str, str]]:
    """`[models.NAME]` tables -> (aliases, their keyword arguments, factories).

    `preset = "cunet"` runs a preset under another name with `kwargs` as overrides;
    `factory = "package.module:callable"` (or "file.py:callable") builds a user's denoiser with
    `kwargs` as keyword arguments."""
    example = ('[models.cunet-native] preset = "cunet", kwargs = { solver_backend = "native" }, or '
               '[models.mynet] factory = "my_pkg.nets:make_net"')
    if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
        raise UsageError(f"[models] must hold tables, e.g. {example}")
    aliases, kwargs_of, factories = {}, {}, {}
    for name, table in tables.items():
        extra = set(table) - {"preset", "kwargs", "factory"}
        preset, factory = table.get("preset"), table.get("factory")
        if extra or (preset is None) == (factory is None):
            raise UsageError(f"[models.{name}] takes preset = NAME or factory = 'module:callable' "
                             f"(one of them) and optional kwargs = {{...}}; got {table!r}")
        if preset is not None and preset not in models.available():
            raise UsageError(f"[models.{name}] preset {preset!r} is unknown; available: "
                             f"{', '.join(models.available())}")
        if factory is not None and not (isinstance(factory, str) and is_factory_reference(factory)):
            raise UsageError(f"[models.{name}] factory {factory!r}: expected 'package.module:callable' "
                             "or 'path/to/file.py:callable'")
        if name in models.available():
            raise UsageError(f"[models.{name}]: '{name}' is already a preset name; choose another name")
        kwargs = table.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise UsageError(f"[models.{name}] kwargs must be a table, e.g. kwargs = {{ width = 8 }}")
        kwargs_of[name] = dict(kwargs)
        if preset is not None:
            aliases[name] = preset
        else:
            factories[name] = factory
    return aliases, kwargs_of, factories


def _table(raw: dict[str, Any], key: str, kind: type) -> dict[str, Any]:
    table = raw.get(key, {})
    allowed = set(kind.__dataclass_fields__)
    if not isinstance(table, dict) or set(table) - allowed:
        raise UsageError(f"[{key}] takes only {', '.join(sorted(allowed))}; got {table!r}")
    return table
