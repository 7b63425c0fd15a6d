"""ODE solver backends of the continuous U-Net, in one registry: `SOLVER_BACKENDS = {name: solve}`.

Every backend integrates dz/ds = f(s, z) from s = 0 to s = 1 and returns the state at s = 1:

- `torchdiffeq`: the authors' path (`odeint`/`odeint_adjoint`). The only backend for the adaptive
  `dopri5` and for the adjoint method. Its fixed-grid loop reads tensors on the host several times
  per solve (grid checks, `while t1 >= t[j]`, interpolation comparisons), so on a GPU every solve
  waits for the device and a CUDA graph cannot be captured.
- `native`: the fixed-step methods (`euler`, `midpoint`, `rk4`) written out with step sizes held
  as Python floats, computed once when the model is built. A forward reads nothing back from the
  device: no `.item()`, no tensor comparison, no data-dependent branch, so it can be captured in a
  CUDA graph and compiled without graph breaks. It computes exactly what torchdiffeq computes for
  the same method and grid (torchdiffeq's `rk4` is the 3/8-rule variant, `rk4_alt_step_func`),
  operation for operation, so the two agree to float32 rounding.
- `torchode`: the torchode library (batched, compile-minded solving) for the methods it has
  (`euler` on a fixed grid; `dopri5` adaptive). Its state is (batch, features): the block's state
  is flattened for it and reshaped back.

A new backend is one function with the `Solve` signature plus one line in `SOLVER_BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from models.errors import ModelInputError

FIXED_STEP_METHODS = ("rk4", "euler", "midpoint")
ADAPTIVE_METHODS = ("dopri5",)
METHODS = FIXED_STEP_METHODS + ADAPTIVE_METHODS
"""Every ODE method a cU-Net configuration may name (`CUNetConfig.solver`)."""

Derivative = Callable[[torch.Tensor | float, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SolveSettings:
    """How one ODE block is solved (fixed by the model's configuration)."""

    method: str
    steps: int = 1
    """Equal steps on [0, 1] for the fixed-step methods (ignored by adaptive ones)."""
    rtol: float = 1e-3
    atol: float = 1e-4
    adjoint: bool = False

    grid: tuple[float, ...] = field(init=False)
    """The time grid as Python floats: the float32 values of linspace(0, 1, steps + 1), the grid
    torchdiffeq is given. Computed here, once, when the model is built, never during a forward."""
    step_sizes: tuple[float, ...] = field(init=False)
    """dt of every step, computed in float32 like torchdiffeq's `t1 - t0`."""

    def __post_init__(self) -> None:
        steps = self.steps if self.method in FIXED_STEP_METHODS else 1
        grid = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float32)
        object.__setattr__(self, "grid", tuple(grid.tolist()))
        object.__setattr__(self, "step_sizes", tuple((grid[1:] - grid[:-1]).tolist()))


Solve = Callable[[Derivative, torch.Tensor, SolveSettings, Sequence[torch.Tensor]], torch.Tensor]


# --- native: capture-safe fixed steps ------------------------------------------------------------

_ONE_THIRD = 1 / 3
_TWO_THIRDS = 2 / 3


def _euler_step(f: Derivative, s0: float, dt: float, z: torch.Tensor) -> torch.Tensor:
    return dt * f(s0, z)


def _midpoint_step(f: Derivative, s0: float, dt: float, z: torch.Tensor) -> torch.Tensor:
    half = 0.5 * dt
    z_mid = z + f(s0, z) * half
    return dt * f(s0 + half, z_mid)


def _rk4_38_step(f: Derivative, s0: float, dt: float, z: torch.Tensor) -> torch.Tensor:
    """The 3/8-rule RK4 step, in torchdiffeq's order of operations (same rounding)."""
    k1 = f(s0, z)
    k2 = f(s0 + dt * _ONE_THIRD, z + dt * k1 * _ONE_THIRD)
    k3 = f(s0 + dt * _TWO_THIRDS, z + dt * (k2 - k1 * _ONE_THIRD))
    k4 = f(s0 + dt, z + dt * (k1 - k2 + k3))
    return (k1 + 3 * (k2 + k3) + k4) * dt * 0.125


NATIVE_STEPS: dict[str, Callable[[Derivative, float, float, torch.Tensor], torch.Tensor]] = {
    "euler": _euler_step,
    "midpoint": _midpoint_step,
    "rk4": _rk4_38_step,
}


def solve_native(f: Derivative, z: torch.Tensor, settings: SolveSettings,
                 _params: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    """Fixed steps over the precomputed grid; the Python loop unrolls to the same kernels every
    call (what CUDA graphs and torch.compile need)."""
    step = NATIVE_STEPS[settings.method]
    for s0, dt in zip(settings.grid[:-1], settings.step_sizes, strict=True):
        z = z + step(f, s0, dt, z)
    return z


# --- torchdiffeq: the authors' path ---------------------------------------------------------------


def solve_torchdiffeq(f: Derivative, z: torch.Tensor, settings: SolveSettings,
                      params: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    from torchdiffeq import odeint, odeint_adjoint

    grid = torch.tensor(settings.grid, device=z.device, dtype=torch.float32)
    kwargs: dict = {"method": settings.method}
    if settings.method in ADAPTIVE_METHODS:
        kwargs.update(rtol=settings.rtol, atol=settings.atol)
    if settings.adjoint:
        return odeint_adjoint(f, z, grid, adjoint_params=tuple(params), **kwargs)[-1]
    return odeint(f, z, grid, **kwargs)[-1]


# --- torchode ---------------------------------------------------------------------------------------

TORCHODE_METHODS = ("euler", "dopri5")


def solve_torchode(f: Derivative, z: torch.Tensor, settings: SolveSettings,
                   _params: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    import torchode

    shape = z.shape
    batch = shape[0]

    def flat_derivative(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return f(s, y.reshape(shape)).reshape(batch, -1)

    term = torchode.ODETerm(flat_derivative)
    t_eval = torch.tensor([0.0, 1.0], device=z.device, dtype=torch.float32).expand(batch, 2)
    if settings.method == "euler":
        method = torchode.Euler(term=term)
        controller = torchode.FixedStepController()
        dt0 = torch.full((batch,), settings.step_sizes[0], device=z.device, dtype=torch.float32)
    else:
        method = torchode.Dopri5(term=term)
        controller = torchode.IntegralController(atol=settings.atol, rtol=settings.rtol, term=term)
        dt0 = None
    solver = torchode.AutoDiffAdjoint(method, controller)
    problem = torchode.InitialValueProblem(y0=z.reshape(batch, -1), t_eval=t_eval)
    solution = solver.solve(problem, dt0=dt0)
    return solution.ys[:, -1].reshape(shape).to(z.dtype)


SOLVER_BACKENDS: dict[str, Solve] = {
    "native": solve_native,
    "torchdiffeq": solve_torchdiffeq,
    "torchode": solve_torchode,
}
"""Backend name -> solve function. `torchdiffeq` is the default (the paper's way of running)."""

BACKEND_METHODS: dict[str, tuple[str, ...]] = {
    "native": FIXED_STEP_METHODS,
    "torchdiffeq": FIXED_STEP_METHODS + ADAPTIVE_METHODS,
    "torchode": TORCHODE_METHODS,
}
"""The methods each backend provides."""


def check_backend(backend: str, method: str, adjoint: bool, *, name: str = "model") -> None:
    """Raise ModelInputError when `backend` cannot solve with `method` (and `adjoint`)."""
    if backend not in SOLVER_BACKENDS:
        raise ModelInputError(f"{name}: unknown solver_backend {backend!r}; use one of "
                              f"{', '.join(SOLVER_BACKENDS)}")
    if method not in BACKEND_METHODS[backend]:
        able = [b for b, methods in BACKEND_METHODS.items() if method in methods]
        raise ModelInputError(
            f"{name}: solver_backend {backend!r} has no method {method!r} (it has "
            f"{', '.join(BACKEND_METHODS[backend])}); use solver_backend {' or '.join(repr(b) for b in able)}"
        )
    if adjoint and backend != "torchdiffeq":
        raise ModelInputError(f"{name}: adjoint=True needs solver_backend 'torchdiffeq', not {backend!r}")


def solve(backend: str, f: Derivative, z: torch.Tensor, settings: SolveSettings,
          params: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    """Integrate f from 0 to 1 starting at z with the named backend; the state at s = 1.

    Non-finite values: fixed-step methods propagate NaN/inf to the output like any other layer
    (no check: it would read the device). An adaptive method cannot choose a step from a NaN error
    estimate (torchdiffeq dies in an internal assertion), so a non-finite state is refused first
    with ModelInputError; adaptive solving reads the device at every step anyway.
    """
    if settings.method in ADAPTIVE_METHODS and not bool(torch.isfinite(z).all()):
        raise ModelInputError(
            f"non-finite values (NaN or inf) reached an ODE block solved with the adaptive "
            f"{settings.method}, whose step control cannot work on them; check the input x")
    return SOLVER_BACKENDS[backend](f, z, settings, params)
