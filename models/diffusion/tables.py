"""Everything a Gaussian diffusion chain derives from its betas, computed once in float64."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Self

import torch

from models.errors import ModelInputError


@dataclass(frozen=True)
class ScheduleTables:
    """Per-step coefficients of a chain with betas beta_0..beta_{N-1} (all float64, shape (N,)).

    Names follow Ho et al.'s and Nichol & Dhariwal's code, so the float32 buffers made from them
    have the names a DDPM training checkpoint usually holds.
    """

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    log_one_minus_alphas_cumprod: torch.Tensor
    sqrt_recip_alphas_cumprod: torch.Tensor
    sqrt_recipm1_alphas_cumprod: torch.Tensor
    # q(x_{t-1} | x_t, x_0) = N(coef1 * x_0 + coef2 * x_t, posterior_variance)
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor

    @classmethod
    def from_betas(cls, betas: torch.Tensor, **extra: Any) -> Self:
        """Build the tables; `extra` carries the fields of subclasses."""
        betas = torch.as_tensor(betas).detach().to(device="cpu", dtype=torch.float64).clone()
        if betas.ndim != 1 or betas.numel() == 0:
            raise ModelInputError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ModelInputError("every beta must lie in the open interval (0, 1)")
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, dim=0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        posterior_variance = betas * (1.0 - abar_prev) / (1.0 - abar)
        # The first posterior variance is 0 (x_0 is known given x_0); its log is clipped to the next
        # value as in Ho et al.'s code. A one-step chain has no next value: use beta_0 instead.
        first = posterior_variance[1:2] if betas.numel() > 1 else betas[:1]
        log_variance = torch.log(torch.cat([first, posterior_variance[1:]]))
        return cls(
            betas=betas,
            alphas_cumprod=abar,
            alphas_cumprod_prev=abar_prev,
            sqrt_alphas_cumprod=abar.sqrt(),
            sqrt_one_minus_alphas_cumprod=(1.0 - abar).sqrt(),
            log_one_minus_alphas_cumprod=torch.log(1.0 - abar),
            sqrt_recip_alphas_cumprod=(1.0 / abar).sqrt(),
            sqrt_recipm1_alphas_cumprod=(1.0 / abar - 1.0).sqrt(),
            posterior_variance=posterior_variance,
            posterior_log_variance_clipped=log_variance,
            posterior_mean_coef1=betas * abar_prev.sqrt() / (1.0 - abar),
            posterior_mean_coef2=(1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar),
            **extra,
        )

    @classmethod
    def table_names(cls) -> tuple[str, ...]:
        """The names of the per-step tables (the fields of ScheduleTables itself)."""
        return tuple(f.name for f in fields(ScheduleTables))

    @property
    def num_steps(self) -> int:
        return int(self.betas.numel())
