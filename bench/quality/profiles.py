"""Quality profiles: train each model, then sweep FID/KID against sampling steps.

    run_quality_profile("digits", Path("results/quality-digits"))

- `smoke`: two tiny models on 32x32 digits, a few training steps, a tiny sweep (CI; < 2 min).
- `digits`: the offline default. unet, cunet and cunet-film with every width scaled by 1/4 of the
  paper's (U-Net dim 16, cU-Net nf 4, attention 4 heads x 8), 32x32 digits, one equal budget each
  (800 Adam steps of 32 images, v-prediction, sigmoid schedule), then steps 5-100 with DDPM and
  DDIM, n = 100 per set, 2 seeds, scored with digits-classifier features. About 20 minutes on a
  2-core CPU (2 threads), far less on a GPU.
- `paper-quality`: 64x64 RGB, full-width presets, the authors' recipe (v-prediction, sigmoid
  schedule, EMA 0.9999 every 10 steps), datasets from $BENCH_DATA_DIR, standard Inception FID.
  Meant for GPUs (torchrun for several).

Results directory layout: measurements.csv, environment.json, training/<dataset>-<model>.csv (loss
curves), samples/*.npz (grid images) -- all small, meant to be committed -- plus checkpoints/ and
cache/ (large; not meant for git).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from bench.errors import UsageError
from bench.files import atomic_write_text
from bench.measure.workload import torch_threads
from bench.quality.sweep import SweepContext, SweepEntry, SweepSettings, run_sweep
from bench.results.keys import key_parts, train_cell_key
from bench.results.paths import safe_name
from bench.results.schema import context_row
from bench.results.store import MeasurementStore
from bench.train import TrainConfig, TrainingDiverged, train
from bench.train.checkpoints import load_for_sampling
from bench.train.distributed import DistContext, init_distributed
from models import model_source

ENV_DATASETS = "BENCH_QUALITY_DATASETS"
"""Comma-separated subset of paper-quality's datasets (default: all three)."""


@dataclass(frozen=True)
class ModelPlan:
    """A registry preset and its `models.build` overrides for this profile."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QualityProfile:
    name: str
    description: str
    datasets: tuple[str, ...]
    resolution: int
    channels: int | None
    models: tuple[ModelPlan, ...]
    train: TrainConfig
    """Training settings shared by every model (model, dataset and out are filled in per run)."""
    sweep: SweepSettings
    hflip_datasets: tuple[str, ...] = ()
    threads: int | None = None
    """torch CPU threads for the whole profile (None: torch's default)."""
    device: str = "auto"


# v-prediction on the sigmoid schedule, as the authors trained (PAPER.md section 4). It matters for
# the cU-Nets: their lift instance-normalises x_t, so they cannot see its scale, and with
# eps-prediction on the linear schedule their samples collapse to near-black or near-white images
# (digits-classifier FID ~30 after 300 steps, against ~3 with v-prediction and the sigmoid schedule).
_SMOKE_TRAIN = TrainConfig(model="unet", steps=30, batch_size=16, lr=2e-3, ema_decay=0.9,
                           prediction="v", schedule="sigmoid", checkpoint_every=15, log_every=5,
                           progress=False)
_DIGITS_TRAIN = TrainConfig(model="unet", steps=800, batch_size=32, lr=1e-3, ema_decay=0.99,
                            prediction="v", schedule="sigmoid", checkpoint_every=100,
                            log_every=20, progress=True)
_PAPER_TRAIN = TrainConfig(model="unet", steps=100_000, batch_size=128, lr=2e-4, ema_decay=0.9999,
                           ema_every=10, prediction="v", schedule="sigmoid", amp=True,
                           checkpoint_every=5_000, log_every=100, num_workers=8, progress=True)

PROFILES: dict[str, QualityProfile] = {
    "smoke": QualityProfile(
        name="smoke",
        description="tiny unet and cunet-film on 32x32 digits, 30 training steps, 2x2 sweep",
        datasets=("digits",), resolution=32, channels=1,
        models=(ModelPlan("unet", {"width": 8, "attn_heads": 1, "attn_dim_head": 8}),
                ModelPlan("cunet-film", {"width": 2, "attn_heads": 1, "attn_dim_head": 8})),
        train=_SMOKE_TRAIN,
        sweep=SweepSettings(steps=(2, 5), n=24, seeds=(0, 1), chunk=24, time_repeats=1, grid=16,
                            untrained_steps=(5,)),
        threads=1, device="cpu",
    ),
    "digits": QualityProfile(
        name="digits",
        description="unet / cunet / cunet-film at 1/4 of the paper's widths on 32x32 digits",
        datasets=("digits",), resolution=32, channels=1,
        models=(ModelPlan("unet", {"width": 16, "attn_dim_head": 8}),
                ModelPlan("cunet", {"width": 4, "attn_dim_head": 8}),
                ModelPlan("cunet-film", {"width": 4, "attn_dim_head": 8})),
        train=_DIGITS_TRAIN,
        sweep=SweepSettings(steps=(5, 10, 20, 50, 100), n=100, seeds=(0, 1), chunk=50,
                            time_repeats=3, grid=64, untrained_steps=(5, 20)),
    ),
    "paper-quality": QualityProfile(
        name="paper-quality",
        description="full-width presets at 64x64 on MNIST / CelebA / LSUN Church (GPU)",
        datasets=("mnist", "celeba", "lsun-church"), resolution=64, channels=3,
        models=(ModelPlan("unet"), ModelPlan("cunet"), ModelPlan("cunet-film")),
        train=_PAPER_TRAIN,
        sweep=SweepSettings(steps=(5, 10, 20, 30, 50, 80, 100, 250), n=10_000, seeds=(0, 1, 2),
                            extractor="inception-v3-compat", chunk=250, time_repeats=3, grid=64,
                            n_real=50_000),
        hflip_datasets=("celeba", "lsun-church"),
    ),
}
QUALITY_PROFILES: tuple[str, ...] = tuple(PROFILES)


def with_models(profile: QualityProfile, names: list[str],
                model_args: dict[str, Any] | None = None) -> QualityProfile:
    """The profile training and sweeping `names` (presets or factory references) instead of its
    own models: a model the profile lists keeps its settings (its scaled widths), with
    `model_args` (preset overrides or factory kwargs) on top. Checked before any training."""
    own = {plan.name: plan for plan in profile.models}
    plans = []
    for name in dict.fromkeys(names):
        plan = ModelPlan(name, {**(own[name].overrides if name in own else {}), **(model_args or {})})
        source = model_source(plan.name, plan.overrides).with_channels(profile.channels or 3)
        source.check(channels=profile.channels or 3, resolution=profile.resolution)
        plans.append(plan)
    return replace(profile, models=tuple(plans))


def get_profile(name: str) -> QualityProfile:
    if name not in PROFILES:
        raise UsageError(f"unknown quality profile {name!r}; choose one of {', '.join(PROFILES)}")
    profile = PROFILES[name]
    if name == "paper-quality" and os.environ.get(ENV_DATASETS, "").strip():
        wanted = tuple(d.strip() for d in os.environ[ENV_DATASETS].split(",") if d.strip())
        bad = [d for d in wanted if d not in profile.datasets]
        if bad:
            raise UsageError(f"{ENV_DATASETS}: unknown dataset(s) {bad}; "
                             f"paper-quality uses {', '.join(profile.datasets)}")
        profile = replace(profile, datasets=wanted)
    return profile


# ----------------------------------------------------------------------------- plumbing


def _load_real(profile: QualityProfile, dataset: str):
    from bench.data import load_dataset

    return load_dataset(dataset, root=None, resolution=profile.resolution,
                        channels=profile.channels, limit=profile.sweep.n_real)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _base_row(profile: QualityProfile, dataset: str, shape: tuple[int, int, int],
              dist: DistContext, context: dict[str, Any]) -> dict[str, Any]:
    row = context_row({**context, "versions": {"torch": torch.__version__}}, model="",
                      profile=profile.name, dataset=dataset, device=str(dist.device),
                      resolution=shape[1], channels=shape[0], dtype="float32",
                      threads=torch.get_num_threads(), timestamp=context.get("timestamp_utc"))
    del row["model"]  # each row names its own
    return row


def clear_outputs(out_dir: Path) -> None:
    """Remove what a profile writes (for resume=False); nothing else in `out_dir` is touched."""
    for name in ("measurements.csv", "environment.json"):
        (out_dir / name).unlink(missing_ok=True)
    for name in ("checkpoints", "samples", "training"):
        shutil.rmtree(out_dir / name, ignore_errors=True)


# ----------------------------------------------------------------------------- the pipeline


def _train_model(profile: QualityProfile, plan: ModelPlan, dataset: str, out_dir: Path,
                 store: MeasurementStore | None, base: dict[str, Any], dist: DistContext):
    """Train (or resume, or find finished) one model; rows for its loss, steps and time."""
    overrides = dict(plan.overrides)
    width = overrides.pop("width", None)
    config = replace(profile.train, model=plan.name, dataset=dataset, resolution=profile.resolution,
                     channels=profile.channels, width=width, overrides=overrides,
                     hflip=dataset in profile.hflip_datasets, device=str(dist.device),
                     out=out_dir / "checkpoints" / f"{dataset}-{safe_name(plan.name)}")
    cell = train_cell_key(dataset, plan.name)
    row = {**base, "model": plan.name, "cell": cell, "method": "bench.train",
           "batch_size": config.batch_size}
    try:
        result = train(config, dist)
    except TrainingDiverged as error:
        if store is not None:
            store.drop_cells([cell])
            store.add([{**row, "metric": "train_loss", "status": "failed", "error": str(error)}])
        print(f"error: {error}", flush=True)
        return None
    if dist.is_main:
        if result.resumed_from != result.step:
            # The weights changed since any earlier sweep of this model: re-measure its cells.
            store.drop_cells([c for c in store.done_cells() if _trained_cell_of(c, dataset, plan.name)])
            store.save()
        log = config.out / "loss.csv"
        if log.is_file():
            target = out_dir / "training" / f"{dataset}-{safe_name(plan.name)}.csv"
            atomic_write_text(target, log.read_text(encoding="utf-8"))
        checkpoint = _relative(result.checkpoint, out_dir)
        store.drop_cells([cell])
        store.add([
            {**row, "metric": "train_loss", "value": result.loss, "unit": "loss",
             "stat": "mean_last_10pct", "checkpoint": checkpoint, "status": "ok"},
            {**row, "metric": "train_steps", "value": result.step, "unit": "steps",
             "stat": "value", "checkpoint": checkpoint, "status": "ok"},
            {**row, "metric": "train_time_s", "value": result.seconds, "unit": "s",
             "stat": "value", "checkpoint": checkpoint, "status": "ok"},
            {**row, "metric": "params", "value": result.params, "unit": "count",
             "stat": "value", "checkpoint": checkpoint, "status": "ok"},
        ])
    return result


def _trained_cell_of(key: str, dataset: str, model: str) -> bool:
    """Whether a cell key is a sweep or timing cell of this trained model on this dataset."""
    parts = key_parts(key)
    return (len(parts) >= 10 and parts[0] in ("quality", "time_per_sample_s") and parts[1] == model
            and parts[7] == dataset and parts[8] == "trained")


def _untrained(trained_meta: dict[str, Any], seed: int):
    """The trained model's architecture and diffusion at their seeded initialisation."""
    from bench.train.checkpoints import build_from_meta

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, diffusion = build_from_meta(trained_meta)
    return model.eval(), diffusion


def run_quality_profile(name: str, out_dir: Path, *, resume: bool = True,
                        models: list[str] | None = None,
                        model_args: dict[str, Any] | None = None) -> Path:
    """Run quality profile `name` into `out_dir` and return the results directory (`out_dir`).

    Trains every model (resuming from its checkpoints), then sweeps sampling steps and scores
    each set; finished cells of an earlier run are kept unless `resume` is False, which first
    deletes this profile's outputs in `out_dir`. `models` (presets or factory references) replace
    the profile's models (`with_models`). Works as one process or under torchrun (all ranks call
    it; rank 0 writes). Bad settings or missing data raise UsageError before any training.
    """
    from bench.context import run_context

    profile = get_profile(name)
    if models:
        profile = with_models(profile, models, model_args)
    out_dir = Path(out_dir)
    reals = {dataset: _load_real(profile, dataset) for dataset in profile.datasets}
    if profile.sweep.extractor == "inception-v3-compat":
        from bench.quality.features import resolve_inception_weights

        resolve_inception_weights(profile.sweep.weights_path)
    dist = init_distributed(profile.device)
    try:
        if dist.is_main:
            if not resume:
                clear_outputs(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        context = run_context() if dist.is_main else {}
        if dist.is_main:
            atomic_write_text(out_dir / "environment.json",
                              json.dumps({**context, "profile": profile.name,
                                          "world_size": dist.world_size}, indent=2, default=str))
        store = MeasurementStore(out_dir) if dist.is_main else None
        sweep = replace(profile.sweep, cache_dir=out_dir / "cache")
        with torch_threads(profile.threads):
            for dataset in profile.datasets:
                _run_dataset(profile, dataset, reals[dataset], sweep, out_dir, store, dist,
                             context)
    finally:
        dist.close()
    return out_dir


def _run_dataset(profile: QualityProfile, dataset: str, real: Any, sweep: SweepSettings,
                 out_dir: Path, store: MeasurementStore | None, dist: DistContext,
                 context: dict[str, Any]) -> None:
    shape = tuple(real[0][0].shape)
    base = _base_row(profile, dataset, shape, dist, context)
    entries: list[SweepEntry] = []
    for plan in profile.models:
        if dist.is_main:
            print(f"[{profile.name}] training {plan.name} on {dataset}", flush=True)
        result = _train_model(profile, plan, dataset, out_dir, store, base, dist)
        if result is None:
            continue
        model, diffusion, meta = load_for_sampling(result.checkpoint, dist.device)
        source = model_source(plan.name, plan.overrides).with_channels(meta["spec"]["channels"])
        solver, solver_steps, backend = source.solver()
        columns = {"solver": solver, "solver_steps": solver_steps, "solver_backend": backend,
                   "config": json.dumps(meta["spec"].get("model_config"), sort_keys=True, default=str)}
        label = _relative(result.checkpoint, out_dir)
        entries.append(SweepEntry(plan.name, model, diffusion, label, sweep.steps, sweep.samplers,
                                  sweep.seeds, extra=columns))
        reference, reference_diffusion = _untrained(meta, profile.train.seed)
        entries.append(SweepEntry(plan.name, reference, reference_diffusion, "untrained",
                                  sweep.untrained_grid(), ("ddim",), sweep.untrained_seeds,
                                  timed=False, extra=columns))
    # Untrained references first: they are cheap, and show at once what training must beat.
    entries.sort(key=lambda entry: entry.trained)
    ctx = SweepContext(dataset=dataset, real=real, shape=shape, store=store, base_row=base,
                       samples_dir=out_dir / "samples", dist=dist)
    if dist.is_main:
        print(f"[{profile.name}] sweeping {dataset}: steps {list(sweep.steps)}, samplers "
              f"{list(sweep.samplers)}, n={sweep.n}, seeds {list(sweep.seeds)}", flush=True)
    run_sweep(entries, sweep, ctx)
