"""MNIST from the standard IDX files (optionally gzipped), parsed with numpy.

Expected in the data path (or its `raw/` or `MNIST/raw/` sub-folder, torchvision's layout):
`train-images-idx3-ubyte[.gz]` and, for labels, `train-labels-idx1-ubyte[.gz]`. Without a
labels file the images load with label -1.

IDX format: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then
one big-endian uint32 per dimension, then the data in C order.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from bench.data.base import ArrayImageDataset, one_line
from bench.errors import UsageError

IMAGES_FILE = "train-images-idx3-ubyte"
LABELS_FILE = "train-labels-idx1-ubyte"
LAYOUT = (f"the standard IDX files {IMAGES_FILE}[.gz] and {LABELS_FILE}[.gz] "
          "from the MNIST distribution (also found under raw/ or MNIST/raw/)")
_UNSIGNED_BYTE = 0x08
_SEARCH = (".", "raw", "MNIST/raw")


def find_idx(root: Path, stem: str) -> Path | None:
    """The first of stem, stem.gz in root and its usual sub-folders, or None."""
    if root.is_file():
        root = root.parent
    for folder in _SEARCH:
        for suffix in ("", ".gz"):
            candidate = root / folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file of `ndim` dimensions; UsageError if it is not one."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise UsageError(f"mnist: cannot read {path}: {one_line(error)}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UNSIGNED_BYTE or raw[3] != ndim:
        magic = raw[:4].hex() or "empty file"
        raise UsageError(
            f"mnist: {path} is not an unsigned-byte IDX file with {ndim} dimensions (magic "
            f"{magic}, expected 000008{ndim:02x}); expected {LAYOUT}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UsageError(f"mnist: {path} ends inside its IDX header; expected {LAYOUT}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims)) if dims else 0
    if len(raw) - header != expected:
        raise UsageError(
            f"mnist: {path} holds {len(raw) - header} data bytes but its header {dims} needs "
            f"{expected}; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist_dataset(root: Path, *, resolution: int, channels: int) -> ArrayImageDataset:
    images_path = find_idx(root, IMAGES_FILE)
    if images_path is None:
        raise UsageError(f"mnist: no {IMAGES_FILE}[.gz] in {root}; expected {LAYOUT}")
    images = read_idx(images_path, ndim=3)
    labels = None
    labels_path = find_idx(images_path.parent, LABELS_FILE)
    if labels_path is not None:
        labels = read_idx(labels_path, ndim=1).astype(np.int64)
        if len(labels) != len(images):
            raise UsageError(
                f"mnist: {labels_path} has {len(labels)} labels for {len(images)} images in "
                f"{images_path}; the two files must come from the same split")
    return ArrayImageDataset(
        images, labels=labels, num_classes=10, name="mnist", resolution=resolution,
        channels=channels, source=str(images_path),
    )
