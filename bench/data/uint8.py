"""uint8 RGB views of images, the input format of torch-fidelity's feature extractors."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) or (C, H, W) images -> uint8 with 3 channels.

    Float input is read as [-1, 1] (clamped) and rounded to 0..255; uint8 input is kept. Grey
    (C = 1) is repeated to 3 channels.
    """
    if images.dim() not in (3, 4):
        raise ValueError(f"expected (N, C, H, W) or (C, H, W) images, got shape {tuple(images.shape)}")
    channels = images.shape[-3]
    if channels not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got {channels} (shape {tuple(images.shape)})")
    if images.dtype != torch.uint8:
        images = ((images.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    if channels == 1:
        images = images.expand(*images.shape[:-3], 3, *images.shape[-2:])
    return images.contiguous()


class Uint8RGBView(Dataset):
    """Any image source seen as uint8 (3, H, W) tensors, one per item.

    Wraps a tensor (N, C, H, W) or a Dataset whose items are images or (image, label, ...)
    tuples, such as an `ImageDataset`.
    """

    def __init__(self, source: torch.Tensor | Dataset) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self.source[index]
        if isinstance(item, (tuple, list)):
            item = item[0]
        return to_uint8_rgb(item)
