"""LSUN Church (outdoor) in any of three forms, detected from the data path:

- an LMDB export (the official `church_outdoor_train_lmdb/` with `data.mdb`: key -> encoded
  image bytes, WebP in the official release). The path may be that folder, its `data.mdb`, or a
  folder holding `church_outdoor_train_lmdb/`. Opened read-only with lock=False; only the key
  list is read up front and images decode when items are read;
- a uint8 `.npy` array of shape (N, H, W, 3), memory-mapped;
- a folder of image files (searched recursively).

Non-square images are centre-cropped to a square before resizing.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from bench.data.base import ArrayImageDataset, ImageDataset, one_line
from bench.data.folder import IMAGE_SUFFIXES, load_folder_dataset
from bench.data.transforms import pil_to_unit
from bench.errors import UsageError

LAYOUT = ("an LMDB export (folder with data.mdb, e.g. church_outdoor_train_lmdb/), a folder of "
          "images, or a uint8 .npy array of shape (N, H, W, 3)")
_LMDB_NAMES = ("church_outdoor_train_lmdb", "church_outdoor_val_lmdb")


class LmdbImageDataset(ImageDataset):
    """Encoded images stored as LMDB values; the environment opens lazily once per process."""

    def __init__(self, path: Path, keys: list[bytes], **kwargs) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.keys = keys

    def __len__(self) -> int:
        return len(self.keys)

    def load_unit(self, index: int) -> torch.Tensor:
        key = self.keys[index]
        with open_lmdb(self.path).begin(write=False) as txn:
            value = txn.get(key)
        if value is None:
            raise UsageError(f"{self.name}: key {key!r} vanished from {self.path}")
        try:
            with Image.open(io.BytesIO(value)) as image:
                return pil_to_unit(image)
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise UsageError(
                f"{self.name}: value of key {key!r} in {self.path} is not an encoded image: "
                f"{one_line(error)}") from None


# py-lmdb refuses to open one environment twice in a process, and a handle must not be used
# across fork: keep one read-only handle per (process, path).
_ENVIRONMENTS: dict[tuple[int, str], object] = {}


def open_lmdb(path: Path):
    """The read-only LMDB environment at `path`, opened once per process."""
    cache_key = (os.getpid(), str(path.resolve()))
    env = _ENVIRONMENTS.get(cache_key)
    if env is None:
        env = _ENVIRONMENTS[cache_key] = _open_lmdb(path)
    return env


def _open_lmdb(path: Path):
    try:
        import lmdb
    except ImportError:  # pragma: no cover - lmdb is a declared dependency
        raise UsageError("lsun-church: reading an LMDB export needs the lmdb package "
                         "(uv sync)") from None
    try:
        return lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False,
                         max_readers=64, subdir=path.is_dir())
    except lmdb.Error as error:
        raise UsageError(f"lsun-church: cannot open LMDB {path}: {one_line(error)}; "
                         f"expected {LAYOUT}") from None


def _lmdb_keys(path: Path) -> list[bytes]:
    with open_lmdb(path).begin(write=False) as txn:
        return [bytes(key) for key in txn.cursor().iternext(keys=True, values=False)]


def _find_lmdb(root: Path) -> Path | None:
    if root.is_file() and root.name == "data.mdb":
        return root.parent
    if root.is_dir():
        if (root / "data.mdb").is_file():
            return root
        for name in _LMDB_NAMES:
            if (root / name / "data.mdb").is_file():
                return root / name
    return None


def _load_npy(path: Path, *, resolution: int, channels: int) -> ArrayImageDataset:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise UsageError(f"lsun-church: cannot read {path} as a .npy array: "
                         f"{one_line(error)}") from None
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
        raise UsageError(
            f"lsun-church: {path} holds a {array.dtype} array of shape {tuple(array.shape)}; "
            "expected uint8 of shape (N, H, W, 3) with N >= 1")
    return ArrayImageDataset(array, name="lsun-church", resolution=resolution, channels=channels,
                             source=str(path))


def load_lsun_dataset(root: Path, *, resolution: int, channels: int) -> ImageDataset:
    if root.is_file() and root.suffix.lower() == ".npy":
        return _load_npy(root, resolution=resolution, channels=channels)
    lmdb_path = _find_lmdb(root)
    if lmdb_path is not None:
        keys = _lmdb_keys(lmdb_path)
        if not keys:
            raise UsageError(f"lsun-church: LMDB {lmdb_path} has no entries; expected {LAYOUT}")
        return LmdbImageDataset(lmdb_path, keys, name="lsun-church", resolution=resolution,
                                channels=channels, source=str(lmdb_path))
    if root.is_file():
        kind = "an image" if root.suffix.lower() in IMAGE_SUFFIXES else "a file"
        raise UsageError(f"lsun-church: {root} is {kind}, not a dataset; expected {LAYOUT}")
    return load_folder_dataset(root, resolution=resolution, channels=channels,
                               name="lsun-church", layout=LAYOUT)
