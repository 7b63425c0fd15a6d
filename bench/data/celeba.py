"""CelebA, aligned-and-cropped release: `img_align_celeba/*.jpg` (178x218 faces).

The data path may be the folder holding `img_align_celeba/` or that folder itself (Kaggle's
doubly nested `img_align_celeba/img_align_celeba/` also works). Each image is centre-cropped to
178x178 and resized, the usual CelebA-64 preprocessing.
"""

from __future__ import annotations

from pathlib import Path

from bench.data.base import FileImageDataset
from bench.data.folder import list_images
from bench.errors import UsageError

LAYOUT = "the aligned CelebA JPEGs as img_align_celeba/*.jpg (path to it or to its parent)"
_SUFFIXES = (".jpg", ".jpeg", ".png")


def load_celeba_dataset(root: Path, *, resolution: int, channels: int) -> FileImageDataset:
    if not root.is_dir():
        raise UsageError(f"celeba: {root} is not a folder; expected {LAYOUT}")
    for folder in (root / "img_align_celeba" / "img_align_celeba", root / "img_align_celeba", root):
        if folder.is_dir():
            files = list_images(folder, recursive=False, suffixes=_SUFFIXES)
            if files:
                return FileImageDataset(files, name="celeba", resolution=resolution,
                                        channels=channels, source=str(folder))
    raise UsageError(f"celeba: no .jpg images in {root}; expected {LAYOUT}")
