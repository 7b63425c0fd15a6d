"""The ODE solver backends: the native fixed-step loop equals torchdiffeq, never reads the device,
and the backend changes no count."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torchdiffeq import odeint

import models
from bench.checkpoint import checkpoint_mib
from bench.measure import compute, params
from models.solvers import SolveSettings, solve_native

METHODS = ("euler", "midpoint", "rk4")


class Field(torch.nn.Module):
    """A small nonlinear vector field with a time dependence (so wrong stage times show)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(6, 6)

    def forward(self, s, z):
        return torch.tanh(self.lin(z)) * (1.0 + s) - 0.3 * z


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("steps", [1, 2, 5])
def test_native_equals_torchdiffeq_on_random_states(method: str, steps: int) -> None:
    torch.manual_seed(steps)
    field = Field()
    z0 = torch.randn(4, 6)
    grid = torch.linspace(0.0, 1.0, steps + 1)
    with torch.no_grad():
        reference = odeint(field, z0, grid, method=method)[-1]
        ours = solve_native(field, z0, SolveSettings(method=method, steps=steps))
    torch.testing.assert_close(ours, reference, rtol=1.2e-7, atol=1e-7)
    assert not torch.equal(ours, z0)


@pytest.mark.parametrize("method", METHODS)
def test_native_backend_reproduces_the_torchdiffeq_cunet(method: str) -> None:
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([3, 900])
    kwargs = dict(num_filters=4, solver=method, solver_steps=2, time_conditioning="film")
    authors = models.build("cunet", **kwargs).eval()
    native = models.build("cunet", solver_backend="native", **kwargs).eval()
    native.load_state_dict(authors.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(native(x, t), authors(x, t), rtol=1e-5, atol=1e-6)
    assert models.last_nfe(native) == models.last_nfe(authors)


def test_rk4_is_the_three_eighths_rule() -> None:
    """dz/ds = s**3 from 0: one classic RK4 step and the 3/8 rule both integrate cubics exactly,
    but their stage times differ; check the stage times the 3/8 rule uses (0, 1/3, 2/3, 1)."""
    seen: list[float] = []

    def f(s, z):
        seen.append(float(s))
        return z * 0 + float(s) ** 3

    solve_native(f, torch.zeros(1), SolveSettings(method="rk4", steps=1))
    assert seen == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])


@contextlib.contextmanager
def host_reads_raise():
    """Make every tensor -> Python conversion raise: on a GPU each would be a synchronisation."""
    names = ("item", "__bool__", "__int__", "__float__", "tolist", "__index__")
    saved = {name: getattr(torch.Tensor, name) for name in names}

    def refuse(self, *args, **kwargs):
        raise AssertionError("a tensor was read on the host during the forward")

    try:
        for name in names:
            setattr(torch.Tensor, name, refuse)
        yield
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


@pytest.mark.parametrize("preset", ["cunet", "cunet-film", "cunet-nores"])
def test_native_forward_reads_nothing_on_the_host(preset: str) -> None:
    net = models.build(preset, num_filters=4, solver_backend="native").eval()
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([10])
    with torch.no_grad(), host_reads_raise():
        net(x, t)
    assert models.last_nfe(net)["total"] == 36


def test_the_sync_detector_catches_torchdiffeq() -> None:
    """The check above can fail: torchdiffeq's fixed grid reads tensors on the host."""
    net = models.build("cunet", num_filters=4).eval()
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([10])
    with torch.no_grad(), host_reads_raise(), pytest.raises(AssertionError, match="on the host"):
        net(x, t)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_native_forward_is_sync_free_on_cuda() -> None:
    net = models.build("cunet", num_filters=4, solver_backend="native").eval().cuda()
    x, t = torch.randn(1, 3, 32, 32, device="cuda"), torch.tensor([10], device="cuda")
    with torch.no_grad():
        net(x, t)  # lazy initialisation (cuDNN handles) may synchronise once
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            net(x, t)
        finally:
            torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("backend", ["native", "torchode"])
def test_backend_changes_no_count(backend: str) -> None:
    kwargs = dict(num_filters=4, solver="euler")
    base = models.build("cunet", **kwargs).eval()
    other = models.build("cunet", solver_backend=backend, **kwargs).eval()
    shape = (3, 32, 32)
    assert params.count_params(other) == params.count_params(base)
    assert compute.thop_macs(other, shape).macs == compute.thop_macs(base, shape).macs
    assert checkpoint_mib(other, shape=shape) == pytest.approx(checkpoint_mib(base, shape=shape), rel=1e-3)
    assert compute.call_nfe(other, shape).total == compute.call_nfe(base, shape).total


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"solver_backend": "scipy"}, "unknown solver_backend 'scipy'"),
        ({"solver_backend": "native", "solver": "dopri5"}, "has no method 'dopri5'"),
        ({"solver_backend": "torchode", "solver": "rk4"}, "use solver_backend 'native' or 'torchdiffeq'"),
        ({"solver_backend": "native", "adjoint": True}, "adjoint=True needs solver_backend 'torchdiffeq'"),
    ],
)
def test_bad_backend_is_one_line(overrides: dict, message: str) -> None:
    with pytest.raises(models.ModelInputError, match=message):
        models.build("cunet", **overrides)
