"""A whole sampling run as N replays of ONE captured CUDA graph, with no host synchronisation
between steps (what `cudagraph` mode times for time per sample).

One step (denoiser call + DDPM/DDIM update) is captured once. Everything a step needs that
changes from step to step lives on the device, indexed by a step counter that the graph itself
advances: the timesteps, the update's coefficients (float32 values of the float64 schedule, the
same numbers `models.diffusion.sample` multiplies by), and the noise, drawn up front from the same
seeded CPU generator in the same order as `sample`. So a run computes what `sample` computes, and
the harness checks that it does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.diffusion.process import split_prediction


class GraphedSampler:
    """`run()` returns samples like `models.diffusion.sample(model, diffusion, shape, steps=...,
    sampler=..., seed=...)` (float32, CPU, clamped to [-1, 1]); the model must be capture-safe."""

    def __init__(self, model: nn.Module, diffusion: nn.Module, shape: tuple[int, ...], *, steps: int,
                 sampler: str, seed: int, device: torch.device, dtype: torch.dtype,
                 clip_denoised: bool = True) -> None:
        if sampler not in ("ddpm", "ddim"):
            raise ValueError(f"graphed sampling supports ddpm and ddim (eta 0), not {sampler!r}")
        self.model, self.sampler, self.dtype = model, sampler, dtype
        self.prediction, self.clip = diffusion.prediction, clip_denoised
        schedule = diffusion.respace(steps)
        order = list(reversed(range(schedule.num_steps)))
        self.n_steps = len(order)

        def column(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=device)

        abar = [float(schedule.alphas_cumprod[i]) for i in order]
        abar_prev = [float(schedule.alphas_cumprod_prev[i]) for i in order]
        self.sqrt_abar = column([math.sqrt(a) for a in abar])
        self.sqrt_one_minus = column([math.sqrt(1.0 - a) for a in abar])
        self.coef1 = column([float(schedule.posterior_mean_coef1[i]) for i in order])
        self.coef2 = column([float(schedule.posterior_mean_coef2[i]) for i in order])
        self.noise_std = column([math.sqrt(float(schedule.posterior_variance[i])) if i else 0.0
                                 for i in order])
        self.sqrt_abar_prev = column([math.sqrt(a) for a in abar_prev])
        self.sqrt_one_minus_prev = column([math.sqrt(max(1.0 - a, 0.0)) for a in abar_prev])
        self.timesteps = torch.tensor([int(schedule.timesteps[i]) for i in order], dtype=torch.long,
                                      device=device)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        draw = lambda: torch.randn(shape, generator=generator, dtype=torch.float32)  # noqa: E731
        x_T = draw()
        noises = [draw() if (sampler == "ddpm" and i) else torch.zeros(shape) for i in order]
        self.x_T = x_T.to(device=device, dtype=dtype)
        self.noise = torch.stack(noises).to(device=device, dtype=dtype)
        self.x = self.x_T.clone()
        self.k = torch.zeros(1, dtype=torch.long, device=device)
        self.batch = shape[0]
        self.graph = self._capture(device)

    def _at(self, table: torch.Tensor) -> torch.Tensor:
        """table[k] as a 0-dim tensor (0-dim: it does not promote a bfloat16 state to float32)."""
        return table.index_select(0, self.k).squeeze(0)

    def _step(self) -> None:
        x = self.x
        t = self.timesteps.index_select(0, self.k).expand(self.batch)
        output = self.model(x, t).to(self.dtype)
        eps, x0 = split_prediction(output, x, self._at(self.sqrt_abar), self._at(self.sqrt_one_minus),
                                   self.prediction, self.clip)
        if self.sampler == "ddpm":
            new = self._at(self.coef1) * x0 + self._at(self.coef2) * x
            new = new + self._at(self.noise_std) * self._at(self.noise)
        else:
            new = self._at(self.sqrt_abar_prev) * x0 + self._at(self.sqrt_one_minus_prev) * eps
        self.x.copy_(new)
        self.k.add_(1)

    def _capture(self, device: torch.device) -> torch.cuda.CUDAGraph:
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._step()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._step()
        return graph

    def run(self) -> torch.Tensor:
        """One whole sampling run: reset the state, replay the step graph n_steps times."""
        self.x.copy_(self.x_T)
        self.k.zero_()
        for _ in range(self.n_steps):
            self.graph.replay()
        return self.x.clamp(-1.0, 1.0).to(device="cpu", dtype=torch.float32)
