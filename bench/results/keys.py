"""Cell keys: the resume key every harness writes into the `cell` column, and the migration of
older runs' keys into today's scheme (so resuming such a run skips its finished cells)."""

from __future__ import annotations

import re
from collections.abc import Iterable

KEY_SEPARATOR = "|"


def cell_key(group: str, model: str, *, device: str | None = None, resolution: int | None = None,
             batch: int | None = None, dtype: str | None = None, steps: int | None = None,
             extra: Iterable[object] = ()) -> str:
    """The one resume key of every harness (matrix, gate, quality sweep, training):
    'group|model|device|resolution|batch|dtype|steps' and then any further parts (execution
    modes, dataset, checkpoint kind, sampler, seed); an absent part is empty. Rows of one cell
    share it; a finished cell's key in measurements.csv is what a resumed run skips."""
    parts = [group, model, device, resolution, batch, dtype, steps, *extra]
    return KEY_SEPARATOR.join("" if p is None else str(p) for p in parts)


def key_parts(key: str) -> list[str]:
    """A cell key split into its parts (see `cell_key`)."""
    return str(key).split(KEY_SEPARATOR)


_OLD_QUALITY_KEY = re.compile(
    r"^(?P<time>time/)?quality/(?P<dataset>[^/]+)/(?P<model>.+)/(?P<kind>trained|untrained|data)/"
    r"(?P<sampler>[^/]+)/s(?P<steps>None|\d+)/seed(?P<seed>None|\d+)$")
_OLD_TRAIN_KEY = re.compile(r"^train/(?P<dataset>[^/]+)/(?P<model>.+)$")


def migrate_cell_key(key: object) -> object:
    """A cell key of an older quality run ('quality/<dataset>/<model>/<kind>/<sampler>/s<steps>/
    seed<seed>', 'time/quality/...', 'train/<dataset>/<model>', or a cell of a metric under its
    former name, e.g. 'profile|...') in today's scheme, so resuming such a run skips its finished
    cells; any other key (or a missing one) as it is."""
    if not isinstance(key, str):
        return key
    found = _OLD_QUALITY_KEY.match(key)
    if found:
        steps = None if found["steps"] == "None" else int(found["steps"])
        seed = None if found["seed"] == "None" else int(found["seed"])
        return quality_cell_key(found["dataset"], found["model"], found["kind"], found["sampler"],
                                steps, seed, timing=bool(found["time"]))
    found = _OLD_TRAIN_KEY.match(key)
    if found:
        return train_cell_key(found["dataset"], found["model"])
    group, sep, rest = key.partition(KEY_SEPARATOR)
    if sep:  # a cell of a metric renamed since (its former name is an alias in the registry)
        from bench.matrix.metrics import current_name

        return f"{current_name(group)}{sep}{rest}"
    return key


def _trained_with(train_seed: int | None) -> tuple[str, ...]:
    """The key part naming a training seed; none for profiles that train each model once."""
    return () if train_seed is None else (f"train{train_seed}",)


def quality_cell_key(dataset: str, model: str, kind: str, sampler: str, steps: int | None,
                     seed: int | None, *, timing: bool = False,
                     train_seed: int | None = None) -> str:
    """A quality-sweep cell: one (dataset, model, checkpoint kind, sampler, steps, seed) set of
    images (`timing`: its time-per-sample measurement); `train_seed` names which of several
    trainings of the model was sampled."""
    group = "time_per_sample_s" if timing else "quality"
    return cell_key(group, model, batch=1 if timing else None, steps=steps,
                    extra=(dataset, kind, sampler, f"seed{seed}", *_trained_with(train_seed)))


def train_cell_key(dataset: str, model: str, train_seed: int | None = None) -> str:
    """The rows of training one model on one dataset (loss, steps, time, params)."""
    return cell_key("train", model, extra=(dataset, *_trained_with(train_seed)))


def likelihood_cell_key(dataset: str, model: str, train_seed: int | None = None) -> str:
    """The held-out bits/dim and per-band denoising error of one trained model."""
    return cell_key("likelihood", model, extra=(dataset, *_trained_with(train_seed)))
