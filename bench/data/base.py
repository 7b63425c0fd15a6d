"""The dataset type every loader returns, plus the two generic storage back-ends.

`ImageDataset[i]` is `(image, label)`: image float32 (C, R, R) in [-1, 1], label an int (-1 when
the format has no labels). Subclasses only say how to fetch item i as a [0, 1] image; the shared
`prepare` step does crop/channels/resize per item so nothing large is held in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from bench.data.transforms import pil_to_unit, prepare, uint8_to_unit
from bench.errors import UsageError


class ImageDataset(Dataset):
    """Images in [-1, 1] at a fixed square resolution and channel count, with integer labels."""

    def __init__(self, *, name: str, resolution: int, channels: int, source: str,
                 num_classes: int = 0) -> None:
        self.name = name
        self.resolution = resolution
        self.channels = channels
        self.source = source
        self.num_classes = num_classes

    @property
    def has_labels(self) -> bool:
        return self.num_classes > 0

    def __len__(self) -> int:
        raise NotImplementedError

    def load_unit(self, index: int) -> torch.Tensor:
        """Item `index` as float (C, H, W) in [0, 1], before crop/resize."""
        raise NotImplementedError

    def label(self, index: int) -> int:
        return -1

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} images")
        image = prepare(self.load_unit(index), self.resolution, self.channels)
        return image, self.label(index)

    def stack(self, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `limit` (default all) items as (images (N, C, R, R), labels (N,))."""
        count = len(self) if limit is None else min(limit, len(self))
        items = [self[i] for i in range(count)]
        images = torch.stack([image for image, _ in items]) if items else torch.empty(0)
        labels = torch.tensor([label for _, label in items], dtype=torch.long)
        return images, labels

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, n={len(self)}, "
                f"shape=({self.channels}, {self.resolution}, {self.resolution}), "
                f"source={self.source!r})")


class ArrayImageDataset(ImageDataset):
    """Images in a numpy array (N, H, W) or (N, H, W, C); may be a read-only memory map.

    `scale` is the value that maps to white (255 for uint8 files, 16 for sklearn digits).
    """

    def __init__(self, array: np.ndarray, *, labels: np.ndarray | None = None,
                 scale: float = 255.0, num_classes: int = 0, **kwargs) -> None:
        super().__init__(num_classes=num_classes if labels is not None else 0, **kwargs)
        self.array = array
        self.labels = labels
        self.scale = float(scale)

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def load_unit(self, index: int) -> torch.Tensor:
        item = np.asarray(self.array[index], dtype=np.float32)
        if self.scale != 255.0:
            item = item * (255.0 / self.scale)
        return uint8_to_unit(item)

    def label(self, index: int) -> int:
        return -1 if self.labels is None else int(self.labels[index])


class FileImageDataset(ImageDataset):
    """One encoded image file per item, decoded when the item is read."""

    def __init__(self, files: Sequence[Path], **kwargs) -> None:
        super().__init__(**kwargs)
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def load_unit(self, index: int) -> torch.Tensor:
        path = self.files[index]
        try:
            with Image.open(path) as image:
                return pil_to_unit(image)
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise UsageError(
                f"{self.name}: cannot decode image {path}: {one_line(error)}") from None


def one_line(error: object) -> str:
    """An exception's text squeezed onto one line (UsageError messages are single lines)."""
    return " ".join(str(error).split()) or type(error).__name__
