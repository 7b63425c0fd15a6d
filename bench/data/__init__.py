"""Datasets for the quality harness: images as float (C, R, R) in [-1, 1] plus int labels.

Names (`DATASETS`): "digits" (offline default, scikit-learn), "mnist" (IDX files), "celeba"
(img_align_celeba JPEGs), "lsun-church" (LMDB export, image folder or uint8 .npy), "folder".
Each real dataset takes its path from `root`, or when `root` is None from the environment:
`$BENCH_DATA_DIR/<name>` (e.g. BENCH_DATA_DIR=/data gives /data/mnist, /data/celeba,
/data/lsun-church). A missing or malformed path is a one-line `bench.errors.UsageError` naming
the expected layout.
"""

from bench.data.base import ImageDataset
from bench.data.registry import DATASETS, DatasetInfo, dataset_info, load_dataset
from bench.data.roots import ENV_DATA_DIR
from bench.data.uint8 import Uint8RGBView, to_uint8_rgb

__all__ = [
    "DATASETS",
    "ENV_DATA_DIR",
    "DatasetInfo",
    "ImageDataset",
    "Uint8RGBView",
    "dataset_info",
    "load_dataset",
    "to_uint8_rgb",
]
