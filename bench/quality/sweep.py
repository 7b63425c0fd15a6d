"""FID and KID against sampling steps: sample every model at every step count with every sampler
and seed, score each set against the real data, write tidy rows.

Scores: the features come from torch-fidelity's extractor (`bench.quality.scoring.
extract_features`); from them `bench.quality.statistics.score_features` computes the Fréchet
distance at the set's n against the whole reference ("fid"), FD-infinity (Chong & Forsyth's
extrapolation to n = infinity, "fid_inf") and KID over subsets smaller than n.

A cell is one (dataset, model, checkpoint, sampler, steps, seed) set of `n` images. Cells that a
previous (interrupted) run finished are skipped. Under torchrun the `n` images of a cell are made
in fixed chunks dealt round-robin to the ranks; each chunk has its own seed, so the set does not
depend on the number of processes. Rank 0 scores and writes.

Besides the trained models the sweep scores two references: the same architecture UNTRAINED
(what training must beat) and `n` real images (the floor at this n), drawn from the dataset's
held-out split when it has one (independent of the reference), else from the reference itself.
Then, for each trained model, the held-out bits/dim and denoising error (`bench.quality.
likelihood`, when there is a held-out split), and last the time per sample, so that the timed
minutes come at the end of a run, where a user can keep the machine quiet.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.errors import UsageError
from bench.results.keys import likelihood_cell_key, quality_cell_key
from bench.results.paths import safe_name
from bench.results.schema import SWEEP_WALL_PER_IMAGE
from bench.train.distributed import DistContext

UNTRAINED = "untrained"
REAL_DATA = "real-data"
SCORE_METRICS = (("fid", "value"), ("fid_inf", "extrapolated"), ("kid_mean", "mean"),
                 ("kid_std", "std"))
SCORE_METHOD = "bench.quality.statistics on torch-fidelity features"


@dataclass(frozen=True)
class SweepSettings:
    """What to sample and how to score it."""

    steps: tuple[int, ...]
    samplers: tuple[str, ...] = ("ddpm", "ddim")
    sampler_steps: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Step counts of a sampler where they differ from `steps` (e.g. a few-step solver's 5-25)."""
    n: int = 100
    seeds: tuple[int, ...] = (0, 1, 2)
    extractor: str = "digits-classifier"
    weights_path: str | None = None
    """Feature-extractor weights (Inception file; None: env var or the cached classifier)."""
    n_real: int | None = None
    """Real reference images (first n_real of the set; None: all)."""
    chunk: int = 50
    """Images per sampling call; also the unit dealt to ranks."""
    kid_subset_size: int | None = None
    """KID subset size, below n (None: n // 2, at most 1,000)."""
    kid_subsets: int = 100
    likelihood_timesteps: int = 10
    """Timesteps per held-out image for bits/dim, one per band of T / this many steps."""
    likelihood_images: int | None = None
    """Held-out images for bits/dim and denoising error (None: all)."""
    time_repeats: int = 3
    """Timed runs of the per-sample time at each step count (batch 1), after a warm-up."""
    grid: int = 64
    """Images kept per cell of the first seed, for the sample grids."""
    untrained_steps: tuple[int, ...] = ()
    """Step counts at which the untrained reference is scored (empty: the sweep's extremes)."""
    untrained_seeds: tuple[int, ...] = (0,)
    cache_dir: Path = Path("runs") / "cache"

    def __post_init__(self) -> None:
        from models.diffusion.samplers import SAMPLERS

        unknown = [s for s in self.samplers if s not in SAMPLERS]
        if unknown:  # an error before anything is trained, never a silent fallback
            raise UsageError(f"unknown sampler(s) {', '.join(map(str, unknown))}; valid: "
                             f"{', '.join(SAMPLERS)}")
        if not isinstance(self.sampler_steps, Mapping):
            raise UsageError(f"[sweep] sampler_steps must map sampler names to step lists, e.g. "
                             f'{{ "dpmsolver++" = [5, 10] }}, got {self.sampler_steps!r}')
        stray = sorted(set(self.sampler_steps) - set(self.samplers))
        if stray:
            raise UsageError(f"[sweep] sampler_steps names {', '.join(stray)}, not among samplers "
                             f"({', '.join(self.samplers)})")
        for where, counts in [("steps", self.steps),
                              *((f"sampler_steps.{s}", c) for s, c in self.sampler_steps.items())]:
            if (not isinstance(counts, list | tuple) or not counts
                    or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in counts)
                    or len(set(counts)) != len(counts)):
                raise UsageError(f"[sweep] {where} must be a non-empty list of distinct integers "
                                 f">= 1, got {counts!r}")
        object.__setattr__(self, "sampler_steps",
                           {s: tuple(c) for s, c in self.sampler_steps.items()})
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 4:
            raise UsageError(f"[sweep] n must be an integer >= 4 (images per scored set), got "
                             f"{self.n!r}")
        size = self.kid_subset_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                                 or not 2 <= size < self.n):
            raise UsageError(f"[sweep] kid_subset_size must be an integer from 2 to n - 1 = "
                             f"{self.n - 1} (below n, so KID's spread is a sampling spread), got "
                             f"{size!r}")

        for name, low, allow_none in (("kid_subsets", 2, False), ("likelihood_timesteps", 1, False),
                                      ("likelihood_images", 2, True)):
            value = getattr(self, name)
            if value is None and allow_none:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"[sweep] {name} must be an integer >= {low}"
                                 f"{' or absent' if allow_none else ''}, got {value!r}")

    def check_real(self, real_count: int, heldout_count: int | None) -> None:
        """UsageError (before any training) when the real sets are too small for this sweep."""
        floor_count = heldout_count if heldout_count is not None else real_count
        what = "held-out split" if heldout_count is not None else "real reference set"
        if self.n > floor_count:
            raise UsageError(f"[sweep] n = {self.n} is larger than the {what} ({floor_count} "
                             f"images), so the real-vs-real floor cannot be measured at n; use "
                             f"n <= {floor_count}")
        if self.n > real_count:
            raise UsageError(f"[sweep] n = {self.n} is larger than the real reference set "
                             f"({real_count} images); use n <= {real_count}")

    def check_timesteps(self, timesteps: int) -> None:
        """UsageError (before any training) when a step count exceeds the chain's T = `timesteps`
        (the [train] setting the models are trained with), or the likelihood bands cannot split
        it (`bench.quality.likelihood.band_edges`, the one rule): finding out at sampling time,
        after hours of training, wastes them."""
        from bench.quality.likelihood import band_edges

        if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 2:
            raise UsageError(f"[train] timesteps must be an integer >= 2, got {timesteps!r}")
        wanted = [("steps", self.steps), ("untrained_steps", self.untrained_steps),
                  *((f"sampler_steps.{s}", c) for s, c in self.sampler_steps.items())]
        for where, counts in wanted:
            over = [c for c in counts if c > timesteps]
            if over:
                raise UsageError(f"[sweep] {where} has {', '.join(map(str, over))}, more than the "
                                 f"chain's T = {timesteps} steps ([train] timesteps); use counts "
                                 f"from 1 to {timesteps}")
        band_edges(timesteps, self.likelihood_timesteps)

    def steps_for(self, sampler: str) -> tuple[int, ...]:
        """The step counts at which `sampler` is swept."""
        return tuple(self.sampler_steps.get(sampler, self.steps))

    def untrained_grid(self) -> tuple[int, ...]:
        if self.untrained_steps:
            return tuple(self.untrained_steps)
        return tuple(sorted({min(self.steps), max(self.steps)}))


@dataclass
class SweepEntry:
    """One denoiser to sweep: `label` is its checkpoint column ('untrained' for the reference)."""

    model_name: str
    model: nn.Module
    diffusion: nn.Module
    label: str
    steps: tuple[int, ...]
    samplers: tuple[str, ...]
    seeds: tuple[int, ...]
    timed: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    sampler_steps: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """A sampler's own step counts, where they differ from `steps`."""

    def grid(self) -> list[tuple[str, int]]:
        """Every (sampler, steps) pair of this denoiser, sampler by sampler."""
        return [(sampler, steps) for sampler in self.samplers
                for steps in self.sampler_steps.get(sampler, self.steps)]

    @property
    def trained(self) -> bool:
        return self.label != UNTRAINED

    @property
    def kind(self) -> str:
        return "trained" if self.trained else UNTRAINED


# ----------------------------------------------------------------------------- pure helpers


def chunk_plan(n: int, chunk: int) -> list[tuple[int, int]]:
    """(index, size) of the sampling calls that make `n` images in chunks of at most `chunk`."""
    if n < 1 or chunk < 1:
        raise UsageError(f"need n >= 1 and chunk >= 1, got n={n}, chunk={chunk}")
    return [(i, min(chunk, n - start)) for i, start in enumerate(range(0, n, chunk))]


def chunk_seed(seed: int, index: int) -> int:
    """The sampler seed of chunk `index` of a cell with seed `seed` (distinct for every pair)."""
    return seed * 1_000_003 + index


def cell_key(dataset: str, model: str, kind: str, sampler: str, steps: int | None,
             seed: int | None) -> str:
    """Resume key of a cell (`bench.results.keys.quality_cell_key`); `kind` is 'trained', 'untrained'
    or 'data'."""
    return quality_cell_key(dataset, model, kind, sampler, steps, seed)


def score_rows(base: Mapping[str, Any], scores: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows for fid, fid_inf, kid_mean and kid_std of one scored set (dimensionless scores)."""
    rows = []
    for metric, stat in SCORE_METRICS:
        rows.append({**base, "metric": metric, "value": float(scores[metric]), "unit": "score",
                     "stat": stat, "method": SCORE_METHOD, "status": "ok", "error": None})
    return rows


def failed_rows(base: Mapping[str, Any], error: str) -> list[dict[str, Any]]:
    """One failed row per score metric, naming why."""
    return [{**base, "metric": metric, "value": None, "unit": "score", "stat": stat,
             "method": SCORE_METHOD, "status": "failed", "error": error}
            for metric, stat in SCORE_METRICS]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images to uint8 (same shape); exact for what torch-fidelity reads."""
    return ((images.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


# ----------------------------------------------------------------------------- sampling


def generate(model: nn.Module, diffusion: nn.Module, shape: tuple[int, int, int], *, n: int,
             steps: int, sampler: str, seed: int, chunk: int, device: torch.device,
             dist: DistContext | None = None) -> torch.Tensor | None:
    """`n` images (uint8, (n, C, H, W)) on rank 0, None on other ranks.

    Chunk i (of `chunk_plan(n, chunk)`) is sampled by rank i mod world_size with seed
    `chunk_seed(seed, i)`, so the result is the same for any number of ranks.
    """
    from models.diffusion import sample

    dist = dist or DistContext(device=device)
    mine = []
    for index, size in chunk_plan(n, chunk):
        if index % dist.world_size != dist.rank:
            continue
        images = sample(model, diffusion, (size, *shape), steps=steps, sampler=sampler,
                        seed=chunk_seed(seed, index), device=device)
        mine.append((index, to_uint8(images)))
    gathered = dist.gather_objects(mine)
    if gathered is None:
        return None
    ordered = sorted((item for part in gathered for item in part), key=lambda item: item[0])
    return torch.cat([images for _, images in ordered])


def save_grid_images(path: Path, images: torch.Tensor, count: int) -> Path:
    """Keep the first `count` images of a cell (uint8) for the report's sample grids."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, images=images[:count].numpy())
    tmp.replace(path)
    return path


def grid_file(samples_dir: Path, dataset: str, model: str, kind: str, sampler: str,
              steps: int | None, seed: int | None, train_seed: int | None = None) -> Path:
    """Where a cell's grid images are kept (named as before the one key scheme, so committed
    samples stay readable; a user's model name made file-safe; `__train<seed>` last when the
    model was trained several times)."""
    parts = ("quality", dataset, safe_name(model), kind, sampler, f"s{steps}", f"seed{seed}")
    if train_seed is not None:
        parts = (*parts, f"train{train_seed}")
    return Path(samples_dir) / ("__".join(parts) + ".npz")


# ----------------------------------------------------------------------------- the sweep


@dataclass
class SweepContext:
    """Where and against what a sweep runs."""

    dataset: str
    real: Any
    """The real reference set (an ImageDataset or tensor at the sampling resolution)."""
    shape: tuple[int, int, int]
    store: Any
    """A bench.results.store.MeasurementStore (used on rank 0 only)."""
    base_row: dict[str, Any]
    """Context columns shared by every row (profile, torch, git_commit, host, device, ...)."""
    samples_dir: Path
    data_root: str | None = None
    dist: DistContext = field(default_factory=DistContext)
    heldout: Any = None
    """The dataset's held-out split at the sampling resolution (None: it has none)."""
    _reference: Any = None

    def features(self, images: Any, settings: SweepSettings):
        """Features of images (a uint8 tensor or a dataset) from the sweep's extractor."""
        from bench.quality.scoring import extract_features

        return extract_features(images, extractor=settings.extractor,
                                weights_path=settings.weights_path, cache_dir=settings.cache_dir,
                                device=str(self.dist.device), data_root=self.data_root)

    def reference_features(self, settings: SweepSettings):
        """Features of the whole real reference set, computed once."""
        if self._reference is None:
            self._reference = self.features(self.real, settings)
        return self._reference


def _done(ctx: SweepContext) -> set[str]:
    done = ctx.store.done_cells() if ctx.dist.is_main else None
    return ctx.dist.broadcast_object(done)


def _score(images: torch.Tensor, ctx: SweepContext, settings: SweepSettings, seed: int,
           base: dict[str, Any]) -> list[dict[str, Any]]:
    from bench.quality.statistics import score_features

    try:
        scores = score_features(ctx.features(images, settings), ctx.reference_features(settings),
                                kid_subset_size=settings.kid_subset_size,
                                kid_subsets=settings.kid_subsets, seed=seed)
    except UsageError as error:
        return failed_rows(base, str(error))
    rows = score_rows(base, scores.values())
    for row in rows:  # what a KID value means depends on its subset size: say it
        if row["metric"].startswith("kid"):
            row["method"] = (f"{SCORE_METHOD}; {scores.kid.subsets} subsets of "
                             f"{scores.kid.subset_size}")
    return rows


def score_real_reference(settings: SweepSettings, ctx: SweepContext) -> None:
    """Score `n` real images (drawn with each seed) against the reference: the floor at this n.
    They come from the held-out split when there is one, else from the reference itself."""
    done = _done(ctx)
    source = ctx.heldout if ctx.heldout is not None else ctx.real
    for seed in settings.seeds:
        cell = cell_key(ctx.dataset, REAL_DATA, "data", "none", None, seed)
        if cell in done or not ctx.dist.is_main:
            continue
        count = min(settings.n, len(source))
        order = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))
        images = torch.stack([_image(source[int(i)]) for i in order[:count]])
        base = {**ctx.base_row, "model": REAL_DATA, "checkpoint": "data", "sampler": "none",
                "steps": None, "seed": seed, "n": count, "feature_extractor": settings.extractor,
                "cell": cell}
        ctx.store.add(_score(to_uint8(images), ctx, settings, seed, base))
    ctx.dist.barrier()


def record_extractor(settings: SweepSettings, ctx: SweepContext) -> None:
    """A classifier extractor's held-out accuracy, once per run: how good the features are."""
    from bench.quality.features import CLASSIFIER_EXTRACTORS, load_classifier, resolve_weights

    cell = cell_key(ctx.dataset, settings.extractor, "extractor", "none", None, None)
    if settings.extractor not in CLASSIFIER_EXTRACTORS or not ctx.dist.is_main:
        return
    if cell in ctx.store.done_cells():
        return
    path = resolve_weights(settings.extractor, settings.weights_path, cache_dir=settings.cache_dir,
                           data_root=ctx.data_root)
    _, meta = load_classifier(path)
    from bench.data import dataset_info

    heldout = dataset_info(meta["dataset"]).heldout
    held = heldout if heldout else f"a seeded 20 % split of {meta['dataset']}"
    ctx.store.add([{**ctx.base_row, "model": settings.extractor, "metric": "classifier_accuracy",
                    "value": float(meta["accuracy"]), "unit": "fraction", "stat": "value",
                    "n": int(meta["n_test"]), "checkpoint": path.name, "cell": cell,
                    "feature_extractor": settings.extractor, "status": "ok", "error": None,
                    "method": f"bench.quality.features: accuracy on {held}; trained on "
                              f"{meta['n_train']} images of {meta['dataset']} at "
                              f"{meta['input_size']} px"}])


def _image(item: Any) -> torch.Tensor:
    return item[0] if isinstance(item, tuple | list) else item


def _entry_row(entry: SweepEntry, ctx: SweepContext, **columns: Any) -> dict[str, Any]:
    return {**ctx.base_row, **entry.extra, "model": entry.model_name, "checkpoint": entry.label,
            **columns}


def sweep_entry(entry: SweepEntry, settings: SweepSettings, ctx: SweepContext,
                progress: bool = True) -> None:
    """Every (sampler, steps, seed) cell of one denoiser."""
    from bench.measure.load import load_columns, measure_load

    done = _done(ctx)
    device = ctx.dist.device
    train_seed = entry.extra.get("train_seed")
    entry.model.to(device).eval()
    entry.diffusion.to(device)
    for sampler, steps in entry.grid():
        for seed in entry.seeds:
            cell = quality_cell_key(ctx.dataset, entry.model_name, entry.kind, sampler, steps,
                                    seed, train_seed=train_seed)
            if cell in done:
                continue
            started = time.perf_counter()
            with measure_load() as load:
                images = generate(entry.model, entry.diffusion, ctx.shape, n=settings.n,
                                  steps=steps, sampler=sampler, seed=seed, chunk=settings.chunk,
                                  device=device, dist=ctx.dist)
            wall = time.perf_counter() - started
            if ctx.dist.is_main:
                base = _entry_row(entry, ctx, sampler=sampler, steps=steps, seed=seed,
                                  n=settings.n, feature_extractor=settings.extractor, cell=cell)
                rows = _score(images, ctx, settings, seed, base)
                rows.append({**base, "metric": SWEEP_WALL_PER_IMAGE, "value": wall / settings.n,
                             "unit": "s", "stat": "wall_per_sample", "batch_size": settings.chunk,
                             "method": f"sweep batch of {settings.chunk} x "
                                       f"{ctx.dist.world_size} rank(s)",
                             "status": "ok", "error": None,
                             # under torchrun the other ranks' work would read as other load
                             **load_columns(load.result if ctx.dist.world_size == 1 else None)})
                if seed == entry.seeds[0]:
                    save_grid_images(grid_file(ctx.samples_dir, ctx.dataset, entry.model_name,
                                               entry.kind, sampler, steps, seed, train_seed),
                                     images, settings.grid)
                ctx.store.add(rows)
                if progress:
                    fid = next(r["value"] for r in rows if r["metric"] == "fid")
                    trained = "" if train_seed is None else f" training {train_seed}"
                    print(f"  {entry.model_name} [{entry.label}]{trained} {sampler} "
                          f"{steps:>4} steps seed {seed}: fd {fid if fid is None else round(fid, 3)}"
                          f" ({wall:.1f} s)", flush=True)
            ctx.dist.barrier()


def likelihood_entry(entry: SweepEntry, settings: SweepSettings, ctx: SweepContext,
                     progress: bool = True) -> None:
    """Held-out bits/dim and per-band denoising error of one trained denoiser (rank 0)."""
    from bench.quality.likelihood import likelihood_rows

    train_seed = entry.extra.get("train_seed")
    cell = likelihood_cell_key(ctx.dataset, entry.model_name, train_seed)
    if ctx.dist.is_main and cell not in ctx.store.done_cells():
        started = time.perf_counter()
        base = _entry_row(entry, ctx, cell=cell)
        rows = likelihood_rows(entry.model, entry.diffusion, ctx.heldout, base,
                               timesteps=settings.likelihood_timesteps,
                               images=settings.likelihood_images, seed=0,
                               batch=settings.chunk, device=ctx.dist.device)
        ctx.store.add(rows)
        if progress:
            bpd = next(r["value"] for r in rows if r["metric"] == "bits_per_dim")
            print(f"  {entry.model_name} [{entry.label}] held-out bits/dim {bpd:.4f} "
                  f"({time.perf_counter() - started:.1f} s)", flush=True)
    ctx.dist.barrier()


def call_cost_rows(entry: SweepEntry, ctx: SweepContext, base: dict[str, Any]) -> list[dict[str, Any]]:
    """torch flop_counter FLOPs of one denoiser call on one image (every op of the forward, so a
    cU-Net's count includes all its ODE-function evaluations) and that call's NFE: with a row's
    `denoiser_calls`, FLOPs per generated sample = flops_torch x denoiser_calls."""
    from bench.measure.compute import flop_counter_flops

    count = flop_counter_flops(entry.model, ctx.shape, batch=1)
    rows = [{**base, "metric": "flops_torch", "value": count.flops, "unit": "FLOPs",
             "stat": "value", "method": "torch.utils.flop_counter, one call at batch 1 (2 FLOPs "
                                        "per MAC, every ODE evaluation of the call included)"}]
    if count.nfe is not None:
        rows.append({**base, "metric": "nfe", "value": count.nfe.total, "unit": "evaluations",
                     "stat": "value", "method": "model.last_nfe() of that call"})
    return rows


def time_entry(entry: SweepEntry, settings: SweepSettings, ctx: SweepContext,
               done: set[str]) -> None:
    """Time per generated sample (batch 1, median of `time_repeats`) at each step count, measured
    with the efficiency harness's `time_per_sample` on rank 0."""
    from bench.measure.load import load_columns
    from bench.measure.sampling import time_per_sample
    from models.diffusion.samplers import get_sampler

    if ctx.dist.is_main:
        cost_cell = quality_cell_key(ctx.dataset, entry.model_name, entry.kind, "none", None, None,
                                     timing=True)
        if cost_cell not in done:
            ctx.store.add(call_cost_rows(entry, ctx, _entry_row(entry, ctx, batch_size=1,
                                                                cell=cost_cell, status="ok")))
        for sampler, steps in entry.grid():
            cell = quality_cell_key(ctx.dataset, entry.model_name, entry.kind, sampler,
                                    steps, None, timing=True)
            if cell in done:
                continue
            timing = time_per_sample(
                entry.model, steps=steps, batch=1, channels=ctx.shape[0],
                resolution=ctx.shape[1], sampler=sampler, device=str(ctx.dist.device),
                repeats=settings.time_repeats, diffusion=entry.diffusion)
            base = _entry_row(entry, ctx, sampler=sampler, steps=steps, batch_size=1,
                              threads=timing.threads, cell=cell, status="ok",
                              method="bench.measure.sampling.time_per_sample",
                              **load_columns(timing.load))
            ctx.store.add([
                {**base, "metric": "time_per_sample_s", "value": timing.median_s, "unit": "s",
                 "stat": "median", "n": timing.n},
                {**base, "metric": "time_per_sample_s", "value": timing.p90_s, "unit": "s",
                 "stat": "p90", "n": timing.n},
                {**base, "metric": "denoiser_calls", "value": get_sampler(sampler).model_calls(steps),
                 "unit": "calls", "stat": "value", "n": None,
                 "method": "models.diffusion.samplers: Sampler.model_calls"},
            ])
    ctx.dist.barrier()


def run_sweep(entries: Sequence[SweepEntry], settings: SweepSettings, ctx: SweepContext,
              progress: bool = True, *, references: bool = True, timing: bool = True) -> None:
    """The extractor's accuracy and the real-data floor (`references`), every entry's cells, the
    held-out likelihood of the trained ones, and last (`timing`) the time per sample."""
    if references:
        record_extractor(settings, ctx)
        score_real_reference(settings, ctx)
    for entry in entries:
        sweep_entry(entry, settings, ctx, progress)
    if ctx.heldout is not None:
        for entry in entries:
            if entry.trained:
                likelihood_entry(entry, settings, ctx, progress)
    if not timing:
        return
    done = _done(ctx)
    for entry in entries:
        if entry.timed and entry.trained:
            time_entry(entry, settings, ctx, done)
