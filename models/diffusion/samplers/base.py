"""What a sampler is: one object that owns its options, its per-step coefficients and its update.

A run of a respaced chain of S steps takes the steps k = 0, 1, ..., S - 1 in the order the chain
runs, noisiest first (step k is respaced index i = S - 1 - k). A sampler turns the schedule into
`Coefficients`, named per-step numbers in that order, and `step` maps (model output, x, k) to the
next x using only those numbers. The same `step` serves two callers:

- the eager loop (`models.diffusion.sample`) passes k as a Python int and reads each coefficient as
  a Python float taken straight from the float64 schedule;
- a graphed run (`bench.measure.graphed_sampling`) puts the tables on the device once
  (`Coefficients.on`) and passes k as a (1,)-shaped int64 device tensor, the step counter a CUDA
  graph advances itself, so each coefficient is a 0-dim device tensor.

A float32 tensor op rounds a Python-float operand to float32 before it computes, which is the value
the float32 table holds, so both callers compute the same numbers (tested on the CPU for every
capture-safe sampler).

A sampler that is not a per-step coefficient update (a diffusers scheduler, with its own state and
several model calls per step) overrides `run_chain`, the whole chain from x_T, and `model_calls`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from models.diffusion.respacing import RespacedSchedule
from models.errors import ModelInputError

Denoise = Callable[[Tensor, int], Tensor]
"""(x, ORIGINAL timestep index) -> the model output at x, in x's dtype: the model call of a chain."""

StepIndex = int | Tensor
"""Step k of the chain: a Python int (eager loop) or a (1,) int64 tensor on the device (graphed)."""


@dataclass(frozen=True)
class Option:
    """A sampler option: its default, the rule a value must follow (in words, for the error) and
    the check of that rule; `convert` turns an accepted value into the one the sampler keeps."""

    default: Any
    rule: str
    check: Callable[[Any], bool]
    convert: Callable[[Any], Any] = lambda value: value


def non_negative_number(default: float = 0.0) -> Option:
    """An option taking a finite real number >= 0 (kept as a float)."""
    return Option(
        default,
        "a finite number >= 0",
        lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0,
        float,
    )


class Coefficients:
    """Named per-step numbers of one chain, step k = 0 (noisiest) first.

    `values[name][k]` are Python floats computed in float64 from the schedule; `timesteps[k]` is
    the original timestep index the model is called with at step k. After `on(device, dtype)` the
    same numbers also exist as 1-D tensors, so `at(k)` works with a device step counter.
    """

    def __init__(self, values: Mapping[str, Sequence[float]], timesteps: Sequence[int]) -> None:
        self.values = {name: [float(v) for v in column] for name, column in values.items()}
        self.timesteps = [int(t) for t in timesteps]
        if any(len(column) != len(self.timesteps) for column in self.values.values()):
            raise ValueError("every coefficient needs one value per step")
        self.tables: dict[str, Tensor] = {}

    @property
    def n_steps(self) -> int:
        return len(self.timesteps)

    def on(self, device: torch.device | str, dtype: torch.dtype) -> Coefficients:
        """A copy whose tables are `dtype` tensors on `device` (the graphed run's form)."""
        copy = Coefficients(self.values, self.timesteps)
        copy.tables = {name: torch.tensor(column, dtype=dtype, device=device)
                       for name, column in self.values.items()}
        return copy

    def at(self, k: StepIndex) -> dict[str, float | Tensor]:
        """Every coefficient of step k: Python floats for an int k, 0-dim tensors for a tensor k
        (0-dim, so that a bfloat16 x is not promoted to the tables' dtype)."""
        if isinstance(k, Tensor):
            if not self.tables:
                raise ValueError("a step-counter tensor needs the tables on a device: call .on() first")
            return {name: table.index_select(0, k).squeeze(0) for name, table in self.tables.items()}
        return {name: column[k] for name, column in self.values.items()}


def table_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the coefficient tables for samples of `dtype`: float32 (what a float32,
    bfloat16 or float16 op turns a Python float into), float64 for float64 samples."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class Sampler:
    """Base class of a sampler. A subclass sets `name`, declares `options` (name -> Option; each
    becomes an attribute holding the chosen value), says whether it is `capture_safe`, and
    implements `step_values` (the coefficients of one step, as floats) and `step` (the update).

    `capture_safe = True` promises that `step` does the same tensor work at every step: no Python
    branch on k or on tensor values, no host reads, no state kept between steps, noise only
    through its `noise` argument. Only such a sampler is replayed from one captured CUDA graph.
    A multistep or adaptive sampler keeps its history on the instance and leaves it False.
    """

    name: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Option]] = {}
    capture_safe: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        self.settings: dict[str, Any] = {}
        for key, value in options.items():
            if key not in self.options:
                takes = ", ".join(self.options) if self.options else "no options"
                raise ModelInputError(f"sampler {self.name!r} has no option {key!r} (it takes {takes})")
            option = self.options[key]
            if not option.check(value):
                raise ModelInputError(f"sampler {self.name!r}: {key} must be {option.rule}, got {value!r}")
            self.settings[key] = option.convert(value)
        for key, option in self.options.items():
            self.settings.setdefault(key, option.default)
        for key, value in self.settings.items():
            setattr(self, key, value)

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.settings.items())
        return f"{type(self).__name__}({settings})"

    def step_values(self, schedule: RespacedSchedule, i: int) -> dict[str, float]:
        """The coefficients of respaced step i (float64 math on the schedule's tables)."""
        raise NotImplementedError

    def coefficients(self, schedule: RespacedSchedule) -> Coefficients:
        """The per-step coefficients of the whole chain, in the order it runs (noisiest first)."""
        order = range(schedule.num_steps - 1, -1, -1)
        rows = [self.step_values(schedule, i) for i in order]
        names = list(rows[0]) if rows else []
        return Coefficients({name: [row[name] for row in rows] for name in names},
                            [int(schedule.timesteps[i]) for i in order])

    def needs_noise(self, coeffs: Coefficients, k: int) -> bool:
        """Whether step k adds noise, i.e. takes a fresh standard-normal draw. By convention a
        sampler names its per-step noise scale `noise_std`; it draws where that is > 0."""
        return coeffs.values.get("noise_std", [0.0] * coeffs.n_steps)[k] > 0.0

    def step(self, output: Tensor, x: Tensor, k: StepIndex, coeffs: Coefficients, prediction: str,
             noise: Tensor | None, clip: bool) -> Tensor:
        """x at step k -> x after it, from the model output at x. `noise` is the standard-normal
        draw of this step, or None when the step adds none (a graphed run passes zeros with a zero
        `noise_std` instead). Write coefficient products as `tensor * c[...]`: that order keeps a
        bfloat16 product identical between a Python-float and a 0-dim-tensor coefficient."""
        raise NotImplementedError

    def model_calls(self, steps: int) -> int:
        """Denoiser calls of one run of `steps` steps: one per step (a sampler that calls the
        model more often overrides this; tested against a counting model)."""
        return steps

    def run_chain(self, denoise: Denoise, x: Tensor, schedule: RespacedSchedule, prediction: str,
                  noise: Callable[[], Tensor], generator: torch.Generator, clip: bool,
                  progress: bool = False) -> Tensor:
        """The whole chain from the standard-normal x_T `x`: the eager loop. `noise()` is a fresh
        standard-normal draw shaped like x from `generator` (which a sampler that draws its own
        noise may use directly); `denoise(x, t)` calls the model at ORIGINAL timestep t."""
        from tqdm.auto import tqdm

        coeffs = self.coefficients(schedule)
        for k in tqdm(range(coeffs.n_steps), total=coeffs.n_steps, desc=f"{self.name} sampling",
                      disable=not progress):
            output = denoise(x, coeffs.timesteps[k])
            z = noise() if self.needs_noise(coeffs, k) else None
            x = self.step(output, x, k, coeffs, prediction, z, clip)
        return x
