"""The training loop: data, model, EMA, checkpoints, resume, progress and divergence handling."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from bench.checkpoint import make_ema, save_checkpoint
from bench.errors import UsageError
from bench.measure.train_step import TrainingDiverged, make_optimizer, step_generator, train_step
from bench.train import losslog
from bench.train.checkpoints import (
    check_same_run,
    checkpoint_name,
    latest_checkpoint,
    load_latest,
    prune,
)
from bench.train.config import TrainConfig, validate
from bench.train.data import StepBatches, maybe_in_memory, step_loader
from bench.train.distributed import DistContext, init_distributed


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    """The newest checkpoint: the trained model."""
    step: int
    loss: float
    """Mean logged loss over the last 10 % of the run."""
    seconds: float
    """Training wall time over all sessions of the run (resumes included)."""
    resumed_from: int | None
    params: int


def run_spec(config: TrainConfig, channels: int, resolution: int) -> dict[str, Any]:
    """What is trained (see config.SPEC_KEYS); stored in every checkpoint's meta."""
    source = config.model_source(channels)
    return {
        "model": config.model,
        "overrides": source.arguments,
        # the whole configuration: a checkpoint rebuilds THIS network even after the preset changes
        # (a user's model: the factory reference and its kwargs)
        "model_config": source.config(),
        "dataset": config.dataset,
        "resolution": resolution,
        "channels": channels,
        "prediction": config.prediction,
        "schedule": config.schedule,
        "timesteps": config.timesteps,
    }


def _load_data(config: TrainConfig) -> tuple[Any, int, int]:
    from bench.data import dataset_info, load_dataset

    info = dataset_info(config.dataset)
    resolution = config.resolution or info.resolution
    channels = config.channels or info.channels
    dataset = load_dataset(config.dataset, root=config.data_root, resolution=resolution,
                           channels=channels, limit=config.limit)
    return maybe_in_memory(dataset, channels, resolution), channels, resolution


def _flip(x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch left-right (drawn from the step's generator)."""
    mask = torch.rand(x0.shape[0], generator=generator) < 0.5
    return torch.where(mask.to(x0.device)[:, None, None, None], x0.flip(-1), x0)


@dataclass
class _Run:
    """What one training run holds: the network, its diffusion, EMA and optimizer, where it
    resumes from, and its output directory."""

    config: TrainConfig
    dist: DistContext
    out: Path
    spec: dict[str, Any]
    model: nn.Module
    diffusion: nn.Module
    ema: Any
    optimizer: torch.optim.Optimizer
    start: int = 0
    elapsed_before: float = 0.0
    resumed_from: int | None = None
    session_start: float = 0.0

    def elapsed(self) -> float:
        """Training wall time over every session of this run."""
        return self.elapsed_before + time.perf_counter() - self.session_start

    def save(self, step: int) -> Path:
        """Checkpoint `step` (rank 0 writes it), keeping the newest `keep_checkpoints`."""
        path = self.out / checkpoint_name(step)
        if self.dist.is_main:
            meta = {"spec": self.spec, "train": self.config.to_meta(),
                    "world_size": self.dist.world_size, "elapsed_s": self.elapsed()}
            save_checkpoint(path, model=self.model, diffusion=self.diffusion, ema=self.ema,
                            optimizer=self.optimizer, step=step, meta=meta)
            prune(self.out, self.config.keep_checkpoints)
        return path


def train(config: TrainConfig, dist: DistContext | None = None) -> TrainResult:
    """Train (or resume, or find already finished) the run `config` describes.

    Rank 0 writes checkpoints and the loss log into `config.out`; every rank returns the same
    result. Raises UsageError for bad settings or a corrupt checkpoint and TrainingDiverged when
    the loss turns non-finite (the newest checkpoint on disk is then the last good state).
    """
    validate(config)
    dist = dist or init_distributed(config.device)
    if config.batch_size % dist.world_size:
        raise UsageError(f"batch-size {config.batch_size} does not split evenly over "
                         f"{dist.world_size} processes")
    dataset, channels, resolution = _load_data(config)
    run = _build_run(config, dist, run_spec(config, channels, resolution), channels)
    params = sum(p.numel() for p in run.model.parameters())
    _resume(run)
    if dist.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        losslog.truncate_loss_log(run.out, run.start)
    run.session_start = time.perf_counter()
    step = _train_steps(run, dataset)
    if run.start == config.steps and latest_checkpoint(run.out) is None:
        run.save(step)  # a zero-step run still leaves the (untrained) model behind
    dist.barrier()
    path = latest_checkpoint(run.out)
    if path is None:  # pragma: no cover - rank 0 saved above
        raise UsageError(f"no checkpoint in {run.out} after training")
    loss = losslog.tail_mean(losslog.read_loss_log(run.out))
    return TrainResult(checkpoint=path, step=step, loss=loss, seconds=run.elapsed(),
                       resumed_from=run.resumed_from, params=params)


def _build_run(config: TrainConfig, dist: DistContext, spec: dict[str, Any], channels: int) -> _Run:
    """The seeded network, its diffusion, EMA and optimizer on this rank's device."""
    from models.diffusion import GaussianDiffusion

    torch.manual_seed(config.seed)
    model = config.model_source(channels).build()
    if not any(p.requires_grad for p in model.parameters()):
        raise UsageError(f"{config.model} has no trainable parameters; nothing to train")
    diffusion = GaussianDiffusion(schedule=config.schedule, timesteps=config.timesteps,
                                  prediction=config.prediction)
    model.to(dist.device)
    diffusion.to(dist.device)
    return _Run(config=config, dist=dist, out=Path(config.out), spec=spec, model=model,
                diffusion=diffusion, ema=make_ema(model, config.ema_decay),
                optimizer=make_optimizer(model, config.lr))


def _resume(run: _Run) -> None:
    """Load the newest checkpoint of the same run, if there is one (the learning rate is the one
    asked for now)."""
    state = load_latest(run.out, map_location=run.dist.device) if run.out.is_dir() else None
    if state is None:
        return
    check_same_run(state, run.spec)
    run.model.load_state_dict(state["model"])
    run.ema.load_state_dict(state["ema"])
    run.optimizer.load_state_dict(state["optimizer"])
    for group in run.optimizer.param_groups:
        group["lr"] = run.config.lr
    run.start = run.resumed_from = int(state["step"])
    run.elapsed_before = float(state["meta"].get("elapsed_s", 0.0))


def _train_steps(run: _Run, dataset: Any) -> int:
    """Steps from `run.start` to the configured end: log, EMA, checkpoints; returns the last step."""
    config, dist = run.config, run.dist
    net: nn.Module = run.model
    if dist.is_distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [dist.device.index] if dist.device.type == "cuda" else None
        net = DistributedDataParallel(run.model, device_ids=ids)
    batches = StepBatches(len(dataset), batch_per_rank=config.batch_size // dist.world_size,
                          rank=dist.rank, world_size=dist.world_size, seed=config.seed,
                          start=run.start, stop=config.steps)
    bar = tqdm(total=config.steps, initial=run.start, unit="step", desc=f"train {config.model}",
               disable=not (config.progress and dist.is_main), dynamic_ncols=True, mininterval=0.5)
    window: list[tuple[float, float]] = []
    step = run.start
    try:
        for x0, _ in step_loader(dataset, batches, config.num_workers):
            generator = step_generator(config.seed, step, dist.rank)
            x0 = x0.to(dist.device, non_blocking=True)
            if config.hflip:
                x0 = _flip(x0, generator)
            try:
                result = train_step(net, run.diffusion, run.optimizer, x0, generator=generator,
                                    grad_clip=config.grad_clip, amp=config.amp, mean=dist.mean)
            except TrainingDiverged as error:
                raise TrainingDiverged(_diverged_message(config, run.out, step + 1, error)) from None
            step += 1
            if step % config.ema_every == 0:
                run.ema.update_parameters(run.model)
            window.append((result.loss, result.grad_norm))
            bar.update(1)
            bar.set_postfix(loss=f"{result.loss:.4f}", refresh=False)
            if step % config.log_every == 0 or step == config.steps:
                _log_window(run, step, window)
            if step % config.checkpoint_every == 0 or step == config.steps:
                run.save(step)
    finally:
        bar.close()
    return step


def _log_window(run: _Run, step: int, window: list[tuple[float, float]]) -> None:
    """One loss-log row: the mean loss and gradient norm since the last row (rank 0 writes)."""
    if run.dist.is_main:
        losslog.append_loss_row(run.out, {
            "step": step,
            "loss": sum(w[0] for w in window) / len(window),
            "grad_norm": sum(w[1] for w in window) / len(window),
            "elapsed_s": run.elapsed(),
        })
    window.clear()


def _diverged_message(config: TrainConfig, out: Path, step: int, error: Exception) -> str:
    kept = latest_checkpoint(out)
    where = (f"the last good checkpoint {kept} is kept" if kept is not None
             else "no checkpoint had been written yet")
    return (f"{config.model}: training stopped at step {step}: {error}; {where}. "
            f"Lower --lr (now {config.lr:g}) or check the data, then run again to resume")
