"""Neural-ODE pieces of the continuous U-Net: the ODE function (the derivative) and the block that
integrates it from s=0 to s=1 with a solver backend (`models.solvers`), counting function
evaluations (NFE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.config import CUNetConfig
from models.layers import film
from models.solvers import SolveSettings, solve


def make_norm(kind: str, channels: int) -> nn.Module:
    """'instance': InstanceNorm2d without parameters; 'group': GroupNorm(8, affine)."""
    if kind == "group":
        return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)
    return nn.InstanceNorm2d(channels)


class ODEFunction(nn.Module):
    """dz/ds = f(z): norm -> conv3x3 -> softplus -> norm -> [FiLM] -> conv -> softplus [+ z].

    With `residual` the second conv is 3x3 and z is added (released cU-Net); without it the second
    conv is 1x1 and nothing is added (the wo/R variant). With `film_dim` the function is
    conditioned on the diffusion time through FiLM after the second norm; the conditioning vector
    is set with `condition` before integrating, because the solver only passes (s, z).
    """

    def __init__(self, channels: int, *, residual: bool, norm: str, film_dim: int | None) -> None:
        super().__init__()
        self.residual = residual
        self.norm1 = make_norm(norm, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = make_norm(norm, channels)
        kernel = 3 if residual else 1
        self.conv2 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.film = (
            nn.Sequential(nn.SiLU(), nn.Linear(film_dim, 2 * channels)) if film_dim else None
        )
        self.condition: torch.Tensor | None = None
        self.evaluations = 0

    def forward(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # Counted in eager runs only: under torch.compile a changing int attribute would be a guard
        # that fails on every call (a recompile each time), and a CUDA graph replays no Python.
        if not torch.compiler.is_compiling():
            self.evaluations += 1
        h = F.softplus(self.conv1(self.norm1(z)))
        h = self.norm2(h)
        if self.film is not None:
            if self.condition is None:
                raise RuntimeError("ODEFunction with FiLM was called without a time condition")
            h = film(h, self.film(self.condition))
        h = F.softplus(self.conv2(h))
        return h + z if self.residual else h


class ODEBlock(nn.Module):
    """Integrates an ODEFunction from s=0 to s=1 and returns the state at s=1.

    Fixed-step methods step on `solver_steps` equal steps (one rk4 step = 4 evaluations); dopri5
    adapts its steps to rtol/atol. `solver_backend` picks who integrates (`models.solvers`):
    the authors' torchdiffeq, the capture-safe native loop, or torchode. `last_nfe` holds the
    evaluations of the last forward only (backward evaluations of the adjoint are not counted).
    """

    def __init__(self, func: ODEFunction, config: CUNetConfig) -> None:
        super().__init__()
        self.func = func
        self.backend = config.solver_backend
        self.settings = SolveSettings(method=config.solver, steps=config.solver_steps,
                                      rtol=config.rtol, atol=config.atol, adjoint=config.adjoint)
        self.last_nfe = 0

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        # The condition stays set after the call: the adjoint's backward pass evaluates f again.
        self.func.condition = condition
        start = self.func.evaluations
        params = [p for p in self.func.parameters() if p.requires_grad] if self.settings.adjoint else []
        out = solve(self.backend, self.func, z, self.settings, params)
        if not torch.compiler.is_compiling():
            self.last_nfe = self.func.evaluations - start
        return out
