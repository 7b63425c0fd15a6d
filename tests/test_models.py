"""Model presets: exact parameter parity with the paper, shapes, time dependence, NFE, bad input."""

from __future__ import annotations

import pytest
import torch

import models
from models import ModelInputError

PAPER_PARAMS = {
    "unet": 35_710_339,
    "cunet": 8_811_875,
    "cunet-noattn": 8_548_707,
    "cunet-nores": 6_138_083,
    "cunet-noattn-nores": 5_874_915,
    "cunet-attn5": 9_140_835,
}
ODE_WIDTHS = [32, 64, 128, 256, 512, 256, 128, 64, 32]  # the nine ODE blocks at nf = 16
SMALL = {"unet": {"width": 16}}  # reduced widths keep forward passes cheap
SMALL_CUNET = {"width": 4}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def small(name: str, **overrides) -> torch.nn.Module:
    base = SMALL.get(name, SMALL_CUNET)
    return models.build(name, **{**base, **overrides}).eval()


@pytest.mark.parametrize("name", list(PAPER_PARAMS))
def test_paper_presets_have_exact_parameter_counts(name):
    assert n_params(models.build(name)) == PAPER_PARAMS[name]


def test_film_preset_adds_one_film_projection_per_ode_function():
    # FiLM: Linear(256, 2c) per ODE function on top of the released cU-Net.
    film_params = sum(256 * 2 * c + 2 * c for c in ODE_WIDTHS)
    assert n_params(models.build("cunet-film")) == PAPER_PARAMS["cunet"] + film_params


def test_group_norm_variant_matches_paper_note():
    assert n_params(models.build("cunet-attn5", norm="group")) == 9_146_723


def test_frozen_time_table_counts_but_does_not_train():
    model = models.build("cunet")
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen == 1000 * 256


def test_registry_lists_every_preset():
    assert set(PAPER_PARAMS) | {"cunet-film"} == set(models.available())


@pytest.mark.parametrize("name", ["unet", "cunet", "cunet-noattn", "cunet-nores", "cunet-noattn-nores",
                                  "cunet-attn5", "cunet-film"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("resolution", [32, 64])
def test_output_has_the_input_shape(name, channels, resolution):
    model = small(name, channels=channels)
    x = torch.randn(2, channels, resolution, resolution)
    with torch.no_grad():
        y = model(x, torch.tensor([0, 999]))
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def _outputs_at(model, t_values):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        return [model(x, torch.tensor([t])) for t in t_values]


def test_released_cunet_ignores_the_timestep():
    early, late = _outputs_at(small("cunet"), [0, 999])
    assert torch.equal(early, late)


@pytest.mark.parametrize("name", ["unet", "cunet-film", "cunet-nores"])
def test_time_conditioned_models_depend_on_the_timestep(name):
    early, late = _outputs_at(small(name), [0, 999])
    assert (early - late).abs().max() > 1e-4


def test_one_rk4_step_is_four_evaluations_per_block():
    model = small("cunet")
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32), torch.tensor([3]))
    nfe = models.last_nfe(model)
    assert {k: v for k, v in nfe.items() if k != "total"} == dict.fromkeys(
        ["enc1", "enc2", "enc3", "enc4", "mid", "dec1", "dec2", "dec3", "dec4"], 4
    )
    assert nfe["total"] == 36


@pytest.mark.parametrize(
    ("solver", "steps", "per_block"), [("rk4", 3, 12), ("euler", 2, 2), ("midpoint", 2, 4)]
)
def test_fixed_grid_solvers_report_their_evaluations(solver, steps, per_block):
    model = small("cunet-noattn", solver=solver, solver_steps=steps)
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32), torch.tensor([3]))
    assert models.last_nfe(model)["total"] == 9 * per_block


def test_dopri5_nfe_depends_on_tolerance():
    x = torch.randn(1, 3, 32, 32)
    totals = []
    for tol in (1e-2, 1e-6):
        model = small("cunet-noattn", solver="dopri5", rtol=tol, atol=tol)
        with torch.no_grad():
            model(x, torch.tensor([3]))
        nfe = models.last_nfe(model)
        assert all(v >= 6 for k, v in nfe.items() if k != "total")  # at least one accepted step
        totals.append(nfe["total"])
    assert totals[1] > totals[0]


def test_nfe_is_empty_for_discrete_models():
    assert models.last_nfe(small("unet")) == {}


def test_adjoint_gradients_approach_backprop_as_the_grid_refines():
    """The adjoint re-integrates backwards, so with few rk4 steps it only approximates the
    backprop gradient; the gap must shrink as the grid refines."""
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([5])

    def film_weight_grad(adjoint: bool, steps: int) -> torch.Tensor:
        torch.manual_seed(0)
        model = models.build("cunet-film", width=2, attention=[], adjoint=adjoint, solver_steps=steps)
        model(x, t).square().mean().backward()
        return model.encoder[0].ode.func.film[1].weight.grad

    gaps = []
    for steps in (2, 32):
        exact = film_weight_grad(False, steps)
        gaps.append(((film_weight_grad(True, steps) - exact).norm() / exact.norm()).item())
    assert gaps[1] < 0.1 and gaps[1] < gaps[0] / 2


@pytest.mark.parametrize("name", ["unet", "cunet-film"])
def test_bfloat16_forward(name):
    model = small(name).to(torch.bfloat16)
    with torch.no_grad():
        y = model(torch.randn(1, 3, 32, 32, dtype=torch.bfloat16), torch.tensor([10]))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_overrides_change_width_and_solver():
    model = models.build("cunet", num_filters=8, solver="euler", norm="group")
    assert model.config.num_filters == 8 and model.config.solver == "euler"
    assert models.build("unet", width=32).config.dim == 32


# --- bad input: one clear line, not a shape mismatch deep inside torch -------------------------

def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ModelInputError, match="available: unet, cunet"):
        models.build("resnet")


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [({"solver": "rk45"}, "unknown solver"), ({"norm": "batch"}, "unknown norm"),
     ({"bogus": 1}, "unknown override 'bogus'"), ({"solver_steps": 0}, "solver_steps"),
     ({"attention": ["middle"]}, "unknown attention site")],
)
def test_bad_overrides(overrides, pattern):
    with pytest.raises(ModelInputError, match=pattern):
        models.build("cunet", **overrides)


@pytest.mark.parametrize("name", ["unet", "cunet"])
def test_resolution_the_network_cannot_take(name):
    with pytest.raises(ModelInputError, match="not a multiple of"):
        small(name)(torch.randn(1, 3, 30, 30), torch.tensor([0]))


@pytest.mark.parametrize("t", [[-1], [1000], [5000]])
def test_timestep_out_of_range(t):
    with pytest.raises(ModelInputError, match=r"timesteps must lie in \[0, 1000\)"):
        small("cunet")(torch.randn(1, 3, 32, 32), torch.tensor(t))


def test_float_timesteps_are_rejected():
    with pytest.raises(ModelInputError, match="integer timesteps"):
        small("unet")(torch.randn(1, 3, 32, 32), torch.tensor([0.5]))


def test_cunet_needs_two_pixels_at_its_deepest_level():
    with pytest.raises(ModelInputError, match="at least 32x32"):
        small("cunet")(torch.randn(1, 3, 16, 16), torch.tensor([0]))


def test_wrong_channel_count():
    with pytest.raises(ModelInputError, match="x has 1 channels but the model takes 3"):
        small("unet")(torch.randn(1, 1, 32, 32), torch.tensor([0]))


def test_wrong_timestep_shape():
    with pytest.raises(ModelInputError, match="one timestep per image"):
        small("cunet")(torch.randn(2, 3, 32, 32), torch.tensor([0]))


def test_non_finite_input_is_defined():
    """NaN/inf propagate through fixed-step models; the adaptive solver refuses them in one line
    instead of dying in torchdiffeq's internal assertion."""
    import math

    x = torch.randn(1, 3, 32, 32)
    x[0, 0, 0, 0] = math.nan
    t = torch.tensor([5])
    for name, kwargs in (("unet", {"width": 8}), ("cunet", {"width": 4})):
        with torch.no_grad():
            out = models.build(name, **kwargs).eval()(x, t)
        assert out.shape == x.shape and torch.isnan(out).any()
    adaptive = models.build("cunet", width=4, solver="dopri5").eval()
    for bad in (math.nan, math.inf):
        x[0, 0, 0, 0] = bad
        with torch.no_grad(), pytest.raises(models.ModelInputError, match="non-finite values"):
            adaptive(x, t)


def test_a_new_family_registers_with_two_calls(monkeypatch) -> None:
    """A family registered the way the built-in two are builds, checks resolutions and stores its
    config; one without channel fields is refused at registration."""
    import dataclasses

    import pytest
    from torch import nn

    from models import registry

    @dataclasses.dataclass(frozen=True)
    class TinyConfig:
        width: int = 4
        in_channels: int = 3
        out_channels: int = 3

    class Tiny(nn.Module):
        def __init__(self, c: TinyConfig) -> None:
            super().__init__()
            self.conv = nn.Conv2d(c.in_channels, c.out_channels, 3, padding=1)

        def forward(self, x, t):
            return self.conv(x)

    monkeypatch.setattr(registry, "FAMILIES", dict(registry.FAMILIES))
    monkeypatch.setattr(registry, "PRESETS", dict(registry.PRESETS))
    registry.register_family(registry.Family(TinyConfig, build=Tiny, validate=lambda n, c: None,
                                             resolution_rule=lambda c: (8, 8),
                                             aliases={"width": "width"}))
    registry.register_preset("tiny", registry.Preset(TinyConfig(), "a test family"))
    source = models.model_source("tiny", {"width": 8}).with_channels(1)
    assert source.build().conv.in_channels == 1 and source.config()["family"] == "TinyConfig"
    with pytest.raises(models.ModelInputError, match="multiple of 8"):
        source.check(channels=1, resolution=12)

    @dataclasses.dataclass(frozen=True)
    class NoChannels:
        width: int = 4

    with pytest.raises(ValueError, match="in_channels"):
        registry.register_family(registry.Family(NoChannels, build=Tiny, validate=lambda n, c: None,
                                                 resolution_rule=lambda c: (8, 8)))
