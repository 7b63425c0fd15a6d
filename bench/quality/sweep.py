"""FID and KID against sampling steps: sample every model at every step count with every sampler
and seed, score each set against the real data through torch-fidelity, write tidy rows.

A cell is one (dataset, model, checkpoint, sampler, steps, seed) set of `n` images. Cells that a
previous (interrupted) run finished are skipped. Under torchrun the `n` images of a cell are made
in fixed chunks dealt round-robin to the ranks; each chunk has its own seed, so the set does not
depend on the number of processes. Rank 0 scores and writes.

Besides the trained models the sweep scores two references: the same architecture UNTRAINED
(what training must beat) and `n` real images drawn from the reference set (the floor at this n).
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
from bench.results.keys import quality_cell_key
from bench.results.paths import safe_name
from bench.results.schema import SWEEP_WALL_PER_IMAGE
from bench.train.distributed import DistContext

UNTRAINED = "untrained"
REAL_DATA = "real-data"
SCORE_METRICS = (("fid", "value"), ("kid_mean", "mean"), ("kid_std", "std"))


@dataclass(frozen=True)
class SweepSettings:
    """What to sample and how to score it."""

    steps: tuple[int, ...]
    samplers: tuple[str, ...] = ("ddpm", "ddim")
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
    """Rows for fid, kid_mean and kid_std of one scored set (units: dimensionless scores)."""
    rows = []
    for metric, stat in SCORE_METRICS:
        rows.append({**base, "metric": metric, "value": float(scores[metric]), "unit": "score",
                     "stat": stat, "method": "torch-fidelity", "status": "ok", "error": None})
    return rows


def failed_rows(base: Mapping[str, Any], error: str) -> list[dict[str, Any]]:
    """One failed row per score metric, naming why."""
    return [{**base, "metric": metric, "value": None, "unit": "score", "stat": stat,
             "method": "torch-fidelity", "status": "failed", "error": error}
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
              steps: int | None, seed: int | None) -> Path:
    """Where a cell's grid images are kept (named as before the one key scheme, so committed
    samples stay readable; a user's model name made file-safe)."""
    parts = ("quality", dataset, safe_name(model), kind, sampler, f"s{steps}", f"seed{seed}")
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


def _done(ctx: SweepContext) -> set[str]:
    done = ctx.store.done_cells() if ctx.dist.is_main else None
    return ctx.dist.broadcast_object(done)


def _score(images: torch.Tensor, ctx: SweepContext, settings: SweepSettings, seed: int,
           base: dict[str, Any]) -> list[dict[str, Any]]:
    from bench.quality.scoring import score

    try:
        scores = score(images, ctx.real, extractor=settings.extractor,
                       weights_path=settings.weights_path, kid_subset_size=settings.kid_subset_size,
                       seed=seed, cache_real_key=f"{ctx.dataset}-c{ctx.shape[0]}",
                       cache_dir=settings.cache_dir, device=str(ctx.dist.device),
                       data_root=ctx.data_root)
    except UsageError as error:
        return failed_rows(base, str(error))
    return score_rows(base, scores)


def score_real_reference(settings: SweepSettings, ctx: SweepContext) -> None:
    """Score `n` real images (drawn with each seed) against the reference: the floor at this n."""
    done = _done(ctx)
    for seed in settings.seeds:
        cell = cell_key(ctx.dataset, REAL_DATA, "data", "none", None, seed)
        if cell in done or not ctx.dist.is_main:
            continue
        count = min(settings.n, len(ctx.real))
        order = torch.randperm(len(ctx.real), generator=torch.Generator().manual_seed(seed))
        images = torch.stack([_image(ctx.real[int(i)]) for i in order[:count]])
        base = {**ctx.base_row, "model": REAL_DATA, "checkpoint": "data", "sampler": "none",
                "steps": None, "seed": seed, "n": count, "feature_extractor": settings.extractor,
                "cell": cell}
        ctx.store.add(_score(to_uint8(images), ctx, settings, seed, base))
    ctx.dist.barrier()


def _image(item: Any) -> torch.Tensor:
    return item[0] if isinstance(item, tuple | list) else item


def sweep_entry(entry: SweepEntry, settings: SweepSettings, ctx: SweepContext,
                progress: bool = True) -> None:
    """Every (sampler, steps, seed) cell of one denoiser; then, for a trained one, the time per
    sample at each step count."""
    done = _done(ctx)
    device = ctx.dist.device
    entry.model.to(device).eval()
    entry.diffusion.to(device)
    for sampler in entry.samplers:
        for steps in entry.steps:
            for seed in entry.seeds:
                cell = cell_key(ctx.dataset, entry.model_name, entry.kind, sampler, steps, seed)
                if cell in done:
                    continue
                started = time.perf_counter()
                images = generate(entry.model, entry.diffusion, ctx.shape, n=settings.n,
                                  steps=steps, sampler=sampler, seed=seed, chunk=settings.chunk,
                                  device=device, dist=ctx.dist)
                wall = time.perf_counter() - started
                if ctx.dist.is_main:
                    base = {**ctx.base_row, **entry.extra, "model": entry.model_name,
                            "checkpoint": entry.label, "sampler": sampler, "steps": steps,
                            "seed": seed, "n": settings.n, "feature_extractor": settings.extractor,
                            "cell": cell}
                    rows = _score(images, ctx, settings, seed, base)
                    rows.append({**base, "metric": SWEEP_WALL_PER_IMAGE, "value": wall / settings.n,
                                 "unit": "s", "stat": "wall_per_sample",
                                 "method": f"sweep batch of {settings.chunk} x "
                                           f"{ctx.dist.world_size} rank(s)",
                                 "status": "ok", "error": None})
                    if seed == entry.seeds[0]:
                        save_grid_images(grid_file(ctx.samples_dir, ctx.dataset, entry.model_name,
                                                   entry.kind, sampler, steps, seed),
                                         images, settings.grid)
                    ctx.store.add(rows)
                    if progress:
                        fid = next(r["value"] for r in rows if r["metric"] == "fid")
                        print(f"  {entry.model_name} [{entry.label}] {sampler} {steps:>4} steps "
                              f"seed {seed}: fid {fid if fid is None else round(fid, 3)} "
                              f"({wall:.1f} s)", flush=True)
                ctx.dist.barrier()
    if entry.timed and entry.trained:
        time_entry(entry, settings, ctx, done)


def time_entry(entry: SweepEntry, settings: SweepSettings, ctx: SweepContext,
               done: set[str]) -> None:
    """Time per generated sample (batch 1, median of `time_repeats`) at each step count, measured
    with the efficiency harness's `time_per_sample` on rank 0."""
    from bench.measure.sampling import time_per_sample

    if ctx.dist.is_main:
        for sampler in entry.samplers:
            for steps in entry.steps:
                cell = quality_cell_key(ctx.dataset, entry.model_name, entry.kind, sampler,
                                        steps, None, timing=True)
                if cell in done:
                    continue
                timing = time_per_sample(
                    entry.model, steps=steps, batch=1, channels=ctx.shape[0],
                    resolution=ctx.shape[1], sampler=sampler, device=str(ctx.dist.device),
                    repeats=settings.time_repeats, diffusion=entry.diffusion)
                base = {**ctx.base_row, **entry.extra, "model": entry.model_name,
                        "checkpoint": entry.label, "sampler": sampler, "steps": steps,
                        "batch_size": 1, "threads": timing.threads, "cell": cell,
                        "method": "bench.measure.sampling.time_per_sample", "status": "ok"}
                ctx.store.add([
                    {**base, "metric": "time_per_sample_s", "value": timing.median_s, "unit": "s",
                     "stat": "median", "n": timing.n},
                    {**base, "metric": "time_per_sample_s", "value": timing.p90_s, "unit": "s",
                     "stat": "p90", "n": timing.n},
                ])
    ctx.dist.barrier()


def run_sweep(entries: Sequence[SweepEntry], settings: SweepSettings, ctx: SweepContext,
              progress: bool = True) -> None:
    """The real-data floor, then every entry's cells."""
    score_real_reference(settings, ctx)
    for entry in entries:
        sweep_entry(entry, settings, ctx, progress)
