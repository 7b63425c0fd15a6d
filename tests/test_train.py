"""Training: loss falls, exact resume after an interruption, corrupt checkpoints, NaN stop, bad input."""

from __future__ import annotations

import math

import pytest
import torch

import models
from bench.checkpoint import load_checkpoint
from bench.cli import main
from bench.errors import UsageError
from bench.measure.train_step import make_optimizer, train_step
from bench.train import TrainConfig, TrainingDiverged, load_for_sampling, train
from bench.train.checkpoints import list_checkpoints
from bench.train.data import StepBatches
from bench.train.losslog import read_loss_log
from models.diffusion import GaussianDiffusion

TINY_UNET = {"width": 8, "attn_heads": 1, "attn_dim_head": 8}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train fastest (and bit-reproducibly) on one thread of a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(out, **changes) -> TrainConfig:
    settings = dict(model="unet", dataset="digits", out=out, resolution=16, width=8,
                    overrides={"attn_heads": 1, "attn_dim_head": 8}, steps=4, batch_size=8,
                    lr=1e-3, ema_decay=0.9, checkpoint_every=2, log_every=1, limit=64,
                    device="cpu", progress=False)
    settings.update(changes)
    return TrainConfig(**settings)


def weights(path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path)
    return {**{f"model.{k}": v for k, v in state["model"].items()},
            **{f"ema.{k}": v for k, v in state["ema"].items()}}


# ----------------------------------------------------------------------------- learning


def _digits_batch(resolution: int, count: int = 8) -> torch.Tensor:
    from bench.data import load_dataset

    images, _ = load_dataset("digits", root=None, resolution=resolution, limit=count).stack()
    return images


@pytest.mark.parametrize(("name", "overrides", "resolution"), [
    ("unet", TINY_UNET, 16),
    ("cunet-film", {"width": 2, "attn_heads": 1, "attn_dim_head": 8}, 32),
])
def test_loss_falls_on_a_fixed_batch(name, overrides, resolution):
    """50 Adam steps on one batch must bring the eps-loss on held-fixed (t, noise) well below 1,
    the loss of always predicting zero; a broken loop (no step, wrong target) stays above it."""
    x0 = _digits_batch(resolution)
    torch.manual_seed(0)
    model = models.build(name, channels=1, **overrides)
    diffusion = GaussianDiffusion()

    def held_out_loss() -> float:
        generator = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return sum(float(diffusion.training_loss(model, x0, generator=generator))
                       for _ in range(4)) / 4

    before = held_out_loss()
    optimizer = make_optimizer(model, 2e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):
        train_step(model, diffusion, optimizer, x0, generator=generator)
    after = held_out_loss()
    assert after < before
    assert after < 0.7, f"{name}: loss {before:.3f} -> {after:.3f}"


# ----------------------------------------------------------------------------- data order


def test_batches_depend_only_on_seed_step_and_rank():
    whole = StepBatches(50, batch_per_rank=8, rank=0, world_size=1, seed=3, start=0, stop=12)
    later = StepBatches(50, batch_per_rank=8, rank=0, world_size=1, seed=3, start=7, stop=12)
    assert list(whole)[7:] == list(later)
    ranks = [list(StepBatches(50, batch_per_rank=4, rank=r, world_size=2, seed=3, start=0,
                              stop=6)) for r in (0, 1)]
    for a, b in zip(*ranks, strict=True):
        assert not set(a) & set(b)  # the two ranks never see the same image in a step


def test_too_small_dataset_is_a_usage_error():
    with pytest.raises(UsageError, match="too few"):
        StepBatches(5, batch_per_rank=8, rank=0, world_size=1, seed=0, start=0, stop=1)


# ----------------------------------------------------------------------------- checkpoints


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    straight = train(tiny(tmp_path / "straight"))
    assert straight.step == 4 and straight.resumed_from is None

    import bench.train.loop as loop

    calls = {"n": 0}
    real_step = loop.train_step

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # after the step-2 checkpoint, inside step 3
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path / "resumed"))
    assert [s for s, _ in list_checkpoints(tmp_path / "resumed")] == [2]
    monkeypatch.setattr(loop, "train_step", real_step)

    resumed = train(tiny(tmp_path / "resumed"))
    assert resumed.resumed_from == 2 and resumed.step == 4
    a, b = weights(straight.checkpoint), weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [row["step"] for row in read_loss_log(tmp_path / "resumed")] == [1, 2, 3, 4]

    # A finished run is found finished; more steps continue it.
    again = train(tiny(tmp_path / "resumed"))
    assert again.step == 4 and again.resumed_from == 4
    longer = train(tiny(tmp_path / "resumed", steps=6))
    assert longer.step == 6 and load_checkpoint(longer.checkpoint)["step"] == 6


def test_checkpoint_holds_the_suite_format_and_samples(tmp_path):
    result = train(tiny(tmp_path / "run", steps=2))
    state = load_checkpoint(result.checkpoint)
    assert state["step"] == 2
    assert state["meta"]["spec"]["model"] == "unet"
    assert "betas" in state["schedule"]
    model, diffusion, meta = load_for_sampling(result.checkpoint)
    assert meta["step"] == 2 and not model.training
    with torch.no_grad():
        out = model(torch.zeros(2, 1, 16, 16), torch.tensor([0, 999]))
    assert out.shape == (2, 1, 16, 16)


def test_corrupt_checkpoint_is_an_error_not_a_fresh_start(tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny(out, steps=2))
    newest = list_checkpoints(out)[-1][1]
    newest.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UsageError, match="corrupt checkpoint .*step_0000002.pt"):
        train(tiny(out, steps=4))
    assert [s for s, _ in list_checkpoints(out)] == [2]  # nothing new was written
    assert newest.read_bytes() == b"not a checkpoint at all"

    code = main(["train", "--model", "unet", "--dataset", "digits", "--resolution", "16",
                 "--width", "8", "--model-arg", "attn_heads=1", "--model-arg", "attn_dim_head=8",
                 "--steps", "4", "--batch-size", "8", "--limit", "64", "--out", str(out),
                 "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "corrupt checkpoint" in err


def test_checkpoint_of_another_run_is_refused(tmp_path):
    out = tmp_path / "run"
    train(tiny(out, steps=2))
    with pytest.raises(UsageError, match="different run"):
        train(tiny(out, steps=4, width=16))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_loss = GaussianDiffusion.training_loss
    calls = {"n": 0}

    def poisoned(self, model, x0, **kwargs):
        calls["n"] += 1
        loss = real_loss(self, model, x0, **kwargs)
        return loss * math.nan if calls["n"] == 3 else loss

    monkeypatch.setattr(GaussianDiffusion, "training_loss", poisoned)
    with pytest.raises(TrainingDiverged) as caught:
        train(tiny(out, steps=6))
    message = str(caught.value)
    assert "step 3" in message and "nan" in message.lower()
    assert "step_0000002.pt" in message
    assert [s for s, _ in list_checkpoints(out)] == [2]
    state = load_checkpoint(out / "step_0000002.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_cli_reports_divergence_on_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(GaussianDiffusion, "training_loss",
                        lambda self, model, x0, **kw: torch.tensor(math.inf, requires_grad=True))
    code = main(["train", "--model", "unet", "--dataset", "digits", "--resolution", "16",
                 "--width", "8", "--steps", "2", "--batch-size", "8", "--limit", "16",
                 "--out", str(tmp_path / "run"), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "training stopped at step 1" in err


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("argv", "expected"), [
    (["--model", "nope", "--dataset", "digits"], "unknown model 'nope'"),
    (["--model", "unet", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--model", "unet", "--dataset", "mnist", "--data-root", "/nonexistent/mnist"],
     "does not exist"),
    (["--model", "unet", "--dataset", "digits", "--steps", "0"], "steps must be"),
    (["--model", "unet", "--dataset", "digits", "--prediction", "x0"], "unknown prediction"),
    (["--model", "unet", "--dataset", "digits", "--model-arg", "depth"], "KEY=VALUE"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, expected):
    code = main(["train", *argv, "--out", str(tmp_path / "run"), "--device", "cpu",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and expected in err
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_rebuilds_its_own_configuration_after_the_preset_changes(tmp_path, monkeypatch):
    import dataclasses

    from models.registry import PRESETS, Preset

    result = train(tiny(tmp_path / "run", steps=2))
    model, _, meta = load_for_sampling(result.checkpoint)
    assert meta["spec"]["model_config"]["family"] == "UNetConfig"
    before = sum(p.numel() for p in model.parameters())
    # the preset changes (one level fewer): the checkpoint still loads as the network it was made for
    changed = dataclasses.replace(PRESETS["unet"].config, dim_mults=(1, 2, 4),
                                  full_attention=(False, False, True))
    monkeypatch.setitem(PRESETS, "unet", Preset(changed, "changed"))
    model, _, _ = load_for_sampling(result.checkpoint)
    assert sum(p.numel() for p in model.parameters()) == before
    # an older checkpoint without the stored configuration fails in one line, never silently
    state = torch.load(result.checkpoint, weights_only=False)
    del state["meta"]["spec"]["model_config"]
    old = tmp_path / "old.pt"
    torch.save(state, old)
    with pytest.raises(UsageError, match="does not fit the network it describes"):
        load_for_sampling(old)


def test_a_checkpoint_written_before_model_config_had_its_preset_name_resumes() -> None:
    """Checkpoints of earlier versions stored model_config without 'preset' and lists where today's
    spec has tuples: the same run, so it resumes; another field value is still refused."""
    from bench.train.checkpoints import check_same_run
    from bench.train.loop import run_spec

    spec = run_spec(TrainConfig("unet", **{"width": 8, "overrides": {"attn_heads": 1}}), 1, 16)
    older = {**spec, "model_config": {k: list(v) if isinstance(v, tuple) else v
                                      for k, v in spec["model_config"].items() if k != "preset"}}
    check_same_run({"meta": {"spec": older}, "path": "old.pt"}, spec)
    other = {**older, "model_config": {**older["model_config"], "dim": 16}}
    with pytest.raises(UsageError, match="belongs to a different run"):
        check_same_run({"meta": {"spec": other}, "path": "old.pt"}, spec)
