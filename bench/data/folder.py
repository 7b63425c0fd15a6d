"""Any folder of image files, searched recursively, in sorted path order.

Files decode one at a time when read, so folders of any size load instantly.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.data.base import FileImageDataset
from bench.errors import UsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
LAYOUT = "a folder of image files (" + "/".join(s[1:] for s in IMAGE_SUFFIXES) + ", searched recursively)"


def list_images(folder: Path, *, recursive: bool = True,
                suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files under `folder`, sorted by path; os.scandir keeps 200k-file folders fast."""
    found: list[Path] = []
    pending = [folder]
    while pending:
        current = pending.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=True):
                    if recursive and not entry.name.startswith("."):
                        pending.append(Path(entry.path))
                elif entry.name.lower().endswith(suffixes) and not entry.name.startswith("."):
                    found.append(Path(entry.path))
    return sorted(found)


def load_folder_dataset(root: Path, *, resolution: int, channels: int,
                        name: str = "folder", layout: str = LAYOUT) -> FileImageDataset:
    if not root.is_dir():
        raise UsageError(f"{name}: {root} is not a folder; expected {layout}")
    files = list_images(root)
    if not files:
        raise UsageError(f"{name}: no image files in {root}; expected {layout}")
    return FileImageDataset(files, name=name, resolution=resolution, channels=channels,
                            source=str(root))
