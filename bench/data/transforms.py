"""Pixel preprocessing shared by every dataset format.

Every loader hands over one image as float (C, H, W) in [0, 1]; `prepare` turns it into the
benchmark's convention: a square centre crop, the requested channel count, bilinear resize with
antialiasing to (R, R), values in [-1, 1]. Doing this per item keeps large sets (MNIST at 64x64,
200k CelebA files) out of memory.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# ITU-R 601-2 luma weights: the same ones PIL uses for mode "L".
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)


def pil_to_unit(image: Image.Image) -> torch.Tensor:
    """Decode a PIL image to float (C, H, W) in [0, 1], C = 1 for grey images and 3 otherwise."""
    grey = image.mode in ("1", "L", "I", "I;16", "F")
    array = np.asarray(image.convert("L" if grey else "RGB"), dtype=np.uint8)
    return uint8_to_unit(array)


def uint8_to_unit(array: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) uint8 array to float (C, H, W) in [0, 1]."""
    tensor = torch.from_numpy(np.array(array, dtype=np.float32, copy=True))
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(-1)
    return tensor.permute(2, 0, 1).div_(255.0)


def center_crop_square(image: torch.Tensor) -> torch.Tensor:
    """Largest centred square of a (C, H, W) image (e.g. CelebA's 178x218 -> 178x178)."""
    height, width = image.shape[-2:]
    side = min(height, width)
    top = (height - side) // 2
    left = (width - side) // 2
    return image[..., top : top + side, left : left + side]


def set_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert a (C, H, W) image to 1 channel (luma) or 3 channels (grey repeated)."""
    have = image.shape[0]
    if have == channels:
        return image
    if have == 3 and channels == 1:
        return (image * _LUMA.to(image.dtype)).sum(dim=0, keepdim=True)
    if have == 1 and channels == 3:
        return image.expand(3, -1, -1)
    raise ValueError(f"cannot convert a {have}-channel image to {channels} channels")


def resize(image: torch.Tensor, resolution: int) -> torch.Tensor:
    """Bilinear resize of a (C, H, W) image to (C, R, R); antialiased when shrinking."""
    if tuple(image.shape[-2:]) == (resolution, resolution):
        return image
    return F.interpolate(
        image.unsqueeze(0), size=(resolution, resolution), mode="bilinear",
        align_corners=False, antialias=True,
    ).squeeze(0)


def prepare(image: torch.Tensor, resolution: int, channels: int) -> torch.Tensor:
    """[0, 1] (C, H, W) image -> float32 (channels, R, R) in [-1, 1]."""
    image = center_crop_square(image.float())
    if channels == 1:
        image = set_channels(image, 1)
    image = resize(image, resolution)
    image = set_channels(image, channels)
    return (image * 2.0 - 1.0).clamp_(-1.0, 1.0).contiguous()
