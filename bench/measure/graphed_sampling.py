"""A whole sampling run as N replays of ONE captured CUDA graph, with no host synchronisation
between steps (what `cudagraph` mode times for time per sample).

One step (denoiser call + the sampler's own `step`) is captured once. Everything a step needs that
changes from step to step lives on the device, indexed by a step counter that the graph itself
advances: the timesteps, the sampler's coefficient tables (`Sampler.coefficients(...).on(device)`,
the same numbers `models.diffusion.sample` multiplies by), and the noise, drawn up front from the
same seeded CPU generator in the same order as `sample`. There is no second copy of any update:
`DeviceChain` runs the sampler's `step` with a device step counter, `GraphedSampler` captures
exactly that, and a CPU test checks `DeviceChain` against `sample` for every registered sampler.

Whether a sampling run can be graphed is decided in one place, `check_graphable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from bench.measure.modes import ModeError, check_capturable
from models.diffusion.samplers import Sampler, resolve_sampler, table_dtype


def check_graphable(model: nn.Module, device: torch.device, sampler: Sampler) -> None:
    """Raise ModeError (one line) unless a sampling run of `model` with `sampler` on `device` can
    be replayed from one captured step graph: a CUDA device, a capturable model, and a sampler
    that declares `capture_safe`."""
    check_capturable(model, device)
    if not sampler.capture_safe:
        raise ModeError(f"mode cudagraph: sampler {sampler.name!r} is not capture-safe (its steps "
                        "differ from step to step or read values on the host); use mode eager or compile")


class DeviceChain:
    """A sampling run with all per-step inputs precomputed on `device` and the step indexed by a
    device step counter: the work `GraphedSampler` captures, runnable without capture (on the CPU
    too), so that its samples can be compared with `models.diffusion.sample` anywhere. `run()`
    returns what `sample(model, diffusion, shape, steps=..., sampler=..., seed=...)` returns
    (float32, CPU, clamped to [-1, 1]); call it with the model in eval mode."""

    def __init__(self, model: nn.Module, diffusion: nn.Module, shape: tuple[int, ...], *, steps: int,
                 sampler: str | Sampler, seed: int, device: torch.device, dtype: torch.dtype,
                 clip_denoised: bool = True, options: Mapping[str, Any] | None = None) -> None:
        self.sampler = resolve_sampler(sampler, options)
        self.model, self.dtype = model, dtype
        self.prediction, self.clip = diffusion.prediction, clip_denoised
        coeffs = self.sampler.coefficients(diffusion.respace(steps))
        self.n_steps = coeffs.n_steps
        self.coeffs = coeffs.on(device, table_dtype(dtype))
        self.timesteps = torch.tensor(coeffs.timesteps, dtype=torch.long, device=device)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        draw = lambda: torch.randn(shape, generator=generator, dtype=torch.float32)  # noqa: E731
        x_T = draw()
        noisy = [self.sampler.needs_noise(coeffs, k) for k in range(self.n_steps)]
        noises = [draw() if noisy[k] else torch.zeros(shape) for k in range(self.n_steps)]
        self.x_T = x_T.to(device=device, dtype=dtype)
        # A step that adds no noise gets zeros (and its noise_std is 0); with no noisy step at all
        # (DDIM, eta 0) the step is given no noise and does no noise arithmetic.
        self.noise = torch.stack(noises).to(device=device, dtype=dtype) if any(noisy) else None
        self.x = self.x_T.clone()
        self.k = torch.zeros(1, dtype=torch.long, device=device)
        self.batch = shape[0]

    def step(self) -> None:
        """One step of the chain at the device step counter k, then k += 1 (on the device)."""
        t = self.timesteps.index_select(0, self.k).expand(self.batch)
        output = self.model(self.x, t).to(self.dtype)
        noise = None if self.noise is None else self.noise.index_select(0, self.k).squeeze(0)
        new = self.sampler.step(output, self.x, self.k, self.coeffs, self.prediction, noise, self.clip)
        self.x.copy_(new)
        self.k.add_(1)

    def reset(self) -> None:
        self.x.copy_(self.x_T)
        self.k.zero_()

    def _advance(self) -> None:
        self.step()

    def run(self) -> torch.Tensor:
        """One whole sampling run: reset the state, take n_steps steps."""
        self.reset()
        for _ in range(self.n_steps):
            self._advance()
        return self.x.clamp(-1.0, 1.0).to(device="cpu", dtype=torch.float32)


class GraphedSampler(DeviceChain):
    """`DeviceChain` whose step is captured once in a CUDA graph and replayed n_steps times per run;
    the model must be capture-safe and so must the sampler (`check_graphable`)."""

    def __init__(self, model: nn.Module, diffusion: nn.Module, shape: tuple[int, ...], *, steps: int,
                 sampler: str | Sampler, seed: int, device: torch.device, dtype: torch.dtype,
                 clip_denoised: bool = True, options: Mapping[str, Any] | None = None) -> None:
        chosen = resolve_sampler(sampler, options)
        check_graphable(model, torch.device(device), chosen)
        super().__init__(model, diffusion, shape, steps=steps, sampler=chosen, seed=seed,
                         device=device, dtype=dtype, clip_denoised=clip_denoised)
        self.graph = self._capture(torch.device(device))

    def _capture(self, device: torch.device) -> torch.cuda.CUDAGraph:
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self.step()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.step()
        return graph

    def _advance(self) -> None:
        self.graph.replay()
