"""Dataset loaders on tiny files written here: shapes, ranges, labels and one-line errors."""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import (
    DATASETS,
    ENV_DATA_DIR,
    Uint8RGBView,
    dataset_info,
    load_dataset,
    to_uint8_rgb,
)
from bench.errors import UsageError


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(folder: Path, count: int = 12, gz: bool = False) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = (np.arange(count) % 10).astype(np.uint8)
    for stem, array in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        data = _idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return images, labels


def _rgb(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def _encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _check(dataset, n: int, channels: int, resolution: int) -> None:
    assert len(dataset) == n
    for index in (0, n - 1):
        image, label = dataset[index]
        assert image.shape == (channels, resolution, resolution)
        assert image.dtype == torch.float32
        assert image.min() >= -1.0 and image.max() <= 1.0
        assert isinstance(label, int)


def _one_line_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_registry_lists_every_dataset_with_defaults():
    assert DATASETS == ("digits", "mnist", "mnist5k", "mnist5k-heldout", "celeba", "lsun-church",
                        "folder")
    assert dataset_info("digits").channels == 1 and not dataset_info("digits").needs_root
    assert dataset_info("celeba").channels == 3
    with pytest.raises(UsageError) as excinfo:
        dataset_info("cifar")
    _one_line_error(excinfo, "cifar", "digits")


def test_digits_match_sklearn_load_digits():
    from sklearn.datasets import load_digits

    from bench.data.digits import digits_arrays

    images, labels = digits_arrays()
    reference = load_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)


def test_digits_has_labels_range_and_channel_repeat():
    grey = load_dataset("digits", root=None, resolution=16)
    _check(grey, 1797, 1, 16)
    assert grey.num_classes == 10
    images, labels = grey.stack(limit=50)
    assert labels[:10].tolist() == list(range(10))
    assert images.min() == -1.0 and images.max() > 0.9  # 0 -> -1, 16 -> 1 survives resizing
    colour = load_dataset("digits", root=None, resolution=16, channels=3, limit=5)
    image, _ = colour[0]
    assert len(colour) == 5 and image.shape == (3, 16, 16)
    assert torch.equal(image[0], image[2]) and torch.allclose(image[0], grey[0][0][0])


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_plain_and_gzip(tmp_path, gz):
    images, labels = _write_mnist(tmp_path / "mnist", gz=gz)
    dataset = load_dataset("mnist", root=tmp_path / "mnist", resolution=28)
    _check(dataset, 12, 1, 28)
    image, label = dataset[3]
    assert label == int(labels[3])
    expected = torch.from_numpy(images[3]).float() / 127.5 - 1.0
    assert torch.allclose(image[0], expected, atol=1e-5)  # same size: no resampling
    assert len(load_dataset("mnist", root=tmp_path / "mnist", resolution=8, limit=4)) == 4


def test_mnist_found_through_env_var_and_raw_subfolder(tmp_path, monkeypatch):
    _write_mnist(tmp_path / "mnist" / "raw", gz=True)
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path))
    _check(load_dataset("mnist", root=None, resolution=32, channels=3), 12, 3, 32)


def test_mnist_bad_magic_and_truncated_file(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 20)
    with pytest.raises(UsageError) as excinfo:
        load_dataset("mnist", root=folder, resolution=28)
    _one_line_error(excinfo, "train-images-idx3-ubyte", "magic")
    good = _idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))
    (folder / "train-images-idx3-ubyte").write_bytes(good[:-10])
    with pytest.raises(UsageError) as excinfo:
        load_dataset("mnist", root=folder, resolution=28)
    _one_line_error(excinfo, "truncated")


def test_mnist_missing_files_and_missing_root(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError) as excinfo:
        load_dataset("mnist", root=tmp_path / "empty", resolution=28)
    _one_line_error(excinfo, "no train-images-idx3-ubyte[.gz] in", "IDX")
    with pytest.raises(UsageError) as excinfo:
        load_dataset("mnist", root=tmp_path / "nowhere", resolution=28)
    _one_line_error(excinfo, "does not exist", "IDX")
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    with pytest.raises(UsageError) as excinfo:
        load_dataset("celeba", root=None, resolution=64)
    _one_line_error(excinfo, ENV_DATA_DIR, "img_align_celeba")


def test_celeba_jpeg_folder_is_centre_cropped(tmp_path):
    folder = tmp_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    for index in range(3):
        _rgb(178, 218, index).save(folder / f"{index + 1:06d}.jpg", quality=90)
    for root in (tmp_path / "celeba", folder):
        dataset = load_dataset("celeba", root=root, resolution=64)
        _check(dataset, 3, 3, 64)
        assert dataset.files[0].name == "000001.jpg"
    # A white band at rows 20..39 is the crop's top edge only if 20 rows are cut at each end.
    image = np.zeros((218, 178, 3), dtype=np.uint8)
    image[20:40] = 255
    Image.fromarray(image).save(folder / "000004.jpg", quality=95)
    cropped = load_dataset("celeba", root=folder, resolution=178)[3][0]
    assert cropped[:, 0].mean() > 0.5 and cropped[:, 30].mean() < -0.5
    (tmp_path / "nojpg").mkdir()
    with pytest.raises(UsageError) as excinfo:
        load_dataset("celeba", root=tmp_path / "nojpg", resolution=64)
    _one_line_error(excinfo, "no .jpg images", "img_align_celeba")


def test_lsun_lmdb_of_encoded_pngs(tmp_path):
    import lmdb

    path = tmp_path / "church_outdoor_train_lmdb"
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for index in range(5):
            txn.put(f"key{index:03d}".encode(), _encoded(_rgb(40, 30, index)))
    env.close()
    for root in (path, tmp_path, path / "data.mdb"):
        dataset = load_dataset("lsun-church", root=root, resolution=16)
        _check(dataset, 5, 3, 16)
        assert dataset[0][1] == -1
    assert len(load_dataset("lsun-church", root=path, resolution=16, limit=2)) == 2


def test_lsun_npy_and_folder(tmp_path):
    array = np.random.default_rng(1).integers(0, 256, size=(6, 20, 20, 3), dtype=np.uint8)
    np.save(tmp_path / "church.npy", array)
    dataset = load_dataset("lsun-church", root=tmp_path / "church.npy", resolution=20)
    _check(dataset, 6, 3, 20)
    expected = torch.from_numpy(array[2]).permute(2, 0, 1).float() / 127.5 - 1.0
    assert torch.allclose(dataset[2][0], expected, atol=1e-5)
    folder = tmp_path / "pics"
    folder.mkdir()
    _rgb(32, 24, 0).save(folder / "a.png")
    _check(load_dataset("lsun-church", root=folder, resolution=8, channels=1), 1, 1, 8)


def test_lsun_wrong_npy_shape_and_empty_folder(tmp_path):
    np.save(tmp_path / "grey.npy", np.zeros((4, 8, 8), dtype=np.uint8))
    with pytest.raises(UsageError) as excinfo:
        load_dataset("lsun-church", root=tmp_path / "grey.npy", resolution=8)
    _one_line_error(excinfo, "(4, 8, 8)", "(N, H, W, 3)")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(UsageError) as excinfo:
        load_dataset("lsun-church", root=tmp_path / "junk.npy", resolution=8)
    _one_line_error(excinfo, "junk.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError) as excinfo:
        load_dataset("lsun-church", root=tmp_path / "empty", resolution=8)
    _one_line_error(excinfo, "no image files", "LMDB")


def test_folder_recursive_mixed_formats_and_grey(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    _rgb(16, 16, 0).save(tmp_path / "a.png")
    _rgb(16, 16, 1).save(tmp_path / "sub" / "b.JPG")
    _rgb(16, 16, 2).save(tmp_path / "sub" / "deeper" / "c.bmp")
    Image.fromarray(np.full((10, 10), 200, dtype=np.uint8)).save(tmp_path / "d.webp", lossless=True)
    (tmp_path / "notes.txt").write_text("not an image")
    dataset = load_dataset("folder", root=tmp_path, resolution=12)
    _check(dataset, 4, 3, 12)
    grey = dataset[1][0]  # sorted by path: a.png, d.webp, sub/b.JPG, sub/deeper/c.bmp
    assert torch.allclose(grey, torch.full_like(grey, 200 / 127.5 - 1.0), atol=1e-5)
    (tmp_path / "broken.png").write_bytes(b"garbage")
    with pytest.raises(UsageError) as excinfo:
        load_dataset("folder", root=tmp_path, resolution=12)[1]
    _one_line_error(excinfo, "broken.png", "cannot decode")


def test_bad_arguments_are_usage_errors(tmp_path):
    for kwargs in ({"resolution": 0}, {"resolution": 8, "channels": 2},
                   {"resolution": 8, "limit": 0}):
        with pytest.raises(UsageError):
            load_dataset("digits", root=None, **kwargs)


def test_uint8_rgb_helpers():
    floats = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 2, 2)
    out = to_uint8_rgb(floats)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 2, 2)
    assert out[0, 1].flatten().tolist() == [0, 128, 255, 255]
    assert torch.equal(to_uint8_rgb(out), out)
    view = Uint8RGBView(load_dataset("digits", root=None, resolution=8, limit=3))
    assert len(view) == 3 and view[0].shape == (3, 8, 8) and view[0].dtype == torch.uint8
    with pytest.raises(ValueError):
        to_uint8_rgb(torch.zeros(1, 2, 4, 4))
