"""Quality profiles: the smoke profile end to end (train, sweep, score, reports, resume), and the
errors of the others."""

from __future__ import annotations

import pytest

from bench.errors import UsageError
from bench.quality.profiles import get_profile, only_train_seeds, run_quality_profile
from bench.report.quality import write_quality_reports
from bench.results.store import read_measurements


def test_quality_profiles_are_files_in_the_one_profile_folder():
    from bench.profiles import PROFILE_DIR, profile_names

    assert set(profile_names("quality")) == {"smoke", "digits", "paper-quality", "mnist",
                                             "mnist-paper"}
    assert not set(profile_names("quality")) & set(profile_names("matrix"))
    assert set(profile_names()) == {p.stem for p in PROFILE_DIR.glob("*.toml")}
    for name in profile_names("quality"):
        assert (PROFILE_DIR / f"{name}.toml").is_file() and get_profile(name).name == name


def test_unknown_profile():
    with pytest.raises(UsageError, match="unknown profile 'fast'; available: efficiency: quick"):
        get_profile("fast")
    with pytest.raises(UsageError, match="'quick' is an efficiency profile"):
        get_profile("quick")


def test_quality_profiles_load_the_settings_they_had_as_code(monkeypatch):
    """The TOML files hold exactly the settings the profiles had as Python dataclasses (written out
    here as they were), so results, cell keys and resume stay the same."""
    from bench.quality.profiles import ModelPlan, QualityProfile
    from bench.quality.sweep import SweepSettings
    from bench.train import TrainConfig

    monkeypatch.delenv("BENCH_QUALITY_DATASETS", raising=False)
    old = {
        "smoke": QualityProfile(  # since moved to mnist5k with two trainings per model, 16 steps
            name="smoke",
            description="tiny unet and cunet-film on mnist5k, 2 trainings of 16 steps, 2x2 sweep",
            datasets=("mnist5k",), resolution=32, channels=1, train_seeds=(0, 1),
            models=(ModelPlan("unet", {"width": 8, "attn_heads": 1, "attn_dim_head": 8}),
                    ModelPlan("cunet-film", {"width": 2, "attn_heads": 1, "attn_dim_head": 8})),
            train=TrainConfig(model="unet", steps=16, batch_size=16, lr=2e-3, ema_decay=0.9,
                              prediction="v", schedule="sigmoid", checkpoint_every=8, log_every=4,
                              progress=False),
            sweep=SweepSettings(steps=(2, 5), n=24, seeds=(0, 1), chunk=24, time_repeats=1, grid=16,
                                untrained_steps=(5,), kid_subset_size=12, likelihood_images=64,
                                samplers=("ddpm", "ddim", "dpmsolver++"),
                                sampler_steps={"dpmsolver++": (3,)}),
            threads=1, device="cpu"),
        "digits": QualityProfile(
            name="digits",
            description="unet / cunet / cunet-film at 1/4 of the paper's widths on 32x32 digits",
            datasets=("digits",), resolution=32, channels=1,
            models=(ModelPlan("unet", {"width": 16, "attn_dim_head": 8}),
                    ModelPlan("cunet", {"width": 4, "attn_dim_head": 8}),
                    ModelPlan("cunet-film", {"width": 4, "attn_dim_head": 8})),
            train=TrainConfig(model="unet", steps=800, batch_size=32, lr=1e-3, ema_decay=0.99,
                              prediction="v", schedule="sigmoid", checkpoint_every=100,
                              log_every=20, progress=True),
            sweep=SweepSettings(steps=(5, 10, 20, 50, 100), n=100, seeds=(0, 1), chunk=50,
                                time_repeats=3, grid=64, untrained_steps=(5, 20))),
        "paper-quality": QualityProfile(
            name="paper-quality",
            description="full-width presets at 64x64 on MNIST / CelebA / LSUN Church (GPU)",
            datasets=("mnist", "celeba", "lsun-church"), resolution=64, channels=3,
            models=(ModelPlan("unet"), ModelPlan("cunet"), ModelPlan("cunet-film")),
            train=TrainConfig(model="unet", steps=100_000, batch_size=128, lr=2e-4,
                              ema_decay=0.9999, ema_every=10, prediction="v", schedule="sigmoid",
                              amp=True, checkpoint_every=5_000, log_every=100, num_workers=8,
                              progress=True),
            sweep=SweepSettings(steps=(5, 10, 20, 30, 50, 80, 100, 250), n=10_000, seeds=(0, 1, 2),
                                extractor="inception-v3-compat", chunk=250, time_repeats=3,
                                grid=64, n_real=50_000),
            hflip_datasets=("celeba", "lsun-church")),
    }
    for name, profile in old.items():
        assert get_profile(name) == profile, name


@pytest.mark.parametrize(("text", "message"), [
    ("[quality]\nmodels = ['unet']\n[sweep]\nsteps = [2]\n[train]\nstep = 3\n", "[train] does not take"),
    ("[quality]\nmodels = ['unet']\n", "[sweep] steps is missing"),
    ("[quality]\nmodels = ['unet']\n[sweep]\nsteps = [2]\n[extra]\n", "unknown table(s) extra"),
    ("[quality]\nmodels = 'unet'\n[sweep]\nsteps = [2]\n", "non-empty list of model names"),
    ("[quality]\nmodels = ['unet']\n[sweep]\nsteps = [2]\n[overrides]\ncunet = { width = 4 }\n",
     "not among [quality] models"),
    ("[quality]\nmodels = ['unet']\n[sweep]\nsteps = [5, 5]\n", "list of distinct integers"),
    ("[quality]\nmodels = ['unet']\n[sweep]\nsteps = []\n", "[sweep] steps must be a non-empty list"),
    ("[quality]\nmodels = ['unet']\n[sweep]\nsteps = [5]\nsamplers = ['ddpm', 'unipc']\n"
     "sampler_steps = { unipc = [5, 0] }\n", "[sweep] sampler_steps.unipc must be"),
    ("[quality]\nmodels = ['unet']\n[sweep]\nsteps = [5]\nsamplers = ['ddpm', 'unipc']\n"
     "sampler_steps = { unipc = [10, 10] }\n", "distinct integers"),
    ("[quality]\nmodels = ['unet']\n[train]\ntimesteps = 50\n[sweep]\nsteps = [5]\n"
     "samplers = ['ddpm', 'unipc']\nsampler_steps = { unipc = [25, 60] }\n",
     "[sweep] sampler_steps.unipc has 60, more than the chain's T = 50 steps"),
    ("[quality]\nmodels = ['unet']\n[train]\ntimesteps = 50\n[sweep]\nsteps = [51]\n",
     "[sweep] steps has 51, more than the chain's T = 50"),
    ("[quality]\nmodels = ['unet']\n[train]\ntimesteps = 10\n[sweep]\nsteps = [5]\n"
     "likelihood_timesteps = 6\n", "likelihood bands must be an integer from 1 to T / 2 = 5"),
    ("[quality]\nmodels = ['unet']\n[train]\ntimesteps = 'many'\n[sweep]\nsteps = [5]\n",
     "[train] timesteps must be an integer >= 2, got 'many'"),
])
def test_bad_quality_profile_files_are_one_line(tmp_path, capsys, text, message):
    from bench.cli import main

    config = tmp_path / "q.toml"
    config.write_text(text)
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists()


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
    """Run in parts (`--train-seeds 0`, then `--train-seeds 1`, then the whole), as a long
    profile may be: the first training is timed and makes the untrained references; a later part
    (which trains seed 1 afresh) neither times its own training nor drops the first one's timing;
    the whole run then finds every cell done and holds what one run would."""
    profile = get_profile("smoke")
    part = run_quality_profile(only_train_seeds(profile, "0"), tmp_path / "results")
    first_part = read_measurements(part)
    assert set(first_part.loc[first_part["metric"] == "fid", "train_seed"].dropna()) == {0}
    timed = first_part[first_part["metric"] == "time_per_sample_s"]
    assert len(timed) > 0 and (first_part["checkpoint"] == "untrained").any()
    run_quality_profile(only_train_seeds(profile, "1"), tmp_path / "results")
    second_part = read_measurements(part)
    assert set(second_part.loc[second_part["metric"] == "fid", "train_seed"].dropna()) == {0, 1}
    again = second_part[second_part["metric"] == "time_per_sample_s"]
    assert len(again) == len(timed) and set(again["train_seed"]) == {0}  # kept, not redone
    results = run_quality_profile("smoke", tmp_path / "results")
    frame = read_measurements(results)
    assert set(frame["status"]) == {"ok"}

    fid = frame[frame["metric"] == "fid"]
    trained = fid[fid["checkpoint"].str.startswith("checkpoints/")]
    sweep = profile.sweep
    grid = sum(len(sweep.steps_for(sampler)) for sampler in sweep.samplers)
    assert len(trained) == (len(profile.models) * grid * len(sweep.seeds) * len(profile.trainings()))
    assert set(trained.loc[trained["sampler"] == "dpmsolver++", "steps"]) == {3}
    assert set(trained["train_seed"]) == {0, 1}
    assert set(trained["feature_extractor"]) == {"digits-classifier"}
    assert set(trained["n"]) == {sweep.n}
    assert len(fid[fid["checkpoint"] == "untrained"]) == len(profile.models)
    floor = fid[fid["model"] == "real-data"]
    assert len(floor) == len(sweep.seeds) and (floor["value"] > 0).all()
    for metric in ("fid_inf", "kid_mean", "kid_std", "sweep_wall_per_image_s", "time_per_sample_s",
                   "train_loss", "bits_per_dim", "denoise_mse_x0", "classifier_accuracy"):
        assert (frame["metric"] == metric).any(), metric
    kid = frame[frame["metric"].str.startswith("kid")]
    assert kid["method"].str.contains("subsets of 12").all()  # below n, a real sampling spread
    timed = frame[frame["metric"] == "time_per_sample_s"]
    assert set(timed["train_seed"]) == {0}  # each model is timed once, on its first training
    assert len(timed[timed["stat"] == "median"]) == len(profile.models) * grid
    calls = frame[frame["metric"] == "denoiser_calls"]
    assert len(calls) == len(profile.models) * grid and (calls["value"] == calls["steps"]).all()
    flops = frame[frame["metric"] == "flops_torch"]
    assert len(flops) == len(profile.models) and (flops["value"] > 0).all()
    bits = frame[(frame["metric"] == "bits_per_dim") & (frame["stat"] == "mean")]
    assert len(bits) == len(profile.models) * 2 and (bits["value"] > 0).all()
    assert set(bits["n"]) == {64}
    assert (results / "environment.json").is_file()
    assert sorted(p.name for p in (results / "training").iterdir()) == [
        "mnist5k-cunet-film-train0.csv", "mnist5k-cunet-film-train1.csv",
        "mnist5k-unet-train0.csv", "mnist5k-unet-train1.csv"]

    reports = write_quality_reports(results, tmp_path / "reports")
    names = {p.name for p in reports}
    assert {"table1.md", "table1.tex", "fid_vs_steps.png", "samples_unet.png",
            "samples_cunet-film.png", "comparisons.md", "likelihood.md",
            "denoise_mse_vs_noise.png"} <= names
    table = (tmp_path / "reports" / "table1.md").read_text()
    assert "FID (digits-classifier features)" in table and "| best FID |" not in table
    assert "across 2 training seeds" in table

    # Running again finds every cell finished: nothing is re-measured.
    rows = len(frame)
    run_quality_profile("smoke", results)
    assert len(read_measurements(results)) == rows

    # A longer budget for one model continues its training, and only its sweep is redone.
    from dataclasses import replace

    longer = replace(profile, models=tuple(m for m in profile.models if m.name == "unet"),
                     train=replace(profile.train, steps=profile.train.steps + 2))
    run_quality_profile(longer, results)
    again = read_measurements(results)
    assert len(again) == rows
    trained = again[(again["metric"] == "fid") & again["checkpoint"].str.startswith("checkpoints/")]
    longer_steps = trained["checkpoint"].str.endswith(f"step_{profile.train.steps + 2:07d}.pt")
    assert longer_steps[trained["model"] == "unet"].all()
    assert not longer_steps[trained["model"] == "cunet-film"].any()  # left as it was


@pytest.mark.slow
def test_smoke_profile_under_torchrun(tmp_path):
    """Every rank calls run_quality_profile; the (model, training seed) units are dealt to the
    ranks, each trains and scores its own alone, rank 0 merges the rows and times the models:
    the same scores as one process."""
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
    assert "[rank 1]" in done.stdout
    frame = read_measurements(tmp_path / "results")
    assert set(frame["status"]) == {"ok"}
    assert (frame["metric"] == "fid").sum() == 2 * 2 * 2 * 2 * 2 + 2 + 2
    assert not list((tmp_path / "results").glob(".measurements.rank*"))  # merged

    alone = read_measurements(run_quality_profile("smoke", tmp_path / "alone"))
    scores = ["fid", "fid_inf", "kid_mean", "bits_per_dim"]

    def values(data):
        data = data[data["metric"].isin(scores)]
        return data.set_index(["cell", "metric", "stat"])["value"].sort_index()

    import pandas as pd

    pd.testing.assert_series_equal(values(frame), values(alone), check_exact=False, rtol=1e-5)


def test_an_unknown_sampler_is_refused_before_anything_runs() -> None:
    import pytest

    from bench.errors import UsageError
    from bench.quality.sweep import SweepSettings

    with pytest.raises(UsageError, match="unknown sampler.*euler-maruyama"):
        SweepSettings(steps=(5,), samplers=("ddpm", "euler-maruyama"))


@pytest.mark.parametrize("text, message", [
    ("x", "give distinct training seeds"), ("3", "from 0, 1"), ("1,1", "distinct"), ("", "distinct"),
])
def test_train_seeds_of_a_run_in_parts_are_checked(text, message):
    with pytest.raises(UsageError, match=message):
        only_train_seeds(get_profile("smoke"), text)
    part = only_train_seeds(get_profile("mnist"), "2,1")
    assert part.trainings() == (0, 1, 2) and part.trainings_now() == (1, 2)  # keys keep every seed
    with pytest.raises(UsageError, match="has no \\[quality\\] train_seeds"):
        only_train_seeds(get_profile("digits"), "0")
