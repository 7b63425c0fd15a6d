"""Where a run keeps its checkpoints, which one is the latest, and loading one back.

The file format is `bench.checkpoint`'s (the one whose size the efficiency harness reports); this
module adds the folder convention `step_0001234.pt` and the rules: the newest file is the one a
run resumes from, and if it cannot be read that is an error, never a silent fresh start.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.checkpoint import load_checkpoint, make_ema
from bench.errors import UsageError

PATTERN = re.compile(r"^step_(\d{7,})\.pt$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}.pt"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint in `folder`, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = PATTERN.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(folder: Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def prune(folder: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints."""
    for _, path in list_checkpoints(folder)[:-keep]:
        path.unlink(missing_ok=True)


def load_latest(folder: Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The newest checkpoint of `folder` (None when it has none).

    A newest file that cannot be read raises UsageError naming it and what to do; an older good
    one is never picked silently, because that would quietly throw training away.
    """
    path = latest_checkpoint(folder)
    if path is None:
        return None
    try:
        state = load_checkpoint(path, map_location=map_location)
    except UsageError as error:
        older = [p.name for _, p in list_checkpoints(folder)[:-1]]
        hint = (f"delete it to resume from {older[-1]}" if older
                else "delete it (or use another --out) to start over")
        raise UsageError(f"cannot resume: corrupt checkpoint {path} ({error}); {hint}") from None
    state["path"] = path
    return state


def check_same_run(state: dict[str, Any], spec: dict[str, Any]) -> None:
    """UsageError if the checkpoint was made for a different model/data/diffusion than `spec`."""
    saved = state.get("meta", {}).get("spec", {})
    diffs = [f"{key}: checkpoint {saved.get(key)!r} vs now {value!r}"
             for key, value in spec.items() if _comparable(saved.get(key)) != _comparable(value)
             and not (key == "model_config" and key not in saved)]  # written before it existed
    if diffs:
        raise UsageError(f"{state['path']} belongs to a different run ({'; '.join(diffs)}); "
                         "use another --out or the original settings")


def _comparable(value: Any) -> Any:
    """A spec value as JSON would hold it (tuples as lists), without a model_config's `preset`
    name (added later; the fields decide), so a checkpoint of the same run always matches."""
    value = json.loads(json.dumps(value, default=str))
    if isinstance(value, dict) and "family" in value:
        value.pop("preset", None)
    return value


def build_from_meta(meta: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    """A fresh (denoiser, diffusion) pair as described by a checkpoint's meta['spec']."""
    import models
    from models.diffusion import GaussianDiffusion

    spec = meta.get("spec")
    if not isinstance(spec, dict) or "model" not in spec:
        raise UsageError("checkpoint meta has no 'spec': it was not written by bench.train")
    stored = spec.get("model_config")
    if isinstance(stored, dict):
        model = models.build_stored(stored)
    else:  # written before checkpoints stored the whole configuration: today's preset
        model = models.build(spec["model"], **spec.get("overrides", {}))
    diffusion = GaussianDiffusion(schedule=spec["schedule"], timesteps=spec["timesteps"],
                                  prediction=spec["prediction"])
    return model, diffusion


def load_for_sampling(path: Path, device: str | torch.device = "cpu", *,
                      use_ema: bool = True) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """(denoiser in eval mode with the EMA weights, diffusion, meta) from a training checkpoint."""
    state = load_checkpoint(path, map_location="cpu")
    meta = dict(state["meta"])
    model, diffusion = build_from_meta(meta)
    try:
        if use_ema:
            ema = make_ema(model, 0.0)
            ema.load_state_dict(state["ema"])
            model = ema.module
        else:
            model.load_state_dict(state["model"])
    except RuntimeError as error:  # e.g. an old checkpoint of a preset that has changed since
        raise UsageError(f"{path} does not fit the network it describes "
                         f"({str(error).strip().splitlines()[0][:160]}); it was made for another "
                         "configuration of the preset; retrain, or use the code it was made with") \
            from None
    diffusion.load_state_dict(state["schedule"])
    meta["step"] = int(state["step"])
    return model.to(device).eval(), diffusion.to(device), meta
