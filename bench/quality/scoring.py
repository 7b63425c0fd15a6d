"""FID and KID of generated images against real ones, computed by torch-fidelity.

Both sides are handed to `torch_fidelity.calculate_metrics` as Datasets of uint8 (3, H, W)
tensors; the Fréchet distance and the kernel MMD are torch-fidelity's. Real-data features can be
cached (torch-fidelity's own cache, under `<cache_dir>/fidelity`) when the caller names the real
set with `cache_real_key`; the file name then also carries the extractor, its weights, the number
of real images and the resolution, so a stale entry is never reused for different inputs.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

from bench.data.uint8 import Uint8RGBView, to_uint8_rgb
from bench.errors import UsageError
from bench.quality.features import (
    DEFAULT_CACHE_DIR,
    EXTRACTORS,
    default_feature_layer,
    resolve_weights,
    score_label,
)

KID_SUBSET_SIZE_MAX = 1000
KID_SUBSETS = 100
FEATURE_BATCH = 250


def extract_features(images: torch.Tensor | Dataset, *, extractor: str,
                     weights_path: str | Path | None = None,
                     cache_dir: str | Path = DEFAULT_CACHE_DIR, device: str = "cpu",
                     data_root: str | Path | None = None, feature_layer: str | None = None,
                     batch_size: int = FEATURE_BATCH) -> np.ndarray:
    """(N, D) float64 features of images (a tensor like `score`'s `generated`, or a Dataset of
    images / (image, label) pairs) from torch-fidelity's own feature extractor `extractor`,
    at its standard layer unless `feature_layer` names another. The statistics (FD, FD-infinity,
    KID) are then computed from these by `bench.quality.statistics`."""
    if extractor not in EXTRACTORS:
        raise UsageError(f"unknown feature extractor {extractor!r}; choose one of "
                         f"{', '.join(EXTRACTORS)}")
    view = Uint8RGBView(images) if not torch.is_tensor(images) else None
    fake = _generated_uint8(images) if view is None else None
    count = len(fake) if view is None else len(view)
    weights = resolve_weights(extractor, weights_path, cache_dir=cache_dir, data_root=data_root)
    layer = _checked_feature_layer(extractor, feature_layer)
    cuda = str(device).startswith("cuda")
    network = create_feature_extractor(extractor, [layer], cuda=cuda, verbose=False,
                                       feature_extractor_weights_path=str(weights))
    parts = []
    with torch.no_grad():
        for start in range(0, count, batch_size):
            stop = min(count, start + batch_size)
            batch = (fake[start:stop] if view is None
                     else torch.stack([view[i] for i in range(start, stop)]))
            if cuda:
                batch = batch.cuda()
            parts.append(network(batch)[0].double().cpu())
    return torch.cat(parts).numpy()


def score(generated: torch.Tensor, real: Dataset | torch.Tensor, *, extractor: str,
          weights_path: str | Path | None = None, kid_subset_size: int | None = None,
          kid_subsets: int = KID_SUBSETS, seed: int = 0, cache_real_key: str | None = None,
          cache_dir: str | Path = DEFAULT_CACHE_DIR, device: str = "cpu", batch_size: int = 64,
          data_root: str | Path | None = None, feature_layer: str | None = None,
          verbose: bool = False) -> dict:
    """FID and KID of `generated` against `real` in the features of `extractor`.

    generated: (N, C, H, W), float in [-1, 1] or uint8, C = 1 or 3.
    real: an `ImageDataset` (or any Dataset of images / (image, label) pairs) or a tensor like
      `generated`, at the same H x W.
    extractor: "inception-v3-compat" (weights from `weights_path` / $BENCH_INCEPTION_WEIGHTS) or
      a classifier extractor such as "digits-classifier" (weights_path None: the cached default
      classifier, trained on first use; `data_root` locates its dataset if it is not digits).
    kid_subset_size: None picks min(1000, N, n_real); the value used is returned.
    feature_layer: None for the standard layer (Inception "2048", classifier "penultimate");
      another layer changes the labels, e.g. "FID (inception-v3-compat 64 features)".

    Returns a dict: fid, kid_mean, kid_std, fid_label, kid_label, extractor, feature_layer,
    weights_path, n_generated, n_real, resolution, kid_subset_size, kid_subsets, seed,
    real_cache_name (None when real features were not cached).
    """
    if extractor not in EXTRACTORS:
        raise UsageError(f"unknown feature extractor {extractor!r}; choose one of "
                         f"{', '.join(EXTRACTORS)}")
    fake = _generated_uint8(generated)
    real_view = Uint8RGBView(real)
    resolution = _check_same_resolution(fake, real_view)
    subset = _kid_subset_size(kid_subset_size, len(fake), len(real_view))
    weights = resolve_weights(extractor, weights_path, cache_dir=cache_dir, data_root=data_root)
    cache_name = None
    if cache_real_key:
        cache_name = _cache_name(cache_real_key, extractor, weights, len(real_view), resolution)
    feature_layer = _checked_feature_layer(extractor, feature_layer)
    metrics = torch_fidelity.calculate_metrics(
        input1=_TensorImages(fake),
        input2=real_view,
        fid=True,
        kid=True,
        feature_extractor=extractor,
        feature_layer_fid=feature_layer,
        feature_layer_kid=feature_layer,
        feature_extractor_weights_path=str(weights),
        kid_subset_size=subset,
        kid_subsets=kid_subsets,
        rng_seed=seed,
        batch_size=batch_size,
        cuda=str(device).startswith("cuda"),
        save_cpu_ram=True,  # no DataLoader worker processes: lazy datasets stay in-process
        cache=cache_name is not None,
        cache_root=str(Path(cache_dir) / "fidelity"),
        input2_cache_name=cache_name,
        verbose=verbose,
    )
    return {
        "fid": float(metrics[torch_fidelity.KEY_METRIC_FID]),
        "kid_mean": float(metrics[torch_fidelity.KEY_METRIC_KID_MEAN]),
        "kid_std": float(metrics[torch_fidelity.KEY_METRIC_KID_STD]),
        "fid_label": score_label("fid", extractor, feature_layer),
        "kid_label": score_label("kid", extractor, feature_layer),
        "extractor": extractor,
        "feature_layer": feature_layer,
        "weights_path": str(weights),
        "n_generated": len(fake),
        "n_real": len(real_view),
        "resolution": resolution[0],
        "kid_subset_size": subset,
        "kid_subsets": kid_subsets,
        "seed": seed,
        "real_cache_name": cache_name,
    }


def _check_same_resolution(fake: torch.Tensor, real_view: Uint8RGBView) -> tuple[int, int]:
    """The (H, W) both sides share; UsageError when they differ or the real set is too small."""
    if len(real_view) < 2:
        raise UsageError(f"FID/KID need at least 2 real images, got {len(real_view)}")
    resolution = tuple(fake.shape[-2:])
    real_resolution = tuple(real_view[0].shape[-2:])
    if real_resolution != resolution:
        raise UsageError(
            f"generated images are {resolution[0]}x{resolution[1]} but real ones are "
            f"{real_resolution[0]}x{real_resolution[1]}; load the real set at the generated "
            "resolution")
    return resolution


def _checked_feature_layer(extractor: str, feature_layer: str | None) -> str:
    """The extractor's standard layer when none is named; UsageError for a layer it lacks."""
    feature_layer = feature_layer or default_feature_layer(extractor)
    provided = FEATURE_EXTRACTORS_REGISTRY[extractor].get_provided_features_list()
    if feature_layer not in provided:
        raise UsageError(f"{extractor} has no feature layer {feature_layer!r}; choose one of "
                         f"{', '.join(provided)}")
    return feature_layer


class _TensorImages(Dataset):
    """A uint8 (N, 3, H, W) tensor as a Dataset of (3, H, W) items, what torch-fidelity reads."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def _generated_uint8(generated: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(generated) or generated.dim() != 4 or generated.shape[1] not in (1, 3):
        shape = tuple(generated.shape) if torch.is_tensor(generated) else type(generated).__name__
        raise UsageError(f"generated images must be a tensor (N, C, H, W) with C = 1 or 3, "
                         f"got {shape}")
    if len(generated) < 2:
        raise UsageError(f"FID/KID need at least 2 generated images, got {len(generated)}")
    if generated.dtype != torch.uint8:
        if not generated.is_floating_point():
            raise UsageError(f"generated images must be float in [-1, 1] or uint8, "
                             f"got {generated.dtype}")
        bad = int((~torch.isfinite(generated)).sum())
        if bad:
            raise UsageError(f"{bad} generated pixel values are NaN or infinite; the sampler "
                             "diverged, so there is nothing meaningful to score")
    return to_uint8_rgb(generated.detach().cpu())


def _kid_subset_size(requested: int | None, n_generated: int, n_real: int) -> int:
    largest = min(n_generated, n_real)
    if requested is None:
        return min(KID_SUBSET_SIZE_MAX, largest)
    if not 2 <= requested <= largest:
        raise UsageError(f"KID subset size must be between 2 and min(n_generated, n_real) = "
                         f"{largest}, got {requested}")
    return int(requested)


def _cache_name(key: str, extractor: str, weights: Path, n_real: int,
                resolution: tuple[int, int]) -> str:
    """File-name-safe cache entry for the real set; torch-fidelity appends extractor + layer."""
    size = weights.stat().st_size
    if size <= 64 * 2**20:  # small classifier files: their content identifies the model
        tag = hashlib.sha1(weights.read_bytes()).hexdigest()[:12]
    else:  # InceptionV3 weights: fixed content, named by its own hash
        tag = f"{weights.stem}-{size}"
    text = f"{key}-{extractor}-{tag}-n{n_real}-{resolution[0]}x{resolution[1]}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


__all__ = ["FEATURE_BATCH", "KID_SUBSET_SIZE_MAX", "KID_SUBSETS", "extract_features", "score"]
