"""A fixed reference workload timed beside the models, so a run records how fast the machine was.

On a shared machine the throughput itself drifts: in two back-to-back runs on the 2-core VM this
suite was built on, even the fastest U-Net call differed by 50 %. No statistic of the models' own
times can separate that from a change in the models. Timing a workload that never changes in the
same rounds can: a model's time divided by the kernel's time of the same round ("calibrated
latency") is a property of the model on this kind of machine, and stayed within about 3 % across
four runs whose absolute medians spread 22 %.

The kernel is what a denoiser spends its time on: six 3x3 convolutions 64->64 at 64x64 and six
512x512 matrix products (1.71 GMACs), on tensors made once, independent of the input.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.results import CALIBRATION_MODEL

__all__ = ["CALIBRATION_MODEL", "CalibrationKernel"]


class CalibrationKernel(nn.Module):
    """Fixed work with a denoiser's call signature `kernel(x, t)`; the inputs are ignored."""

    convolutions = 6
    products = 6

    def __init__(self, channels: int = 64, size: int = 64, matrix: int = 512) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(channels, channels, 3, 3, generator=generator) * 0.05)
        self.register_buffer("image", torch.randn(1, channels, size, size, generator=generator))
        self.register_buffer("square", torch.randn(matrix, matrix, generator=generator) / matrix**0.5)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.image
        for _ in range(self.convolutions):
            h = torch.nn.functional.conv2d(h, self.weight, padding=1)
        a = self.square
        for _ in range(self.products):
            a = a @ self.square
        return h.mean() + a.mean()

    def macs(self) -> int:
        """Multiply-accumulates of one call (the kernel's size, for the record)."""
        c, _, k, _ = self.weight.shape
        _, _, h, w = self.image.shape
        n = self.square.shape[0]
        return self.convolutions * c * c * k * k * h * w + self.products * n**3
