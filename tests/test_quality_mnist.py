"""Table 1 on real MNIST: the classifier extractor's held-out split, the set scores, the held-out
likelihood, several trainings per model (keys, settings) and the one-line errors of bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from bench.errors import UsageError

# ----------------------------------------------------------------------------- classifier


def test_mnist5k_classifier_trains_on_the_split_and_reports_held_out_accuracy(tmp_path):
    from bench.quality.features import CLASSIFIERS, ensure_classifier, load_classifier

    assert CLASSIFIERS["mnist5k-classifier"].dataset == "mnist5k"
    info = ensure_classifier("mnist5k", input_size=16, epochs=1, width=8, shift=1,
                             cache_dir=tmp_path)
    assert (info.n_train, info.n_test) == (4000, 1000)  # all of the train split, the held-out one
    assert 0.5 < info.accuracy <= 1.0  # one epoch of a tiny network already classifies
    model, meta = load_classifier(info.path)
    assert (meta["width"], meta["shift"]) == (8, 1)
    assert model.body[0].out_channels == 8
    again = ensure_classifier("mnist5k", input_size=16, epochs=1, width=8, shift=1,
                              cache_dir=tmp_path)
    assert again == info  # cached: same file, same numbers


def test_shifted_moves_every_image_within_its_bounds():
    from bench.quality.features import _shifted

    images = -torch.ones(8, 1, 6, 6)
    images[:, :, 2:4, 2:4] = 1.0
    torch.manual_seed(0)
    moved = _shifted(images, 2)
    assert moved.shape == images.shape
    assert torch.equal((moved == 1).sum((1, 2, 3)), torch.full((8,), 4))  # the blob stays whole
    assert not torch.equal(moved, images)
    assert torch.equal(_shifted(images, 0), images)


# ----------------------------------------------------------------------------- set scores


def test_score_features_uses_a_kid_subset_below_n_and_separates_a_shift():
    from bench.quality.statistics import default_kid_subset_size, score_features

    rng = np.random.default_rng(0)
    real = rng.normal(size=(800, 8))
    same = score_features(rng.normal(size=(300, 8)), real, seed=1)
    shifted = score_features(rng.normal(size=(300, 8)) + 0.5, real, seed=1)
    assert default_kid_subset_size(300) == 150 and same.kid.subset_size == 150
    assert same.kid.std > 0  # subsets differ: a real sampling spread
    assert shifted.fd > 1.5 and same.fd < 0.3
    assert shifted.fd_inf.value == pytest.approx(8 * 0.25, abs=0.5)  # true FD = 8 * 0.5^2
    assert shifted.kid.mean > 10 * abs(same.kid.mean)
    assert set(same.values()) == {"fid", "fid_inf", "kid_mean", "kid_std"}


@pytest.mark.parametrize(("settings", "message"), [
    ({"n": 100, "kid_subset_size": 100}, "kid_subset_size must be an integer from 2 to n - 1 = 99"),
    ({"n": 100, "kid_subset_size": 1}, "kid_subset_size"),
    ({"n": 2}, "n must be an integer >= 4"),
    ({"likelihood_timesteps": "10"}, "likelihood_timesteps must be an integer >= 1"),
    ({"likelihood_images": 1}, "likelihood_images must be an integer >= 2 or absent"),
    ({"kid_subsets": 1.5}, "kid_subsets must be an integer >= 2"),
])
def test_sweep_settings_refuse_unusable_scores(settings, message):
    from bench.quality.sweep import SweepSettings

    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SweepSettings(steps=(5,), **settings)


def test_n_larger_than_the_real_sets_is_refused():
    from bench.quality.sweep import SweepSettings

    settings = SweepSettings(steps=(5,), n=1500)
    with pytest.raises(UsageError, match="larger than the held-out split \\(1000 images\\)"):
        settings.check_real(4000, 1000)
    with pytest.raises(UsageError, match="larger than the real reference set \\(1000 images\\)"):
        settings.check_real(1000, None)
    settings.check_real(4000, 1500)


# ----------------------------------------------------------------------------- likelihood


def _diffusion():
    from models.diffusion import GaussianDiffusion

    return GaussianDiffusion(schedule="sigmoid", prediction="v")


class _Oracle(nn.Module):
    """Predicts v exactly for a known batch of clean images: every L_t (t >= 1) is then zero."""

    def __init__(self, x0: torch.Tensor, diffusion: nn.Module) -> None:
        super().__init__()
        self.x0, self.diffusion = x0.float(), diffusion

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tables = self.diffusion.tables
        a = tables.sqrt_alphas_cumprod.float()[t].view(-1, 1, 1, 1)
        b = tables.sqrt_one_minus_alphas_cumprod.float()[t].view(-1, 1, 1, 1)
        eps = (x_t - a * self.x0) / b
        return a * eps - b * self.x0


def _images(count: int) -> torch.Tensor:
    from bench.data import load_dataset
    from bench.quality.likelihood import heldout_images

    return heldout_images(load_dataset("mnist5k-heldout", root=None, resolution=16, channels=1),
                          count)


def test_bits_per_dim_of_an_exact_denoiser_is_its_lower_bound():
    from bench.quality.likelihood import _prior_kl, _table, discretized_gaussian_nll, evaluate

    diffusion, x0 = _diffusion(), _images(6)
    result = evaluate(_Oracle(x0, diffusion), diffusion, x0, bands=5, batch=6)
    zero = torch.zeros(len(x0), dtype=torch.long)
    log_var = _table(diffusion, "posterior_log_variance_clipped", zero, x0)
    bound = (_prior_kl(diffusion, x0) + discretized_gaussian_nll(x0, x0, log_var).flatten(1).sum(1))
    expected = bound / (x0[0].numel() * math.log(2))
    np.testing.assert_allclose(result.bits_per_dim, expected.numpy(), rtol=1e-4, atol=1e-6)
    assert np.abs(result.mse_x0).max() < 1e-6
    assert result.bands[0][0] == 0 and result.bands[-1][1] == diffusion.num_timesteps - 1


def test_bits_per_dim_of_a_tiny_model_is_finite_positive_and_worse_than_the_oracle():
    from bench.quality.likelihood import evaluate, likelihood_rows

    diffusion, x0 = _diffusion(), _images(4)
    torch.manual_seed(0)
    from models import build

    model = build("unet", width=8, attn_heads=1, attn_dim_head=8, channels=1).eval()
    result = evaluate(model, diffusion, x0, bands=4, batch=4)
    oracle = evaluate(_Oracle(x0, diffusion), diffusion, x0, bands=4, batch=4)
    assert np.isfinite(result.bits_per_dim).all() and (result.bits_per_dim > 0).all()
    assert result.mean > oracle.mean
    assert result.mse_x0.shape == (4, 4)
    again = evaluate(model, diffusion, x0, bands=4, batch=2)  # seeded per batch index, not size
    assert np.isfinite(again.mean)

    rows = likelihood_rows(model, diffusion, [(x, 0) for x in x0], {"model": "unet"}, timesteps=4)
    metrics = [(r["metric"], r["stat"], r.get("band")) for r in rows]
    assert ("bits_per_dim", "mean", None) in metrics and ("bits_per_dim", "stderr", None) in metrics
    assert [b for m, _, b in metrics if m == "denoise_mse_x0"] == [
        "t000-249", "t250-499", "t500-749", "t750-999"]


def test_band_edges_cover_every_timestep_once():
    from bench.quality.likelihood import band_edges

    edges = band_edges(1000, 10)
    covered = [t for first, last in edges for t in range(first, last + 1)]
    assert covered == list(range(1000)) and edges[1] == (100, 199)
    with pytest.raises(UsageError, match="bands"):
        band_edges(999, 0)


# ----------------------------------------------------------------------------- trainings


def test_training_seeds_name_their_keys_and_files():
    from bench.quality.profiles import _trained_cell_of, training_name
    from bench.results.keys import likelihood_cell_key, quality_cell_key, train_cell_key

    assert training_name("mnist5k", "unet", None) == "mnist5k-unet"
    assert training_name("mnist5k", "unet", 2) == "mnist5k-unet-train2"
    assert train_cell_key("mnist5k", "unet") == "train|unet||||||mnist5k"
    assert train_cell_key("mnist5k", "unet", 1).endswith("|mnist5k|train1")
    one = quality_cell_key("mnist5k", "unet", "trained", "ddpm", 5, 0, train_seed=1)
    two = quality_cell_key("mnist5k", "unet", "trained", "ddpm", 5, 0, train_seed=2)
    plain = quality_cell_key("mnist5k", "unet", "trained", "ddpm", 5, 0)
    assert len({one, two, plain}) == 3
    assert _trained_cell_of(one, "mnist5k", "unet", 1) and not _trained_cell_of(two, "mnist5k", "unet", 1)
    assert _trained_cell_of(plain, "mnist5k", "unet") and not _trained_cell_of(one, "mnist5k", "unet")
    assert _trained_cell_of(likelihood_cell_key("mnist5k", "unet", 1), "mnist5k", "unet", 1)
    assert not _trained_cell_of(likelihood_cell_key("mnist5k", "unet", 1), "mnist5k", "unet", 2)
    assert not _trained_cell_of(one, "mnist5k", "cunet", 1)
    # timing cells name no training: they go with the timed (first) training only, so a later
    # seed trained afresh (a run in parts) keeps the first training's timing
    timing = quality_cell_key("mnist5k", "unet", "trained", "ddpm", 5, None, timing=True)
    assert _trained_cell_of(timing, "mnist5k", "unet", 0, timed=True)
    assert not _trained_cell_of(timing, "mnist5k", "unet", 1, timed=False)


def test_mnist_profile_trains_every_model_three_times_at_the_paper_width_ratio():
    from bench.quality.profiles import get_profile

    profile = get_profile("mnist")
    assert profile.trainings() == (0, 1, 2) and profile.datasets == ("mnist5k",)
    widths = {plan.name: plan.overrides["width"] for plan in profile.models}
    assert widths["unet"] == 4 * widths["cunet"] == 4 * widths["cunet-film"]  # the paper's 64:16
    assert profile.sweep.n >= 500 and profile.sweep.kid_subset_size < profile.sweep.n
    assert profile.sweep.steps == (5, 10, 20, 50, 100)
    assert profile.sweep.samplers == ("ddpm", "dpmsolver++", "unipc")
    for modern in ("dpmsolver++", "unipc"):
        assert profile.sweep.steps_for(modern) == (5, 10, 15, 20, 25)
    assert profile.sweep.extractor == "mnist5k-classifier"
    paper = get_profile("mnist-paper")
    assert (paper.resolution, paper.channels, paper.device) == (64, 3, "cuda")
    assert all(not plan.overrides for plan in paper.models)  # the presets are the paper's widths


# ----------------------------------------------------------------------------- bad input, CLI


_GOOD = ("[quality]\ndatasets = ['mnist5k']\nmodels = ['unet']\nchannels = 1\n"
         "[sweep]\nsteps = [2]\n")


@pytest.mark.parametrize(("text", "message"), [
    (_GOOD.replace("mnist5k", "mnist6k"), "unknown dataset 'mnist6k'"),
    (_GOOD + "n = 1200\n", "n = 1200 is larger than the held-out split (1000 images)"),
    (_GOOD + "n = 100\nkid_subset_size = 100\n", "kid_subset_size must be an integer from 2"),
    (_GOOD.replace("channels = 1", "train_seeds = [1, 1]"), "train_seeds must be a list of distinct"),
])
def test_bad_mnist_settings_are_one_line_before_training(tmp_path, capsys, text, message):
    from bench.cli import main

    config = tmp_path / "q.toml"
    config.write_text(text)
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o" / "checkpoints").exists()


def test_an_idx_path_that_does_not_exist_is_one_line(tmp_path, capsys, monkeypatch):
    from bench.cli import main

    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "nowhere"))
    config = tmp_path / "q.toml"
    config.write_text(_GOOD.replace("mnist5k", "mnist"))
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere/mnist does not exist" in err[0], err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_mnist_paper_refuses_without_cuda_before_training(tmp_path, capsys):
    from bench.cli import main

    assert main(["run", "--profile", "mnist-paper", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mnist-paper needs a CUDA GPU" in err[0], err
    assert not (tmp_path / "o").exists()


def test_train_only_is_for_quality_profiles(tmp_path, capsys):
    from bench.cli import main

    assert main(["run", "--profile", "quick", "--train-only", "--out", str(tmp_path / "o")]) == 2
    assert "--train-only applies to quality profiles" in capsys.readouterr().err
