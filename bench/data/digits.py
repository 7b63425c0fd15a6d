"""The embedded offline default: scikit-learn's 1,797 8x8 handwritten digits (10 labels).

Shipped inside scikit-learn, so it needs no download and no data path; pixel values are 0..16.
The bundled `digits.csv.gz` (what `sklearn.datasets.load_digits` reads) is parsed directly
because importing `sklearn.datasets` costs seconds of scipy imports on a small CPU; if the file
is not where this scikit-learn keeps it, `load_digits` is used instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from bench.data.base import ArrayImageDataset

LAYOUT = "nothing (bundled with scikit-learn)"


def _bundled_csv() -> Path | None:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float32 in 0..16, labels (1797,) int64)."""
    path = _bundled_csv()
    if path is not None:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
        if table.shape == (1797, 65):
            return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float32), np.asarray(bunch.target, dtype=np.int64)


def load_digits_dataset(*, resolution: int, channels: int) -> ArrayImageDataset:
    images, labels = digits_arrays()
    return ArrayImageDataset(
        images, labels=labels, scale=16.0, num_classes=10, name="digits",
        resolution=resolution, channels=channels, source="sklearn.datasets.load_digits",
    )
