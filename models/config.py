"""Configurations of the denoisers, as frozen dataclasses.

A preset in `models.registry` is one of these with fixed values; `models.build(name, **overrides)`
replaces fields. Every field is documented because the harnesses record them as context.
"""

from __future__ import annotations

from dataclasses import dataclass

ATTENTION_SITES = ("enc1", "enc2", "enc3", "enc4", "mid", "dec1", "dec2", "dec3", "dec4")
NORMS = ("instance", "group")
TIME_CONDITIONING = ("none", "additive", "film")


@dataclass(frozen=True)
class UNetConfig:
    """The DDPM U-Net baseline (docs/paper.md, "The DDPM U-Net")."""

    dim: int = 64
    """Base width: channels after the input convolution."""
    dim_mults: tuple[int, ...] = (1, 2, 4, 8)
    in_channels: int = 3
    out_channels: int = 3
    resnet_groups: int = 8
    attn_heads: int = 4
    attn_dim_head: int = 32
    full_attention: tuple[bool, ...] = (False, False, False, True)
    """Per down level: full (True) or linear (False) attention. Up levels use it reversed."""
    time_dim_mult: int = 4
    num_timesteps: int = 1000


@dataclass(frozen=True)
class CUNetConfig:
    """The continuous U-Net (docs/paper.md, "The continuous U-Net", "The variants"): every block is a
    neural ODE."""

    num_filters: int = 16
    """Base width nf: the lift has nf then 2*nf channels; level l has 2*nf*2**(l-1)."""
    in_channels: int = 3
    out_channels: int = 3
    attention: tuple[str, ...] = ("enc4", "dec1")
    """Sites (after the ODE output of that stage) that get a full-attention block."""
    ode_residual: bool = True
    """True: f(z) = conv3x3 stack + z (released cU-Net). False: the wo/R function (no residual,
    second conv 1x1)."""
    time_conditioning: str = "none"
    """'none' (released cU-Net: output independent of t), 'additive' (wo/R time MLPs added after
    the lift and each transition), 'film' (FiLM inside every ODE function, as the paper says)."""
    norm: str = "instance"
    """Norm inside ODE functions: 'instance' (no parameters) or 'group' (GroupNorm(8), affine)."""
    solver: str = "rk4"
    solver_steps: int = 1
    """Steps per ODE block for fixed-grid solvers (ignored by dopri5)."""
    solver_backend: str = "torchdiffeq"
    """Who integrates (`models.solvers.SOLVER_BACKENDS`): 'torchdiffeq' (the authors' path, the
    only one for dopri5 and the adjoint), 'native' (capture-safe fixed steps: CUDA graphs,
    torch.compile without graph breaks) or 'torchode' (euler, dopri5). Counts and checkpoints do
    not depend on it."""
    rtol: float = 1e-3
    atol: float = 1e-4
    adjoint: bool = False
    time_embed_dim: int = 256
    attn_heads: int = 4
    attn_dim_head: int = 32
    num_timesteps: int = 1000

