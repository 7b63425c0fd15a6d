"""Quality profiles: the smoke profile end to end (train, sweep, score, reports, resume), and the
errors of the others."""

from __future__ import annotations

import pytest

from bench.errors import UsageError
from bench.quality.profiles import QUALITY_PROFILES, get_profile, run_quality_profile
from bench.report.quality import write_quality_reports
from bench.results.store import read_measurements


def test_profile_names_do_not_clash_with_the_efficiency_ones():
    assert set(QUALITY_PROFILES) == {"smoke", "digits", "paper-quality"}
    assert not set(QUALITY_PROFILES) & {"quick", "paper", "full"}


def test_unknown_profile():
    with pytest.raises(UsageError, match="unknown quality profile 'fast'"):
        get_profile("fast")


def test_paper_quality_without_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    with pytest.raises(UsageError, match="BENCH_DATA_DIR"):
        run_quality_profile("paper-quality", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("BENCH_QUALITY_DATASETS", "celeba")
    with pytest.raises(UsageError, match="celeba: .*nowhere/celeba does not exist"):
        run_quality_profile("paper-quality", tmp_path / "out")
    monkeypatch.setenv("BENCH_QUALITY_DATASETS", "imagenet")
    with pytest.raises(UsageError, match="unknown dataset"):
        run_quality_profile("paper-quality", tmp_path / "out")


def test_smoke_profile_end_to_end(tmp_path, monkeypatch):
    results = run_quality_profile("smoke", tmp_path / "results")
    frame = read_measurements(results)
    profile = get_profile("smoke")
    assert set(frame["status"]) == {"ok"}

    fid = frame[frame["metric"] == "fid"]
    trained = fid[fid["checkpoint"].str.startswith("checkpoints/")]
    sweep = profile.sweep
    assert len(trained) == (len(profile.models) * len(sweep.samplers) * len(sweep.steps)
                            * len(sweep.seeds))
    assert set(trained["feature_extractor"]) == {"digits-classifier"}
    assert set(trained["n"]) == {sweep.n}
    assert len(fid[fid["checkpoint"] == "untrained"]) == len(profile.models)
    assert len(fid[fid["model"] == "real-data"]) == len(sweep.seeds)
    for metric in ("kid_mean", "kid_std", "sweep_wall_per_image_s", "time_per_sample_s", "train_loss"):
        assert (frame["metric"] == metric).any(), metric
    assert (results / "environment.json").is_file()
    assert sorted(p.name for p in (results / "training").iterdir()) == [
        "digits-cunet-film.csv", "digits-unet.csv"]

    reports = write_quality_reports(results, tmp_path / "reports")
    names = {p.name for p in reports}
    assert {"table1.md", "table1.tex", "fid_vs_steps.png", "samples_unet.png",
            "samples_cunet-film.png"} <= names
    table = (tmp_path / "reports" / "table1.md").read_text()
    assert "FID (digits-classifier features)" in table and "| best FID |" not in table

    # Running again finds every cell finished: nothing is re-measured.
    rows = len(frame)
    run_quality_profile("smoke", results)
    assert len(read_measurements(results)) == rows

    # A longer budget continues training, and the sweep of the changed models is redone.
    from dataclasses import replace

    from bench.quality import profiles

    longer = replace(profile, train=replace(profile.train, steps=profile.train.steps + 2))
    monkeypatch.setitem(profiles.PROFILES, "smoke", longer)
    run_quality_profile("smoke", results)
    again = read_measurements(results)
    assert len(again) == rows
    trained = again[(again["metric"] == "fid") & again["checkpoint"].str.startswith("checkpoints/")]
    assert trained["checkpoint"].str.endswith(f"step_{profile.train.steps + 2:07d}.pt").all()


@pytest.mark.slow
def test_smoke_profile_under_torchrun(tmp_path):
    """Every rank calls run_quality_profile; training is DDP, sampling split, rank 0 writes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "job.py"
    script.write_text("import sys\nfrom pathlib import Path\n"
                      "from bench.quality.profiles import run_quality_profile\n"
                      "run_quality_profile('smoke', Path(sys.argv[1]))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(script), str(tmp_path / "results")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    frame = read_measurements(tmp_path / "results")
    assert set(frame["status"]) == {"ok"}
    assert (frame["metric"] == "fid").sum() == 2 * 2 * 2 * 2 + 2 + 2


def test_an_unknown_sampler_is_refused_before_anything_runs() -> None:
    import pytest

    from bench.errors import UsageError
    from bench.quality.sweep import SweepSettings

    with pytest.raises(UsageError, match="unknown sampler.*euler"):
        SweepSettings(steps=(5,), samplers=("ddpm", "euler"))
