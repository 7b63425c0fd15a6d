"""Quality reports from synthetic measurements: Table 1 quantities, labels, files written."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.errors import UsageError
from bench.quality.sweep import grid_file, save_grid_images
from bench.report.data import normalise
from bench.report.quality import (
    best_settings,
    real_floor,
    render_markdown,
    score_curves,
    table1_data,
    write_quality_reports,
)
from bench.results.store import MeasurementStore

CKPT = "checkpoints/x/step_0000100.pt"


def _rows(dataset="digits", extractor="digits-classifier"):
    rows = []
    # unet, ddim: 5 -> 10.0/12.0 (mean 11), 20 -> 6.0/6.2 (6.1), 50 -> 5.9/6.1 (6.0): best at 50,
    # 20 is within 5 % (6.1 <= 6.3). cunet: best 8.1 at 20, and 5 steps (8.4 <= 8.505) within.
    fids = {("unet", "ddim"): {5: (10.0, 12.0), 20: (6.0, 6.2), 50: (5.9, 6.1)},
            ("unet", "ddpm"): {5: (30.0, 31.0), 20: (12.0, 13.0), 50: (8.0, 8.5)},
            ("cunet", "ddim"): {5: (8.3, 8.5), 20: (8.0, 8.2), 50: (8.1, 8.3)}}
    for (model, sampler), by_steps in fids.items():
        for steps, values in by_steps.items():
            for seed, value in enumerate(values):
                base = {"model": model, "dataset": dataset, "feature_extractor": extractor,
                        "sampler": sampler, "steps": steps, "seed": seed, "n": 100,
                        "checkpoint": CKPT, "status": "ok", "device": "cpu", "threads": 2}
                rows.append({**base, "metric": "fid", "value": value, "stat": "value"})
                rows.append({**base, "metric": "kid_mean", "value": value / 100, "stat": "mean"})
            rows.append({"model": model, "dataset": dataset, "sampler": sampler, "steps": steps,
                         "checkpoint": CKPT, "metric": "time_per_sample_s", "stat": "median",
                         "value": steps * (0.01 if model == "unet" else 0.006), "status": "ok",
                         "device": "cpu", "threads": 2})
    for model, value in (("unet", 90.0), ("cunet", 80.0)):
        rows.append({"model": model, "dataset": dataset, "feature_extractor": extractor,
                     "sampler": "ddim", "steps": 5, "seed": 0, "n": 100, "checkpoint": "untrained",
                     "metric": "fid", "value": value, "status": "ok"})
    for seed, value in enumerate((1.0, 1.4)):
        rows.append({"model": "real-data", "dataset": dataset, "feature_extractor": extractor,
                     "sampler": "none", "seed": seed, "n": 100, "checkpoint": "data",
                     "metric": "fid", "value": value, "status": "ok"})
    return rows


def _ok(rows) -> pd.DataFrame:
    frame = normalise(pd.DataFrame(rows))
    return frame[frame["status"] == "ok"].reset_index(drop=True)


def test_score_curves_average_over_seeds():
    curves = score_curves(_ok(_rows()))
    row = curves[(curves["model"] == "unet") & (curves["sampler"] == "ddim")
                 & (curves["steps"] == 5)].iloc[0]
    assert row["mean"] == pytest.approx(11.0)
    assert row["std"] == pytest.approx(math.sqrt(2.0))
    assert row["seeds"] == 2 and row["kind"] == "trained"
    assert set(curves["kind"]) == {"trained", "untrained", "data"}


def test_table1_best_within_five_percent_and_times():
    table = table1_data(_ok(_rows()))
    unet = table[(table["model"] == "unet") & (table["sampler"] == "ddim")].iloc[0]
    assert unet["best"] == pytest.approx(6.0)
    assert unet["steps_best"] == 50
    assert unet["steps_within"] == 20 and unet["score_within"] == pytest.approx(6.1)
    assert unet["time_best_s"] == pytest.approx(0.5)
    assert unet["time_within_s"] == pytest.approx(0.2)
    assert unet["kid_best"] == pytest.approx(0.06)
    assert unet["untrained_best"] == 90.0
    assert math.isnan(unet["paper_fid"])  # digits is not one of the paper's datasets
    cunet = table[table["model"] == "cunet"].iloc[0]
    assert cunet["steps_best"] == 20 and cunet["steps_within"] == 5
    assert list(table["model"]) == ["unet", "unet", "cunet"]  # the paper's order
    best = best_settings(table)
    assert best.set_index("model").loc["unet", "sampler"] == "ddim"


def test_paper_values_sit_beside_the_papers_datasets():
    table = table1_data(_ok(_rows(dataset="mnist", extractor="inception-v3-compat")))
    unet = table[table["model"] == "unet"].iloc[0]
    assert (unet["paper_fid"], unet["paper_steps"], unet["paper_time_s"]) == (3.61, 30, 3.56)
    cunet = table[table["model"] == "cunet"].iloc[0]
    assert (cunet["paper_fid"], cunet["paper_steps"]) == (2.98, 5)


def test_labels_say_which_features_were_used():
    ok = _ok(_rows())
    text = render_markdown(table1_data(ok), real_floor(ok), ok)
    assert "FID (digits-classifier features)" in text
    assert "| best FID |" not in text and "best FID (digits-classifier features)" in text
    inception = _ok(_rows(dataset="celeba", extractor="inception-v3-compat"))
    text = render_markdown(table1_data(inception), real_floor(inception), inception)
    assert "best FID |" in text and "paper FID" in text


def test_failures_are_listed_not_hidden():
    rows = _rows() + [{"model": "cunet-film", "dataset": "digits", "metric": "train_loss",
                       "status": "failed", "cell": "train/digits/cunet-film",
                       "error": "training stopped at step 7: the loss is nan"}]
    frame = normalise(pd.DataFrame(rows))
    ok = frame[frame["status"] == "ok"]
    text = render_markdown(table1_data(ok), real_floor(ok), ok, frame[frame["status"] != "ok"])
    assert "## Failed" in text and "cunet-film" in text and "the loss is nan" in text


def test_write_quality_reports_from_a_results_dir(tmp_path):
    results = tmp_path / "results"
    MeasurementStore(results).add(_rows())
    images = np.random.default_rng(0).integers(0, 255, size=(9, 1, 8, 8), dtype=np.uint8)
    import torch

    grid = grid_file(results / "samples", "digits", "unet", "trained", "ddim", 50, 0)
    assert grid.name == "quality__digits__unet__trained__ddim__s50__seed0.npz"  # committed names
    save_grid_images(grid, torch.from_numpy(images), 9)
    (results / "training").mkdir()
    (results / "training" / "digits-unet.csv").write_text("step,loss\n10,0.5\n20,0.2\n")
    paths = write_quality_reports(results, tmp_path / "reports")
    names = {p.name for p in paths}
    assert {"table1.md", "table1.tex", "table1.csv", "fid_vs_steps.png", "samples_unet.png",
            "training_loss.png"} <= names
    assert "samples_cunet.png" not in names  # no grid was saved for cunet: skipped, not fatal
    for path in paths:
        assert path.stat().st_size > 0
    assert "\\begin{tabular}" in (tmp_path / "reports" / "table1.tex").read_text()


def test_reports_need_quality_measurements(tmp_path):
    with pytest.raises(UsageError, match="measurements.csv"):
        write_quality_reports(tmp_path, tmp_path / "reports")
    MeasurementStore(tmp_path).add([{"model": "unet", "metric": "params", "value": 1.0,
                                     "unit": "count", "status": "ok"}])
    with pytest.raises(UsageError, match="no quality measurements"):
        write_quality_reports(tmp_path, tmp_path / "reports")


def test_old_sweep_wall_time_rows_are_read_under_their_own_name(tmp_path) -> None:
    """Sweeps before the rename wrote wall time / n as `sample_time_s` (stat wall_per_sample); read
    back they are `sweep_wall_per_image_s`, never mixed with the matrix's time per sample."""
    import pandas as pd

    from bench.report.data import normalise

    frame = pd.DataFrame([
        {"model": "unet", "metric": "sample_time_s", "value": 0.02, "stat": "wall_per_sample"},
        {"model": "unet", "metric": "sample_time_s", "value": 0.30, "stat": "median"},
    ])
    assert list(normalise(frame)["metric"]) == ["sweep_wall_per_image_s", "sample_time_s"]


def test_old_quality_cell_keys_resume_under_the_one_key_scheme(tmp_path) -> None:
    """A quality run written before the one key scheme resumes: its cells are read in today's
    keys (the same the sweep now writes), so nothing finished is measured again."""
    from bench.quality.sweep import cell_key
    from bench.results.keys import quality_cell_key, train_cell_key
    from bench.results.store import MeasurementStore

    old = [("quality/digits/unet/trained/ddim/s50/seed0",
            cell_key("digits", "unet", "trained", "ddim", 50, 0)),
           ("time/quality/digits/unet/trained/ddpm/s5/seedNone",
            quality_cell_key("digits", "unet", "trained", "ddpm", 5, None, timing=True)),
           ("quality/digits/real-data/data/none/sNone/seed1",
            cell_key("digits", "real-data", "data", "none", None, 1)),
           ("train/digits/cunet-film", train_cell_key("digits", "cunet-film")),
           ("params|unet|cpu|64||float32|", "params|unet|cpu|64||float32|")]
    MeasurementStore(tmp_path).add([{"model": "unet", "metric": "fid", "value": 1.0, "status": "ok",
                                     "cell": key, "timestamp": "2026-11-26T16:16:08Z"}
                                    for key, _ in old])
    assert MeasurementStore(tmp_path).done_cells() == {new for _, new in old}
