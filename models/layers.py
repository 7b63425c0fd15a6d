"""Building blocks shared by the U-Net and the continuous U-Net."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SinusoidalTimeEmbedding(nn.Module):
    """Sinusoidal embedding of integer timesteps: [sin(t w_i), cos(t w_i)], as in the DDPM U-Net.

    Frequencies are w_i = exp(-ln(10000) * i / (half - 1)), i < half = dim // 2.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        scale = math.log(10000) / (half - 1)
        freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -scale)
        angles = t.float()[:, None] * freqs[None, :]
        return torch.cat((angles.sin(), angles.cos()), dim=-1)


def sinusoidal_table(num_timesteps: int, dim: int) -> torch.Tensor:
    """Interleaved sinusoidal table (T, dim): column 2k = sin(t w_2k), 2k+1 = cos(t w_2k),
    w_j = 10000^(-j/dim) for even j (the cU-Net's frozen time table)."""
    positions = torch.arange(num_timesteps, dtype=torch.float64)[:, None]
    even = torch.arange(0, dim, 2, dtype=torch.float64)
    angles = positions * torch.pow(10000.0, -even / dim)[None, :]
    table = torch.empty(num_timesteps, dim, dtype=torch.float64)
    table[:, 0::2] = angles.sin()
    table[:, 1::2] = angles.cos()
    return table.float()


class RMSNorm2d(nn.Module):
    """x / ||x||_channels * g * sqrt(C): unit RMS over channels, learned gain per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.scale = channels**0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.gain * self.scale


class _HeadedAttention(nn.Module):
    """Shared part of both attentions: RMSNorm, a bias-free 1x1 qkv projection split into heads,
    and `to_out` (set by the subclass)."""

    def __init__(self, channels: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.inner = heads * dim_head
        self.norm = RMSNorm2d(channels)
        self.to_qkv = nn.Conv2d(channels, self.inner * 3, 1, bias=False)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v of shape (b, heads, dim_head, positions)."""
        b, _, h, w = x.shape
        q, k, v = self.to_qkv(self.norm(x)).reshape(b, 3, self.heads, self.dim_head, h * w).unbind(1)
        return q, k, v


class FullAttention(_HeadedAttention):
    """Multi-head softmax attention over all positions, pre-normed with RMSNorm.

    The matrix products are written with `torch.matmul` so that fvcore and torch's flop counter
    see them (thop does not: it only counts leaf modules).
    """

    def __init__(self, channels: int, heads: int = 4, dim_head: int = 32) -> None:
        super().__init__(channels, heads, dim_head)
        self.to_out = nn.Conv2d(self.inner, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self.qkv(x)
        q = q * self.dim_head**-0.5
        weights = torch.matmul(q.transpose(-1, -2), k).softmax(dim=-1)  # (b, heads, n, n)
        out = torch.matmul(weights, v.transpose(-1, -2))  # (b, heads, n, d)
        return self.to_out(out.transpose(-1, -2).reshape(b, self.inner, h, w))


class LinearAttention(_HeadedAttention):
    """Linear attention (softmax over features for q, over positions for k), RMSNorm before and
    after the output projection: cost linear in the number of positions."""

    def __init__(self, channels: int, heads: int = 4, dim_head: int = 32) -> None:
        super().__init__(channels, heads, dim_head)
        self.to_out = nn.Sequential(nn.Conv2d(self.inner, channels, 1), RMSNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self.qkv(x)
        q = q.softmax(dim=-2) * self.dim_head**-0.5
        k = k.softmax(dim=-1)
        context = torch.matmul(k, v.transpose(-1, -2))  # (b, heads, d, e)
        out = torch.matmul(context.transpose(-1, -2), q)  # (b, heads, e, n)
        return self.to_out(out.reshape(b, self.inner, h, w))


class Residual(nn.Module):
    """x + fn(x)."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(x)


def film(x: torch.Tensor, scale_shift: torch.Tensor) -> torch.Tensor:
    """FiLM: x * (scale + 1) + shift, with (scale, shift) = chunks of a (B, 2C) vector."""
    scale, shift = scale_shift[:, :, None, None].chunk(2, dim=1)
    return x * (scale + 1) + shift
