"""The two built-in model families (the DDPM U-Net and the continuous U-Net) and the paper's
presets, registered with the same calls a new family would use (`models.registry`)."""

from __future__ import annotations

from models.config import ATTENTION_SITES, NORMS, TIME_CONDITIONING, CUNetConfig, UNetConfig
from models.errors import ModelInputError
from models.registry import Family, Preset, register_family, register_preset
from models.solvers import METHODS, check_backend

ATTN5 = ("enc2", "enc4", "mid", "dec1", "dec3")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ModelInputError(message)


def _validate_unet(name: str, c: UNetConfig) -> None:
    _require(c.dim >= 1 and c.dim % c.resnet_groups == 0,
             f"{name}: dim={c.dim} must be a positive multiple of resnet_groups={c.resnet_groups}")
    _require(len(c.full_attention) == len(c.dim_mults),
             f"{name}: full_attention needs one flag per entry of dim_mults")


def _validate_cunet(name: str, c: CUNetConfig) -> None:
    _require(c.num_filters >= 1, f"{name}: num_filters must be >= 1, got {c.num_filters}")
    _require(c.solver in METHODS, f"{name}: unknown solver '{c.solver}'; use one of {', '.join(METHODS)}")
    _require(c.solver_steps >= 1, f"{name}: solver_steps must be >= 1, got {c.solver_steps}")
    _require(c.norm in NORMS, f"{name}: unknown norm '{c.norm}'; use one of {', '.join(NORMS)}")
    _require(c.time_conditioning in TIME_CONDITIONING,
             f"{name}: unknown time_conditioning '{c.time_conditioning}'; "
             f"use one of {', '.join(TIME_CONDITIONING)}")
    bad = [s for s in c.attention if s not in ATTENTION_SITES]
    _require(not bad, f"{name}: unknown attention site(s) {bad}; use {', '.join(ATTENTION_SITES)}")
    _require(c.rtol > 0 and c.atol > 0, f"{name}: rtol and atol must be > 0")
    check_backend(c.solver_backend, c.solver, c.adjoint, name=name)


def _build_unet(config: UNetConfig):
    from models.unet import UNet

    return UNet(config)


def _build_cunet(config: CUNetConfig):
    from models.cunet import ContinuousUNet

    return ContinuousUNet(config)


def _unet_resolutions(config: UNetConfig) -> tuple[int, int]:
    from models.unet import resolution_rule

    return resolution_rule(config)


def _cunet_resolutions(config: CUNetConfig) -> tuple[int, int]:
    from models.cunet import resolution_rule

    return resolution_rule(config)


register_family(Family(UNetConfig, build=_build_unet, validate=_validate_unet,
                       resolution_rule=_unet_resolutions, aliases={"width": "dim"},
                       small={"dim": 8}))
register_family(Family(CUNetConfig, build=_build_cunet, validate=_validate_cunet,
                       resolution_rule=_cunet_resolutions, aliases={"width": "num_filters"},
                       continuous=True, small={"num_filters": 4}))

register_preset("unet", Preset(UNetConfig(), "DDPM U-Net baseline, 35,710,339 params"))
register_preset("cunet", Preset(
    CUNetConfig(),
    "continuous U-Net as released (2 attention blocks; output ignores t), 8,811,875 params"))
register_preset("cunet-noattn", Preset(
    CUNetConfig(attention=()), "cU-Net without attention (wo/A), 8,548,707 params"))
register_preset("cunet-nores", Preset(
    CUNetConfig(ode_residual=False, time_conditioning="additive"),
    "cU-Net without residual ODE functions, additive time MLPs (wo/R), 6,138,083 params"))
register_preset("cunet-noattn-nores", Preset(
    CUNetConfig(ode_residual=False, time_conditioning="additive", attention=()),
    "cU-Net wo/A/R, 5,874,915 params"))
register_preset("cunet-attn5", Preset(
    CUNetConfig(attention=ATTN5),
    "cU-Net with five attention blocks (the paper's Table 2 cU-Net row), 9,140,835 params"))
register_preset("cunet-film", Preset(
    CUNetConfig(time_conditioning="film"),
    "cU-Net as the paper describes it: FiLM time conditioning in every ODE function"))
