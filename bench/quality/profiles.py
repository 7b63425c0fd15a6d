"""Quality profiles: train each model, then sweep FID/KID against sampling steps.

    run_quality_profile("digits", Path("results/quality-digits"))

The profiles are TOML files with a `[quality]` table in bench/profiles/ (smoke.toml, digits.toml,
paper-quality.toml, beside the efficiency ones; `bench.profiles` reads and lists them), decoded here
into a `QualityProfile`: `[quality]` (datasets, resolution, channels, models, threads, device,
hflip_datasets), `[overrides]` (model -> preset overrides), `[train]` (TrainConfig fields shared by
every model) and `[sweep]` (SweepSettings fields).

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
from bench.profiles import load_profile, profile_names
from bench.quality.sweep import (
    UNTRAINED,
    SweepContext,
    SweepEntry,
    SweepSettings,
    record_extractor,
    run_sweep,
    score_real_reference,
    time_entry,
)
from bench.results.keys import key_parts, train_cell_key
from bench.results.paths import safe_name
from bench.results.schema import context_row
from bench.results.store import MeasurementStore, RankStore, merge_rank_files
from bench.train import TrainConfig, TrainingDiverged, train
from bench.train.checkpoints import latest_checkpoint, load_for_sampling
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
    train_seeds: tuple[int, ...] | None = None
    """Independent trainings of every model (same data and budget, seed = training seed); the
    scores' confidence intervals run across them. None: one training with [train] seed."""

    part: tuple[int, ...] | None = None
    """The training seeds this run trains and sweeps (`--train-seeds`, a run in parts); None: all.
    The profile's first training stays the one that is timed and that makes the untrained
    references, in whichever part it runs, so that a run in parts measures what one run would."""

    def __post_init__(self) -> None:
        self.sweep.check_timesteps(self.train.timesteps)

    def trainings(self) -> tuple[int | None, ...]:
        """The training seeds as the keys and rows name them (None: the one unnamed training)."""
        return self.train_seeds if self.train_seeds else (None,)

    def trainings_now(self) -> tuple[int | None, ...]:
        """The trainings this run makes: `part`, else all of them."""
        return self.part if self.part is not None else self.trainings()


QUALITY_KEYS = {"datasets", "resolution", "channels", "models", "threads", "device", "hflip_datasets",
                "train_seeds"}
TABLES = {"description", "quality", "overrides", "train", "sweep"}
PER_RUN = {"model", "dataset", "out", "resolution", "channels", "width", "overrides", "hflip", "device"}
"""TrainConfig fields the profile fills in per model and dataset (not settable in [train])."""


def parse_quality(raw: dict[str, Any], name: str, where: str = "") -> QualityProfile:
    """A decoded `[quality]` profile file as a QualityProfile; one-line UsageErrors for bad content."""
    where = where or name
    unknown = set(raw) - TABLES
    if unknown:
        raise UsageError(f"{where}: unknown table(s) {', '.join(sorted(unknown))}; a quality profile "
                         "takes description, [quality], [overrides], [train], [sweep]")
    quality = _settings(raw, "quality", QUALITY_KEYS, where)
    overrides = raw.get("overrides", {})
    if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
        raise UsageError(f"{where}: [overrides] must map model names to tables, e.g. "
                         "unet = { width = 8 }")
    names = quality.get("models")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise UsageError(f"{where}: [quality] models must be a non-empty list of model names")
    cut = set(overrides) - set(names)
    if cut:
        raise UsageError(f"{where}: [overrides] names {', '.join(sorted(cut))}, not among "
                         "[quality] models")
    train_fields = set(TrainConfig.__dataclass_fields__) - PER_RUN
    sweep_fields = set(SweepSettings.__dataclass_fields__) - {"cache_dir"}
    train = _settings(raw, "train", train_fields, where)
    sweep = {k: tuple(v) if isinstance(v, list) else v
             for k, v in _settings(raw, "sweep", sweep_fields, where).items()}
    if "steps" not in sweep:
        raise UsageError(f"{where}: [sweep] steps is missing, e.g. steps = [5, 10, 20]")
    try:
        return QualityProfile(
            name=name, description=str(raw.get("description", "")),
            datasets=tuple(quality.get("datasets", ("digits",))),
            resolution=quality.get("resolution", 32), channels=quality.get("channels"),
            models=tuple(ModelPlan(n, dict(overrides.get(n, {}))) for n in names),
            train=TrainConfig(model=names[0], **train), sweep=SweepSettings(**sweep),
            hflip_datasets=tuple(quality.get("hflip_datasets", ())),
            threads=quality.get("threads"), device=quality.get("device", "auto"),
            train_seeds=_train_seeds(quality.get("train_seeds"), where))
    except TypeError as error:  # a value of the wrong kind, e.g. datasets = 3
        raise UsageError(f"{where}: {error}") from None


def only_train_seeds(profile: QualityProfile, text: str) -> QualityProfile:
    """`profile` limited to some of its training seeds ("0" or "1,2", from `--train-seeds`); the
    rows and checkpoints keep their names, so a later run with the others resumes the rest."""
    if not profile.train_seeds:
        raise UsageError(f"--train-seeds {text!r}: profile {profile.name!r} has no [quality] "
                         "train_seeds (it trains each model once); leave the flag out")
    have = profile.trainings()
    try:
        wanted = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        wanted = ()
    if not wanted or len(set(wanted)) != len(wanted) or not set(wanted) <= set(have):
        raise UsageError(f"--train-seeds {text!r}: give distinct training seeds of profile "
                         f"{profile.name!r}, comma-separated, from {', '.join(map(str, have))}")
    return replace(profile, part=tuple(s for s in have if s in wanted))


def _train_seeds(value: Any, where: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    ok = isinstance(value, list) and value and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    if not ok or len(set(value)) != len(value):
        raise UsageError(f"{where}: [quality] train_seeds must be a list of distinct non-negative "
                         f"integers, e.g. [0, 1, 2]; got {value!r}")
    return tuple(value)


def _settings(raw: dict[str, Any], table: str, allowed: set[str], where: str) -> dict[str, Any]:
    values = raw.get(table, {})
    if not isinstance(values, dict) or set(values) - allowed:
        extra = sorted(set(values) - allowed) if isinstance(values, dict) else values
        raise UsageError(f"{where}: [{table}] does not take {extra!r}; it takes "
                         f"{', '.join(sorted(allowed))}")
    return values


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
    """The built-in quality profile `name` (bench/profiles/NAME.toml with a [quality] table)."""
    found = load_profile(name)
    if found.kind != "quality":
        raise UsageError(f"'{name}' is an efficiency profile, not a quality profile; quality "
                         f"profiles: {', '.join(profile_names('quality'))}")
    profile = parse_quality(found.raw, name, str(found.path))
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


def check_device(profile: QualityProfile) -> None:
    """A profile that asks for CUDA on a machine without it: one line, before anything is done."""
    if str(profile.device).startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"profile {profile.name} needs a CUDA GPU (device = {profile.device!r}) and "
                         "this machine has none; run it on a GPU machine, or run the 'mnist' "
                         "profile on this CPU")


def _load_heldout(profile: QualityProfile, dataset: str):
    """The dataset's fixed held-out split at the profile's resolution, or None if it has none."""
    from bench.data import dataset_info, load_dataset

    name = dataset_info(dataset).heldout
    if name is None:
        return None
    return load_dataset(name, root=None, resolution=profile.resolution, channels=profile.channels)


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


def training_name(dataset: str, model: str, train_seed: int | None) -> str:
    """The file-safe name of one training: its checkpoint folder and loss-curve file."""
    name = f"{dataset}-{safe_name(model)}"
    return name if train_seed is None else f"{name}-train{train_seed}"


def _train_model(profile: QualityProfile, plan: ModelPlan, dataset: str, out_dir: Path,
                 store: MeasurementStore | None, base: dict[str, Any], dist: DistContext,
                 train_seed: int | None = None):
    """Train (or resume, or find finished) one model; rows for its loss, steps and time."""
    overrides = dict(plan.overrides)
    width = overrides.pop("width", None)
    name = training_name(dataset, plan.name, train_seed)
    config = replace(profile.train, model=plan.name, dataset=dataset, resolution=profile.resolution,
                     channels=profile.channels, width=width, overrides=overrides,
                     hflip=dataset in profile.hflip_datasets, device=str(dist.device),
                     out=out_dir / "checkpoints" / name)
    if train_seed is not None:
        config = replace(config, seed=train_seed)
    cell = train_cell_key(dataset, plan.name, train_seed)
    row = {**base, "model": plan.name, "cell": cell, "method": "bench.train",
           "batch_size": config.batch_size, "train_seed": train_seed}
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
            timed = train_seed == profile.trainings()[0]  # timing cells are the first training's
            store.drop_cells([c for c in store.done_cells()
                              if _trained_cell_of(c, dataset, plan.name, train_seed, timed=timed)])
            store.save()
        log = config.out / "loss.csv"
        if log.is_file():
            target = out_dir / "training" / f"{name}.csv"
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


def _trained_cell_of(key: str, dataset: str, model: str, train_seed: int | None = None, *,
                     timed: bool = True) -> bool:
    """Whether a cell key is a sweep, timing or likelihood cell of this training of this model on
    this dataset (the key's last part names the training seed when there are several). Timing
    cells name no training: they are the timed (first) training's, so `timed` says whether this
    training is that one (a later seed trained again must not drop the first one's timing)."""
    parts = key_parts(key)
    if len(parts) < 8 or parts[1] != model or parts[7] != dataset:
        return False
    named = f"train{train_seed}" if train_seed is not None else None
    if parts[0] == "likelihood":
        return (parts[8] if len(parts) > 8 else None) == named
    if parts[0] not in ("quality", "time_per_sample_s") or len(parts) < 10 or parts[8] != "trained":
        return False
    if parts[0] == "time_per_sample_s":  # timed once per model, on its first training
        return timed
    return (parts[11] if len(parts) > 11 else None) == named


def _untrained(trained_meta: dict[str, Any], seed: int):
    """The trained model's architecture and diffusion at their seeded initialisation."""
    from bench.train.checkpoints import build_from_meta

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, diffusion = build_from_meta(trained_meta)
    return model.eval(), diffusion


def run_quality_profile(name: str | QualityProfile, out_dir: Path, *, resume: bool = True,
                        models: list[str] | None = None,
                        model_args: dict[str, Any] | None = None,
                        train_only: bool = False) -> Path:
    """Run quality profile `name` (a built-in profile's name, or a QualityProfile) into `out_dir` and
    return the results directory (`out_dir`).

    Trains every model (resuming from its checkpoints), then sweeps sampling steps and scores
    each set; finished cells of an earlier run are kept unless `resume` is False, which first
    deletes this profile's outputs in `out_dir`. `models` (presets or factory references) replace
    the profile's models (`with_models`). `train_only` stops after training (a later call, or a
    call on another machine sharing `out_dir`, scores the finished checkpoints). Works as one
    process or under torchrun (all ranks call it; rank 0 writes). Bad settings or missing data
    raise UsageError before any training.
    """
    from bench.context import run_context

    profile = get_profile(name) if isinstance(name, str) else name
    if models:
        profile = with_models(profile, models, model_args)
    out_dir = Path(out_dir)
    check_device(profile)
    reals = {dataset: _load_real(profile, dataset) for dataset in profile.datasets}
    heldouts = {dataset: _load_heldout(profile, dataset) for dataset in profile.datasets}
    for dataset in profile.datasets:  # n against the real sets, before anything is trained
        held = heldouts[dataset]
        profile.sweep.check_real(len(reals[dataset]), None if held is None else len(held))
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
                             context, train_only, heldouts[dataset])
    finally:
        dist.close()
    return out_dir


@dataclass
class _Shard:
    """One torchrun rank's part of a quality run: (model, training seed) units dealt round-robin,
    each trained and swept by this rank alone (`local`, a world of one: no DDP), its rows in its
    own rank file (`store`), merged by rank 0 at `finish`. Without torchrun: everything, the
    main store, no merge."""

    dist: DistContext
    local: DistContext
    store: Any
    out_dir: Path
    main_store: MeasurementStore | None

    @classmethod
    def start(cls, dist: DistContext, out_dir: Path, store: MeasurementStore | None) -> _Shard:
        if not dist.is_distributed:
            return cls(dist, dist, store, out_dir, store)
        if dist.is_main:  # rows a crashed run left in rank files count as finished
            merge_rank_files(out_dir, store)
        finished = dist.broadcast_object(store.done_cells() if dist.is_main else None)
        local = DistContext(rank=0, world_size=1, local_rank=dist.local_rank, device=dist.device)
        return cls(dist, local, RankStore(out_dir, dist.rank, finished), out_dir, store)

    def mine(self, units: list[Any]) -> list[Any]:
        return units[self.dist.rank::self.dist.world_size]

    def say(self, text: str) -> None:
        if self.dist.is_distributed:
            print(f"[rank {self.dist.rank}] {text}", flush=True)
        elif self.dist.is_main:
            print(text, flush=True)

    def finish(self) -> None:
        """Wait for every rank; rank 0 merges their rows into measurements.csv."""
        if not self.dist.is_distributed:
            return
        self.dist.barrier()
        if self.dist.is_main:
            merge_rank_files(self.out_dir, self.main_store)
        self.dist.barrier()


def _sweep_entries(profile: QualityProfile, plan: ModelPlan, checkpoint: Path, out_dir: Path,
                   device: torch.device, train_seed: int | None, sweep: SweepSettings,
                   reference: bool) -> list[SweepEntry]:
    """The trained checkpoint as a sweep entry (timed if it is the model's first training) and,
    with `reference`, the architecture's untrained reference."""
    model, diffusion, meta = load_for_sampling(checkpoint, device)
    source = model_source(plan.name, plan.overrides).with_channels(meta["spec"]["channels"])
    solver, solver_steps, backend = source.solver()
    columns = {"solver": solver, "solver_steps": solver_steps, "solver_backend": backend,
               "config": json.dumps(meta["spec"].get("model_config"), sort_keys=True, default=str),
               "train_seed": train_seed}
    first = train_seed == profile.trainings()[0]
    entries = [SweepEntry(plan.name, model, diffusion, _relative(checkpoint, out_dir), sweep.steps,
                          sweep.samplers, sweep.seeds, timed=first, extra=columns,
                          sampler_steps=sweep.sampler_steps)]
    if reference:  # the untrained reference: once per architecture
        untrained, untrained_diffusion = _untrained(meta, profile.train.seed)
        entries.append(SweepEntry(plan.name, untrained, untrained_diffusion, UNTRAINED,
                                  sweep.untrained_grid(), ("ddim",), sweep.untrained_seeds,
                                  timed=False, extra={**columns, "train_seed": None}))
    return entries


def _run_dataset(profile: QualityProfile, dataset: str, real: Any, sweep: SweepSettings,
                 out_dir: Path, store: MeasurementStore | None, dist: DistContext,
                 context: dict[str, Any], train_only: bool = False, heldout: Any = None) -> None:
    """Train every (model, training seed) unit, sweep and score them, then time the models.

    Under torchrun the units are dealt to the ranks (`_Shard`); rank 0 also scores the real-data
    floor, and times every model alone once all ranks are done (ranks of one machine would share
    its cores)."""
    shape = tuple(real[0][0].shape)
    base = _base_row(profile, dataset, shape, dist, context)
    trainings = profile.trainings()
    # every model's first training before any model's second: a run cut short still compares them
    units = [(train_seed, plan) for train_seed in profile.trainings_now() for plan in profile.models]
    shard = _Shard.start(dist, out_dir, store)
    entries: list[SweepEntry] = []
    for train_seed, plan in shard.mine(units):
        seed_note = "" if train_seed is None else f" (training seed {train_seed})"
        shard.say(f"[{profile.name}] training {plan.name} on {dataset}{seed_note}")
        result = _train_model(profile, plan, dataset, out_dir, shard.store, base, shard.local,
                              train_seed)
        if result is not None and not train_only:
            entries += _sweep_entries(profile, plan, result.checkpoint, out_dir, dist.device,
                                      train_seed, sweep, reference=train_seed == trainings[0])
    if train_only:
        shard.finish()
        return
    # Untrained references first: they are cheap, and show at once what training must beat.
    entries.sort(key=lambda entry: entry.trained)
    ctx = SweepContext(dataset=dataset, real=real, shape=shape, store=shard.store, base_row=base,
                       samples_dir=out_dir / "samples", dist=shard.local, heldout=heldout)
    if dist.is_main:
        grid = ", ".join(f"{s} {list(sweep.steps_for(s))}" for s in sweep.samplers)
        print(f"[{profile.name}] sweeping {dataset}: steps per sampler {grid}, n={sweep.n}, "
              f"seeds {list(sweep.seeds)}", flush=True)
        record_extractor(sweep, ctx)  # trains a classifier extractor once, before the ranks use it
        score_real_reference(sweep, ctx)
    dist.barrier()
    run_sweep(entries, sweep, ctx, references=False, timing=False)
    shard.finish()
    _time_models(profile, dataset, units, entries, sweep, out_dir, store, dist, base, real, shape)


def _time_models(profile: QualityProfile, dataset: str, units: list[Any],
                 entries: list[SweepEntry], sweep: SweepSettings, out_dir: Path,
                 store: MeasurementStore | None, dist: DistContext, base: dict[str, Any],
                 real: Any, shape: tuple[int, ...]) -> None:
    """Rank 0 times each model's first training (loading those another rank trained)."""
    if dist.is_main:
        timed = {entry.model_name: entry for entry in entries if entry.timed and entry.trained}
        first = profile.trainings()[0]
        for train_seed, plan in units:
            if train_seed != first or plan.name in timed:
                continue
            checkpoint = latest_checkpoint(out_dir / "checkpoints"
                                           / training_name(dataset, plan.name, train_seed))
            if checkpoint is not None:  # None: its training diverged (a failed row says so)
                timed[plan.name] = _sweep_entries(profile, plan, checkpoint, out_dir, dist.device,
                                                  train_seed, sweep, reference=False)[0]
        ctx = SweepContext(dataset=dataset, real=real, shape=shape, store=store, base_row=base,
                           samples_dir=out_dir / "samples", dist=DistContext(device=dist.device))
        done = store.done_cells()
        for entry in timed.values():
            time_entry(entry, sweep, ctx, done)
    dist.barrier()
