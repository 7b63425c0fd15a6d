"""Table 1 across runs (`bench report --results RUN --beside OTHER`): a full-width run trained once
beside a reduced-width run trained three times (synthetic rows, no training). The table states
what differs between the runs; the gap of a run trained once is a point difference without
interval, never a verdict; the paragraph says the ordering changed and which run resolves it; the
command refuses what it cannot draw in one line."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.cli import main
from bench.report.data import normalise
from bench.report.quality_runs import (
    ONE_TRAINING,
    QualityRun,
    runs_gaps_data,
    runs_paragraph,
    runs_table_data,
)
from bench.results.store import MeasurementStore

DATASET, EXTRACTOR = "mnist5k", "mnist5k-classifier"
STEPS = (5, 10, 20, 50)
PAPER_PARAMS = {"unet": 35_710_339, "cunet": 8_811_875}
# Full width, one training: cunet's best 3.0 at 10 steps, unet's 4.0 at 50 (cunet lower, no CI).
FULL = {"unet": {0: (20.0, 10.0, 6.0, 4.0)}, "cunet": {0: (5.0, 3.0, 3.1, 3.3)}}
# Reduced width, three trainings: unet clearly lower everywhere.
REDUCED = {"unet": {0: (8.0, 4.0, 2.5, 2.0), 1: (8.2, 4.1, 2.6, 2.2), 2: (7.9, 3.9, 2.4, 1.9)},
           "cunet": {0: (20.0, 15.0, 13.0, 14.0), 1: (21.0, 16.0, 14.0, 15.0),
                     2: (19.5, 14.5, 12.5, 13.0)}}


def _rows(fid: dict, *, params: dict, resolution: int, channels: int, device: str, n: int,
          train_steps: int, batch: int, name_seed: bool = True) -> list[dict]:
    rows = []
    for model, seeds in fid.items():
        rows.append({"model": model, "metric": "params", "value": params[model], "unit": "count",
                     "stat": "value", "status": "ok", "device": device})
        for seed, values in seeds.items():
            checkpoint = f"checkpoints/{DATASET}-{model}-train{seed}/step_{train_steps:08d}.pt"
            base = {"dataset": DATASET, "status": "ok", "device": device, "model": model,
                    "checkpoint": checkpoint, "resolution": resolution, "channels": channels,
                    **({"train_seed": seed} if name_seed else {})}
            rows.append({**base, "metric": "train_steps", "value": train_steps, "unit": "steps",
                         "stat": "value", "batch_size": batch})
            for steps, value in zip(STEPS, values, strict=True):
                cell = {**base, "sampler": "ddpm", "steps": steps, "seed": 0, "n": n,
                        "feature_extractor": EXTRACTOR, "unit": "score"}
                rows += [{**cell, "metric": "fid", "value": value, "stat": "value"},
                         {**cell, "metric": "fid_inf", "value": value - 0.5,
                          "stat": "extrapolated"}]
    return rows


def _full(name_seed: bool = True) -> list[dict]:
    return _rows(FULL, params=PAPER_PARAMS, resolution=64, channels=3, device="cuda", n=1000,
                 train_steps=700, batch=128, name_seed=name_seed)


def _reduced() -> list[dict]:
    return _rows(REDUCED, params={"unet": 578_577, "cunet": 394_393}, resolution=32, channels=1,
                 device="cpu", n=500, train_steps=1000, batch=64)


def _ok(rows: list[dict]) -> pd.DataFrame:
    return normalise(pd.DataFrame(rows))


@pytest.fixture(scope="module")
def runs() -> list[QualityRun]:
    return [QualityRun("full-gpu", _ok(_full())), QualityRun("reduced-cpu", _ok(_reduced()))]


def test_the_table_states_what_differs_between_the_runs(runs):
    table = runs_table_data(runs)
    assert list(table["run"]) == ["full-gpu", "full-gpu", "reduced-cpu", "reduced-cpu"]
    assert list(table["model"]) == ["unet", "cunet", "unet", "cunet"]  # the paper's order
    full = table[table["run"] == "full-gpu"].set_index("model")
    reduced = table[table["run"] == "reduced-cpu"].set_index("model")
    assert full.loc["unet", "width_ratio"] == 1.0 and full.loc["cunet", "width_ratio"] == 1.0
    assert reduced.loc["unet", "width_ratio"] == pytest.approx(578_577 / 35_710_339)
    assert list(full["trainings"]) == [1, 1] and list(reduced["trainings"]) == [3, 3]
    assert full.loc["unet", "train_images"] == 700 * 128
    assert reduced.loc["cunet", "train_images"] == 1000 * 64
    assert (full["device"] == "cuda").all() and (reduced["resolution"] == 32).all()
    assert full.loc["cunet", "best"] == 3.0 and full.loc["cunet", "steps_best"] == 10
    assert math.isnan(full.loc["cunet", "best_low"])  # one training: no interval
    means = np.mean([v[3] for v in REDUCED["unet"].values()])
    assert reduced.loc["unet", "best"] == pytest.approx(means)
    assert reduced.loc["unet", "best_low"] < means < reduced.loc["unet", "best_high"]
    assert full.loc["cunet", "at_fewest"] == 5.0 and full.loc["cunet", "fewest_steps"] == 5
    assert full.loc["unet", "paper_fid"] == 3.61 and full.loc["cunet", "paper_steps"] == 5


def test_a_run_trained_once_gets_a_point_gap_and_no_verdict(runs):
    table = runs_table_data(runs)
    gaps = runs_gaps_data(runs, table).set_index(["run", "metric"])
    once = gaps.loc[("full-gpu", "fid")]
    assert once["verdict"] == ONE_TRAINING and once["delta"] == pytest.approx(3.0 - 4.0)
    assert math.isnan(once["low"]) and math.isnan(once["high"])
    across = gaps.loc[("reduced-cpu", "fid")]
    best_c = int(np.argmin(np.mean(list(REDUCED["cunet"].values()), axis=0)))
    best_u = int(np.argmin(np.mean(list(REDUCED["unet"].values()), axis=0)))
    a = [v[best_c] for v in REDUCED["cunet"].values()]
    b = [v[best_u] for v in REDUCED["unet"].values()]
    welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert across["delta"] == pytest.approx(np.mean(a) - np.mean(b))
    assert (across["low"], across["high"]) == pytest.approx((welch.low, welch.high))
    assert across["verdict"] == "worse" and across["trainings"] == 3


def test_the_paragraph_answers_the_claim_per_run_and_across_them(runs):
    table = runs_table_data(runs)
    text = runs_paragraph(runs, table, runs_gaps_data(runs, table), DATASET, EXTRACTOR, "ddpm")
    assert text.startswith("The paper's MNIST claim: cU-Net FID 2.98 at 5 steps")
    assert "full-gpu: the paper's width (unet 35,710,339 parameters, as the paper's" in text
    assert "reduced-cpu: reduced width (unet 578,577 parameters, 1.6 % of the paper's" in text
    assert "from one training per model: no interval across trainings, so not resolved" in text
    assert "worse (95 %, across trainings)" in text
    assert ("changes between the runs (full-gpu: cunet lower; reduced-cpu: unet lower); only "
            "reduced-cpu resolves it") in text
    assert "The runs differ in n (FD at n falls as n grows), resolution, trainings per model" in text


def test_report_beside_writes_both_runs_and_the_joint_table(tmp_path):
    full, reduced = tmp_path / "mnist-paper-h200", tmp_path / "mnist"
    MeasurementStore(full).add(_full(name_seed=False))  # an older single run: no train_seed
    MeasurementStore(reduced).add(_reduced())
    out = tmp_path / "reports"
    assert main(["report", "--results", str(full), "--beside", str(reduced), "--out",
                 str(out)]) == 0
    joint = (out / "table1_runs.md").read_text()
    assert "Runs: `mnist-paper-h200`, `mnist`." in joint and "| mnist-paper-h200 | cunet |" in joint
    assert "| 8.81 M (the paper's) |" in joint and "pytorch-fid, i.e. Inception" in joint
    own = (out / "table1.md").read_text()  # the run's own Table 1 names its real scale
    assert "the paper's width" in own and "reduced width" not in own
    assert {"table1_runs.csv", "table1_runs_gaps.csv"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize("argv, says", [
    (["--results", "{full}", "{reduced}"], "would overwrite each other in one --out"),
    (["--results", "{full}", "--beside", "{efficiency}"], "holds no quality measurements"),
    (["--results", "{efficiency}", "--beside", "{full}"], "exactly one quality run"),
    (["--results", "{full}", "--beside", "{full}"], "the same name"),
])
def test_report_beside_refuses_in_one_line(tmp_path, capsys, argv, says):
    paths = {"full": tmp_path / "full", "reduced": tmp_path / "reduced",
             "efficiency": tmp_path / "efficiency"}
    MeasurementStore(paths["full"]).add(_full())
    MeasurementStore(paths["reduced"]).add(_reduced())
    MeasurementStore(paths["efficiency"]).add([{"model": "unet", "metric": "params",
                                                "value": 1.0, "status": "ok", "stat": "value"}])
    args = [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]
    assert main(["report", *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and "Traceback" not in err
