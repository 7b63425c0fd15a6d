"""Quality against cost from synthetic rows: the Pareto frontier, the time to within 5 % of the best
score with its range across trainings, the best score within a time budget, and the files."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.report.quality_cost import (
    at_equal_cost,
    cost_points,
    pareto_front,
    quality_cost_points,
    time_to_quality,
    write_quality_cost_reports,
)

# model -> sampler -> steps -> FD of training 0; trainings 1 and 2 add +-0.1 * offset
CURVES = {
    "unet": {"ddpm": {5: 40.0, 10: 20.0, 50: 5.0, 100: 4.0}, "dpmsolver++": {5: 8.0, 10: 4.1, 20: 4.0}},
    "cunet": {"ddpm": {5: 30.0, 10: 14.0, 50: 13.0, 100: 12.9}, "dpmsolver++": {5: 13.5, 10: 13.0}},
}
SECONDS_PER_CALL = {"unet": 0.01, "cunet": 0.004}
FLOPS_PER_CALL = {"unet": 2e8, "cunet": 5e8}


def _rows() -> pd.DataFrame:
    rows = []
    base = {"dataset": "mnist5k", "feature_extractor": "mnist5k-classifier", "status": "ok"}
    for model, samplers in CURVES.items():
        rows.append({**base, "model": model, "checkpoint": "checkpoints/x", "metric": "flops_torch",
                     "stat": "value", "value": FLOPS_PER_CALL[model], "train_seed": 0})
        for sampler, curve in samplers.items():
            for steps, fd in curve.items():
                point = {**base, "model": model, "sampler": sampler, "steps": steps,
                         "checkpoint": f"checkpoints/{model}/step_1.pt"}
                for train_seed, shift in ((0, 0.0), (1, 0.1), (2, -0.1)):
                    rows.append({**point, "metric": "fid", "stat": "value", "seed": 0,
                                 "train_seed": train_seed, "value": fd * (1 + shift)})
                    rows.append({**point, "metric": "sweep_wall_per_image_s", "seed": 0,
                                 "stat": "wall_per_sample", "train_seed": train_seed,
                                 "batch_size": 250, "value": SECONDS_PER_CALL[model] * steps / 4})
                rows.append({**point, "metric": "time_per_sample_s", "stat": "median",
                             "train_seed": 0, "value": SECONDS_PER_CALL[model] * steps})
                rows.append({**point, "metric": "denoiser_calls", "stat": "value", "train_seed": 0,
                             "value": steps})
    return pd.DataFrame(rows)


def test_costs_come_from_the_rows_of_the_same_run():
    costs = cost_points(_rows()).set_index(["model", "sampler", "steps"])
    unet = costs.loc[("unet", "ddpm", 50.0)]
    assert unet["seconds_b1"] == pytest.approx(0.5) and unet["seconds_sweep"] == pytest.approx(0.125)
    assert unet["gflops"] == pytest.approx(2e8 * 50 / 1e9) and unet["sweep_batch"] == 250
    assert costs.loc[("cunet", "dpmsolver++", 10.0), "gflops"] == pytest.approx(5.0)


def test_the_frontier_keeps_only_points_no_other_beats_on_both():
    points, unit = quality_cost_points(_rows())
    assert unit == "training" and set(points["replicates"]) == {3}
    unet = points[points["model"] == "unet"]
    front = pareto_front(unet, "seconds_b1")
    assert list(zip(front["sampler"], front["steps"].astype(int), strict=True)) == [
        ("dpmsolver++", 5), ("dpmsolver++", 10), ("dpmsolver++", 20)]  # DDPM is always dearer
    assert front["mean"].is_monotonic_decreasing and front["seconds_b1"].is_monotonic_increasing
    by_steps = pareto_front(points[points["model"] == "cunet"], "steps")
    assert list(zip(by_steps["sampler"], by_steps["steps"].astype(int), strict=True)) == [
        ("dpmsolver++", 5), ("dpmsolver++", 10), ("ddpm", 100)]  # 12.9 at 100 beats 13.0 at 10


def test_time_to_within_five_percent_of_the_best_with_its_range_across_trainings():
    table = time_to_quality(_rows()).set_index(["model", "sampler"])
    unet_ddpm = table.loc[("unet", "ddpm")]
    assert unet_ddpm["best"] == pytest.approx(4.0) and unet_ddpm["best_steps"] == 100
    assert unet_ddpm["within_steps"] == 100 and unet_ddpm["within_cost"] == pytest.approx(1.0)
    assert unet_ddpm["best_low"] < 4.0 < unet_ddpm["best_high"]
    assert (unet_ddpm["within_cost_min"], unet_ddpm["within_cost_max"]) == (pytest.approx(1.0),) * 2
    dpm = table.loc[("unet", "dpmsolver++")]
    assert dpm["within_steps"] == 10 and dpm["within_cost"] == pytest.approx(0.1)
    assert dpm["model_best_cost"] == pytest.approx(0.1)  # 4.1 <= 1.05 x the model's best, 4.0
    cunet = table.loc[("cunet", "ddpm")]
    assert cunet["within_steps"] == 50
    assert table.loc[("unet", "ddpm"), "model_best_steps"] == 100
    assert math.isnan(table.loc[("cunet", "ddpm"), "within_cost_min"]) is False


def test_the_best_score_within_a_budget_names_the_leader_and_resolves_with_trainings():
    equal = at_equal_cost(_rows())
    assert not equal.empty and (equal["budget"].diff().dropna() > 0).all()
    first, last = equal.iloc[0], equal.iloc[-1]
    assert first["budget"] == pytest.approx(0.05)  # where the dearer model has its first point
    assert first["leader"] == "unet" and first["unet at"] == "dpmsolver++ 5"
    assert "better" in first["difference"]  # 8 +- 10 % against cunet's best 13.5 within 0.05 s
    assert last["leader"] == "unet" and last["unet"] == pytest.approx(4.0)


def test_one_replicate_draws_no_interval_and_claims_nothing(tmp_path):
    rows = _rows()
    rows = rows[rows["train_seed"] == 0]
    points, unit = quality_cost_points(rows)
    assert unit == "none" and points["low"].isna().all()
    assert set(at_equal_cost(rows)["difference"]) <= {"no interval (one replicate)"}
    paths = write_quality_cost_reports(rows, tmp_path)
    text = (tmp_path / "quality_cost.md").read_text()
    assert "no interval is drawn" in text and "resolved" not in text.split("## Every point")[1]
    assert {p.name for p in paths} == {"quality_cost.md", "quality_cost.csv", "time_to_quality.csv",
                                       "quality_vs_cost.png"}


def test_the_report_files_show_every_cost(tmp_path):
    rows = _rows()
    rows["busy"] = "False"
    busy = (rows["metric"] == "sweep_wall_per_image_s") & (rows["model"] == "cunet") & (rows["steps"] == 50)
    rows.loc[busy & (rows["train_seed"] == 1), "busy"] = "True"
    write_quality_cost_reports(rows, tmp_path)
    text = (tmp_path / "quality_cost.md").read_text()
    assert text.count(" BUSY |") == 1 and "| cunet | ddpm | 50 |" in text  # the one busy point
    for heading in ("## Every point", "## Pareto frontier per model",
                    "## Time to reach within 5 % of the best score",
                    "## The best score within a time budget: seconds per sample (batch 1)",
                    "## The best score within a time budget: seconds per sample (sweep batch)",
                    "## The answer, from the numbers above"):
        assert heading in text
    assert "95 % Student-t interval across 3 trainings" in text
    assert (tmp_path / "quality_vs_cost.png").stat().st_size > 10_000


def test_the_answer_paragraph_says_who_gets_there_sooner_and_who_is_ahead_at_equal_time(tmp_path):
    write_quality_cost_reports(_rows(), tmp_path)
    answer = (tmp_path / "quality_cost.md").read_text().split("## The answer")[1]
    assert ("**Fewer steps?** with ddpm cunet gets within 5 % of its own best in 50 steps (unet "
            "100); with dpmsolver++ cunet gets within 5 % of its own best in 5 steps (unet 10).") in answer
    assert "each model's best over every sampler is unet 4 [" in answer  # a best sooner, not better
    # six budgets, but only four distinct pairs of points compared (unet dpmsolver++ 5, 10, 20
    # and ddpm 100 tie-broken to the cheaper dpmsolver++ 20; cunet dpmsolver++ 10, ddpm 100)
    assert ("**At equal seconds per sample (batch 1):** unet is ahead at every budget from 0.05 "
            "to 1 s; the lead is resolved (its 95 % Welch interval excludes 0) in 4 of 4 distinct "
            "comparisons. Below 0.05 s only cunet (best 13, dpmsolver++ 10) has points.") in answer
    assert "**At equal seconds per sample (sweep batch):**" in answer


def test_a_change_of_leader_with_the_budget_is_said_as_ranges():
    from bench.report.quality_cost import equal_time_answer

    equal = pd.DataFrame({"dataset": "d", "budget": [0.1, 0.2, 0.4],
                          "leader": ["cunet", "cunet", "unet"], "resolved": [None, None, None]})
    points = pd.DataFrame({"dataset": "d", "model": ["cunet"], "mean": [5.0], "sampler": ["ddpm"],
                           "steps": [5], "seconds_b1": [0.1]})
    assert equal_time_answer(points, equal, "seconds_b1") == [
        "**At equal seconds per sample (batch 1):** cunet is ahead from 0.1 to 0.2 s; unet is ahead "
        "from 0.4 to 0.4 s; one replicate: no interval, so no lead is claimed as real."]
    # replicates, but never two models within one budget: nothing to compare, not "one replicate"
    assert "no budget has two models to compare" in equal_time_answer(points, equal, "seconds_b1",
                                                                       "training")[0]
