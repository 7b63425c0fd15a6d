"""One optimisation step of the DDPM objective, and the divergence check around it.

The one step and optimizer of the suite: `bench train` runs it, and the training-memory and
checkpoint-size metrics measure it, so what is measured is what training does."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

ADAM_BETAS = (0.9, 0.99)
"""The authors' Adam betas (docs/paper.md, "Training and sampling settings")."""


class TrainingDiverged(RuntimeError):
    """The loss (or the gradient norm) stopped being finite; the step was not applied."""


@dataclass(frozen=True)
class StepResult:
    loss: float
    """The loss averaged over ranks."""
    grad_norm: float
    """Total gradient norm before clipping."""


def make_optimizer(model: nn.Module, lr: float = 2e-4) -> torch.optim.Adam:
    """Adam with the paper's betas over the trainable parameters."""
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"learning rate must be a positive number, got {lr!r}")
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr,
                            betas=ADAM_BETAS)


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The CPU generator of the timesteps and noise of one step on one rank.

    A pure function of (seed, step, rank), so a resumed run draws the same noise as an
    uninterrupted one without saving generator states.
    """
    mixed = (seed * 1_000_003 + step) * 65_537 + rank
    return torch.Generator().manual_seed(mixed % (2**63 - 1))


AMP_DEVICES = ("cuda",)
"""Where `amp` turns on bf16 autocast; on the CPU training stays float32 (bf16 CPU kernels are
slow there), so a CPU bfloat16 training measurement would be a float32 one under another name."""


def autocast_for(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when `amp`; nothing on the CPU (see AMP_DEVICES)."""
    if amp and device.type in AMP_DEVICES:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(model: nn.Module, diffusion: nn.Module, optimizer: torch.optim.Optimizer,
               x0: torch.Tensor, *, generator: torch.Generator | None = None,
               grad_clip: float = 1.0, amp: bool = False, mean=None) -> StepResult:
    """Loss, backward, clip to `grad_clip`, Adam step.

    `mean` averages a scalar tensor over ranks (None in a single process). A non-finite loss or
    gradient norm raises `TrainingDiverged` BEFORE the optimizer touches the weights, so the
    model (and the last checkpoint) stay good.
    """
    model.train()
    with autocast_for(x0.device, amp):
        loss = diffusion.training_loss(model, x0, generator=generator)
    reduced = loss.detach().float()
    if mean is not None:
        reduced = mean(reduced)
    value = float(reduced)
    if not math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        raise TrainingDiverged(f"the loss is {value}")
    loss.backward()
    norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip))
    if not math.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        raise TrainingDiverged(f"the gradient norm is {norm} (loss {value:.4g})")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss=value, grad_norm=norm)
