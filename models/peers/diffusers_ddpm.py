"""Ho et al.'s DDPM CIFAR-10 network as the `diffusers` library builds it: the denoiser people use
instead of writing their own, put beside the paper's networks through the factory path.

    [models.ddpm-cifar10]
    factory = "models.peers.diffusers_ddpm:ddpm_cifar10"

The configuration is the one behind google/ddpm-cifar10-32 (its config.json): 128 base channels,
multipliers (1, 2, 2, 2), two ResNet blocks per level, self-attention at 16x16 (the second level),
dropout 0.1, GroupNorm(32, eps 1e-6), SiLU, positional time embedding with freq_shift 1. It has
35,746,307 parameters, that checkpoint's published count (a test checks it). No weights are loaded
(nothing is downloaded): efficiency does not depend on them; training starts from scratch.
"""

from __future__ import annotations

import torch
from torch import nn


class DiffusersDenoiser(nn.Module):
    """`model(x, t) -> tensor`: unwraps the `UNet2DOutput` of a diffusers UNet2DModel."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, t).sample

    def breakdown_blocks(self) -> list[tuple[str, nn.Module]]:
        """The UNet's stages, for `python -m bench breakdown`."""
        net = self.net
        blocks: list[tuple[str, nn.Module]] = [("time embedding", net.time_proj),
                                               ("time embedding", net.time_embedding),
                                               ("input conv", net.conv_in)]
        blocks += [(f"down{i + 1} resnets", block) for i, block in enumerate(net.down_blocks)]
        blocks.append(("mid resnets", net.mid_block))
        blocks += [(f"up{i + 1} resnets", block) for i, block in enumerate(net.up_blocks)]
        return blocks + [("output", net.conv_norm_out), ("output", net.conv_out)]


def ddpm_cifar10(sample_size: int = 32, channels: int = 3, dropout: float = 0.1) -> nn.Module:
    """The google/ddpm-cifar10-32 network (untrained), as a suite denoiser."""
    from diffusers import UNet2DModel

    net = UNet2DModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels, layers_per_block=2,
        block_out_channels=(128, 256, 256, 256),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        dropout=dropout, act_fn="silu", norm_num_groups=32, norm_eps=1e-6, freq_shift=1,
        flip_sin_to_cos=False, downsample_padding=0, time_embedding_type="positional",
        center_input_sample=False, mid_block_scale_factor=1,
    )
    return DiffusersDenoiser(net)
