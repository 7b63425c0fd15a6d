"""Feature extractors and FID/KID scoring on the offline digits (nothing is downloaded)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import Dataset

from bench.data import load_dataset
from bench.errors import UsageError
from bench.quality.features import (
    ENV_INCEPTION_WEIGHTS,
    INCEPTION,
    INCEPTION_WEIGHTS_FILE,
    ClassifierFeatureExtractor,
    ensure_classifier,
    resolve_inception_weights,
    resolve_weights,
    score_label,
)
from bench.quality.scoring import score

RESOLUTION = 16
N_REAL = 300


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks run fastest on one thread, and the CI box has 2 cores shared with others."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return ensure_classifier("digits", input_size=16, seed=0, cache_dir=cache)


@pytest.fixture(scope="module")
def real():
    return load_dataset("digits", root=None, resolution=RESOLUTION, limit=N_REAL)


@pytest.fixture(scope="module")
def real_images(real):
    return real.stack()[0]


@pytest.fixture
def no_download(monkeypatch):
    """Any attempt by torch-fidelity to fetch weights fails the test loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to download {args[:1]}")

    monkeypatch.setattr("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url",
                        refuse)
    monkeypatch.setattr("torch.hub.load_state_dict_from_url", refuse)


def _score(generated, real, classifier, **kwargs):
    kwargs.setdefault("kid_subsets", 20)
    return score(generated, real, extractor="digits-classifier", weights_path=classifier.path,
                 **kwargs)


def test_classifier_is_accurate_cached_and_deterministic(classifier, tmp_path):
    assert classifier.accuracy > 0.9
    assert classifier.n_test == 1797 // 5 and classifier.feature_dim == 64
    assert classifier.path.name == "digits-classifier-r16-s0.pt"
    stamp = classifier.path.stat().st_mtime_ns
    again = ensure_classifier("digits", input_size=16, seed=0, cache_dir=classifier.path.parent)
    assert again == classifier and classifier.path.stat().st_mtime_ns == stamp  # reused
    assert resolve_weights("digits-classifier", cache_dir=classifier.path.parent) == classifier.path
    retrained = ensure_classifier("digits", input_size=16, seed=0, cache_dir=tmp_path)
    assert retrained.accuracy == classifier.accuracy  # same seed, same network
    assert retrained.path.read_bytes() == classifier.path.read_bytes()


def test_extractor_follows_torch_fidelity_contract(classifier, real_images):
    from torch_fidelity.utils import create_feature_extractor

    extractor = create_feature_extractor(
        "digits-classifier", ["penultimate", "logits"], cuda=False, verbose=False,
        feature_extractor_weights_path=str(classifier.path))
    assert isinstance(extractor, ClassifierFeatureExtractor)
    uint8 = ((real_images[:8] + 1) * 127.5).round().to(torch.uint8).expand(-1, 3, -1, -1)
    penultimate, logits = extractor(uint8)
    assert penultimate.shape == (8, 64) and penultimate.dtype == torch.float32
    assert logits.shape == (8, 10)
    labels = torch.arange(8)  # the first digits are 0, 1, ..., 7
    assert (logits.argmax(1) == labels).float().mean() >= 0.75
    with pytest.raises(ValueError):
        extractor(real_images[:2].expand(-1, 3, -1, -1))  # float input is not the contract


def test_same_images_score_zero_and_noise_scores_high(classifier, real, real_images):
    same = _score(real_images, real, classifier)
    assert abs(same["fid"]) < 1e-3
    assert same["n_generated"] == same["n_real"] == N_REAL
    assert same["kid_subset_size"] == N_REAL  # min(1000, n) chosen automatically
    others = load_dataset("digits", root=None, resolution=RESOLUTION).stack()[0][1000:1000 + N_REAL]
    baseline = _score(others, real, classifier)
    noise = torch.rand(N_REAL, 1, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(0))
    noisy = _score(noise * 2 - 1, real, classifier)
    print(f"FID same={same['fid']:.3g} other-digits={baseline['fid']:.3g} "
          f"noise={noisy['fid']:.3g}; KID other={baseline['kid_mean']:.3g} "
          f"noise={noisy['kid_mean']:.3g}")
    assert 0 < baseline["fid"] < 5
    assert noisy["fid"] > 10 * baseline["fid"]
    assert noisy["kid_mean"] > 10 * max(baseline["kid_mean"], same["kid_std"], 1e-3)
    assert noisy["fid_label"] == "FID (digits-classifier features)"
    assert noisy["kid_label"] == "KID (digits-classifier features)"


def test_uint8_and_rgb_inputs_give_the_same_score(classifier, real, real_images):
    floats = _score(real_images[:100], real, classifier, seed=3)
    uint8 = ((real_images[:100] + 1) * 127.5).round().to(torch.uint8).repeat(1, 3, 1, 1)
    assert _score(uint8, real_images, classifier, seed=3)["fid"] == pytest.approx(floats["fid"])


class _Unreadable(Dataset):
    """Has a length but no images: scoring against it works only from the real-feature cache."""

    def __init__(self, shape):
        self.shape = shape

    def __len__(self):
        return N_REAL

    def __getitem__(self, index):
        if index == 0:
            return torch.zeros(self.shape)  # the resolution check reads item 0
        raise AssertionError("real images were read despite the cache")


def test_real_features_are_cached_by_key(classifier, real, real_images, tmp_path):
    first = _score(real_images[:50], real, classifier, cache_real_key="digits", cache_dir=tmp_path)
    assert first["real_cache_name"].startswith("digits-digits-classifier-")
    assert any((tmp_path / "fidelity").iterdir())
    cached = _score(real_images[:50], _Unreadable(real_images.shape[1:]), classifier,
                    cache_real_key="digits", cache_dir=tmp_path)
    assert cached["fid"] == first["fid"] and cached["kid_mean"] == first["kid_mean"]
    uncached = _score(real_images[:50], real, classifier, cache_dir=tmp_path / "unused")
    assert uncached["real_cache_name"] is None and not (tmp_path / "unused").exists()


def test_bad_inputs_are_one_line_usage_errors(classifier, real, real_images):
    cases = [
        (real_images[:10], {"kid_subset_size": 11}, "KID subset size"),
        (torch.zeros(4, 1, 8, 8), {}, "8x8"),
        (torch.full((4, 1, RESOLUTION, RESOLUTION), float("nan")), {}, "NaN"),
        (torch.zeros(4, 2, RESOLUTION, RESOLUTION), {}, "C = 1 or 3"),
        (real_images[:1], {}, "at least 2"),
    ]
    for generated, kwargs, fragment in cases:
        with pytest.raises(UsageError) as excinfo:
            _score(generated, real, classifier, **kwargs)
        assert fragment in str(excinfo.value) and "\n" not in str(excinfo.value)
    with pytest.raises(UsageError, match="choose one of"):
        score(real_images, real, extractor="vgg16")  # would download: not offered
    with pytest.raises(UsageError, match="no feature layer"):
        _score(real_images, real, classifier, feature_layer="2048")


def test_score_label_names_non_standard_extractors():
    assert score_label("fid", INCEPTION) == "FID"
    assert score_label("kid", INCEPTION) == "KID"
    assert score_label("fid", "digits-classifier") == "FID (digits-classifier features)"
    assert score_label("KID", "mnist-classifier") == "KID (mnist-classifier features)"
    assert score_label("fid", INCEPTION, "2048") == "FID"
    assert score_label("fid", INCEPTION, "768") == "FID (inception-v3-compat 768 features)"


def test_inception_without_weights_is_a_clear_error(real, real_images, tmp_path, monkeypatch,
                                                    no_download):
    monkeypatch.delenv(ENV_INCEPTION_WEIGHTS, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no hub copy there
    with pytest.raises(UsageError) as excinfo:
        score(real_images, real, extractor=INCEPTION)
    message = str(excinfo.value)
    assert INCEPTION_WEIGHTS_FILE in message and ENV_INCEPTION_WEIGHTS in message
    assert "https://" in message and "\n" not in message
    monkeypatch.setenv(ENV_INCEPTION_WEIGHTS, str(tmp_path / "missing.pth"))
    with pytest.raises(UsageError, match="missing.pth"):
        resolve_inception_weights()


def test_inception_runs_from_a_local_weights_file(real_images, tmp_path, monkeypatch, no_download):
    """Wiring only: random InceptionV3 weights saved locally are what torch-fidelity loads."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with monkeypatch.context() as patch:
        patch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        patch.setattr("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url",
                      lambda *args, **kwargs: {})
        torch.manual_seed(0)
        network = FeatureExtractorInceptionV3(INCEPTION, ["2048"])
    weights = tmp_path / INCEPTION_WEIGHTS_FILE
    torch.save(network.state_dict(), weights)
    monkeypatch.setenv(ENV_INCEPTION_WEIGHTS, str(weights))
    # Layer "64" keeps the test quick: FID's matrix square root at 2048-d takes many seconds.
    result = score(real_images[:4], real_images[4:8], extractor=INCEPTION, kid_subsets=2,
                   feature_layer="64")
    assert result["fid_label"] == "FID (inception-v3-compat 64 features)"
    assert result["feature_layer"] == "64"
    assert result["weights_path"] == str(weights) and result["kid_subset_size"] == 4
    assert math.isfinite(result["fid"]) and math.isfinite(result["kid_mean"])
