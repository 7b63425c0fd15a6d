"""The DDPM U-Net baseline (docs/paper.md, "The DDPM U-Net"): 35,710,339 parameters at its default
width."""

from __future__ import annotations

import torch
from torch import nn

from models.config import UNetConfig
from models.layers import FullAttention, LinearAttention, Residual, SinusoidalTimeEmbedding, film
from models.validation import check_denoiser_inputs


class ConvNormAct(nn.Module):
    """Conv3x3 -> GroupNorm -> (optional FiLM) -> SiLU."""

    def __init__(self, dim_in: int, dim_out: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, 3, padding=1)
        self.norm = nn.GroupNorm(groups, dim_out)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, scale_shift: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(self.conv(x))
        if scale_shift is not None:
            x = film(x, scale_shift)
        return self.act(x)


class ResnetBlock(nn.Module):
    """Two ConvNormAct layers, FiLM from the time embedding in the first, plus a residual."""

    def __init__(self, dim_in: int, dim_out: int, time_dim: int, groups: int) -> None:
        super().__init__()
        self.time_mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, dim_out * 2))
        self.block1 = ConvNormAct(dim_in, dim_out, groups)
        self.block2 = ConvNormAct(dim_out, dim_out, groups)
        self.skip = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x, self.time_mlp(time_emb))
        return self.block2(h) + self.skip(x)


class Downsample(nn.Module):
    """2x2 space-to-depth followed by a 1x1 convolution (halves the resolution)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(2)
        self.conv = nn.Conv2d(dim_in * 4, dim_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.unshuffle(x))


class Upsample(nn.Module):
    """Nearest x2 followed by a 3x3 convolution."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(dim_in, dim_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.up(x))


def _attention(channels: int, full: bool, config: UNetConfig) -> nn.Module:
    kind = FullAttention if full else LinearAttention
    return Residual(kind(channels, config.attn_heads, config.attn_dim_head))


class DownLevel(nn.Module):
    """Two ResNet blocks (each output kept as a skip, the second after attention), then the
    level's resampling (space-to-depth, or a plain 3x3 conv on the deepest level)."""

    def __init__(self, dim_in: int, dim_out: int, full: bool, last: bool, c: UNetConfig) -> None:
        super().__init__()
        time_dim = c.dim * c.time_dim_mult
        self.block1 = ResnetBlock(dim_in, dim_in, time_dim, c.resnet_groups)
        self.block2 = ResnetBlock(dim_in, dim_in, time_dim, c.resnet_groups)
        self.attn = _attention(dim_in, full, c)
        self.resample = nn.Conv2d(dim_in, dim_out, 3, padding=1) if last else Downsample(dim_in, dim_out)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = self.block1(x, time_emb)
        skips.append(x)
        x = self.attn(self.block2(x, time_emb))
        skips.append(x)
        return self.resample(x)


class UpLevel(nn.Module):
    """Two ResNet blocks, each on the concatenation with a popped skip, attention, resampling."""

    def __init__(self, dim_in: int, dim_out: int, full: bool, last: bool, c: UNetConfig) -> None:
        super().__init__()
        time_dim = c.dim * c.time_dim_mult
        self.block1 = ResnetBlock(dim_out + dim_in, dim_out, time_dim, c.resnet_groups)
        self.block2 = ResnetBlock(dim_out + dim_in, dim_out, time_dim, c.resnet_groups)
        self.attn = _attention(dim_out, full, c)
        self.resample = nn.Conv2d(dim_out, dim_in, 3, padding=1) if last else Upsample(dim_out, dim_in)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = self.block1(torch.cat((x, skips.pop()), dim=1), time_emb)
        x = self.block2(torch.cat((x, skips.pop()), dim=1), time_emb)
        return self.resample(self.attn(x))


def resolution_rule(config: UNetConfig) -> tuple[int, int]:
    """(multiple, minimum) of the input resolution: every level but the last halves it. The one
    rule: the family's resolution check and the forward's input check both read it."""
    factor = 2 ** (len(config.dim_mults) - 1)
    return factor, factor


class UNet(nn.Module):
    """DDPM U-Net: ResNet blocks with FiLM time conditioning, linear attention on the high
    resolution levels and full attention at the bottom."""

    capture_safe = True
    """A forward reads nothing on the host (CUDA-graph capturable)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = c = config
        time_dim = c.dim * c.time_dim_mult
        widths = [c.dim] + [c.dim * m for m in c.dim_mults]
        pairs = list(zip(widths[:-1], widths[1:], strict=True))
        levels = len(pairs)
        self.multiple, self.min_size = resolution_rule(c)

        self.init_conv = nn.Conv2d(c.in_channels, c.dim, 7, padding=3)
        self.time_embed = SinusoidalTimeEmbedding(c.dim)
        self.time_mlp = nn.Sequential(
            nn.Linear(c.dim, time_dim),
            nn.GELU(),
            nn.Linear(time_dim, time_dim),
        )
        self.downs = nn.ModuleList(
            DownLevel(d_in, d_out, c.full_attention[i], i == levels - 1, c)
            for i, (d_in, d_out) in enumerate(pairs)
        )
        mid = widths[-1]
        self.mid_block1 = ResnetBlock(mid, mid, time_dim, c.resnet_groups)
        self.mid_attn = Residual(FullAttention(mid, c.attn_heads, c.attn_dim_head))
        self.mid_block2 = ResnetBlock(mid, mid, time_dim, c.resnet_groups)
        full_up = list(reversed(c.full_attention))
        self.ups = nn.ModuleList(
            UpLevel(d_in, d_out, full_up[i], i == levels - 1, c)
            for i, (d_in, d_out) in enumerate(reversed(pairs))
        )
        self.final_block = ResnetBlock(c.dim * 2, c.dim, time_dim, c.resnet_groups)
        self.final_conv = nn.Conv2d(c.dim, c.out_channels, 1)

    def breakdown_blocks(self) -> list[tuple[str, nn.Module]]:
        """Blocks for the profiler, in execution order (several modules may share a name)."""
        blocks: list[tuple[str, nn.Module]] = [("input conv", self.init_conv),
                                               ("time embedding", self.time_embed),
                                               ("time embedding", self.time_mlp)]
        for prefix, levels in (("down", self.downs), ("up", self.ups)):
            for i, level in enumerate(levels):
                if prefix == "up" and i == 0:
                    blocks += [("mid resnets", self.mid_block1), ("mid attention", self.mid_attn),
                               ("mid resnets", self.mid_block2)]
                blocks += [(f"{prefix}{i + 1} resnets", level.block1),
                           (f"{prefix}{i + 1} resnets", level.block2),
                           (f"{prefix}{i + 1} attention", level.attn),
                           (f"{prefix}{i + 1} resample", level.resample)]
        return blocks + [("output", self.final_block), ("output", self.final_conv)]

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        c = self.config
        check_denoiser_inputs(
            "unet", x, t, in_channels=c.in_channels, multiple=self.multiple,
            num_timesteps=c.num_timesteps, min_size=self.min_size,
        )
        x = self.init_conv(x)
        first = x
        time_emb = self.time_mlp(self.time_embed(t).to(x.dtype))
        skips: list[torch.Tensor] = []
        for level in self.downs:
            x = level(x, time_emb, skips)
        x = self.mid_block1(x, time_emb)
        x = self.mid_attn(x)
        x = self.mid_block2(x, time_emb)
        for level in self.ups:
            x = level(x, time_emb, skips)
        x = self.final_block(torch.cat((x, first), dim=1), time_emb)
        return self.final_conv(x)
