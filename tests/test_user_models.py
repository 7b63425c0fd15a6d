"""A denoiser nobody here wrote, from a module outside the repository, goes through the matrix
(counts, memory, latency round-robin with a preset, time per sample), `bench check` with a baseline
holding it, `bench train` and the FID-vs-steps sweep by a factory reference; bad factories are one
line with exit 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.measure import instructions

MODULE = textwrap.dedent('''
    import torch
    from torch import nn


    class TinyDenoiser(nn.Module):
        def __init__(self, width=8, channels=3):
            super().__init__()
            self.inp = nn.Conv2d(channels, width, 3, padding=1)
            self.time = nn.Embedding(1000, width)
            self.out = nn.Conv2d(width, channels, 3, padding=1)

        def forward(self, x, t):
            return self.out(torch.nn.functional.silu(self.inp(x) + self.time(t)[:, :, None, None]))


    def make(width=8, channels=3):
        return TinyDenoiser(width, channels)


    class Continuous(TinyDenoiser):
        """Reports ODE evaluations (two Euler steps of its conv), but names no ODE functions."""

        def forward(self, x, t):
            for _ in range(2):
                x = x + 0.5 * super().forward(x, t)
            return x

        def last_nfe(self):
            return {"flow": 2, "total": 2}


    def make_continuous(width=8, channels=3):
        return Continuous(width, channels)


    def wrong_shape():
        class Bad(nn.Module):
            def forward(self, x, t):
                return x[:, :1]
        return Bad()


    def not_a_module():
        return lambda x, t: x


    def raises():
        raise RuntimeError("weights not found")
''')

MATRIX = '''
[matrix]
models = ["unet", "mynet"]
resolutions = [32]
metrics = ["params", "macs_thop", "macs_fvcore", "flops_torch", "nfe", "checkpoint_mib",
           "peak_infer_mib", "latency_ms", "sample_time_s"]
threads = 1
[models.mynet]
factory = "{factory}"
{kwargs}
[overrides]
unet = {{ width = 8 }}
[latency]
warmup = 1
calls_per_round = 2
min_rounds = 2
max_rounds = 2
budget_s = 0.0
[sampling]
steps = {{ unet = [2], mynet = [3] }}
repeats = 1
'''


@pytest.fixture()
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory outside the repository holding the user's module."""
    (tmp_path / "mynets_mod.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _config(where: Path, factory: str, kwargs: str = "") -> Path:
    path = where / "m.toml"
    path.write_text(MATRIX.format(factory=factory, kwargs=kwargs))
    return path


def test_a_user_model_through_the_matrix(outside: Path) -> None:
    config = _config(outside, "mynets_mod:make", "kwargs = { width = 16 }")
    assert main(["run", "--config", str(config), "--out", str(outside / "out"), "--no-progress"]) == 0
    rows = pd.read_csv(outside / "out" / "measurements.csv")
    mine = rows[rows["model"] == "mynet"]
    assert (mine["status"] == "ok").all(), mine["error"].tolist()
    got = set(mine["metric"])
    assert {"params", "macs_thop", "macs_fvcore", "flops_torch", "checkpoint_mib", "peak_infer_mib",
            "latency_ms", "latency_ratio", "sample_time_s"} <= got
    assert "nfe" not in got  # it reports no ODE evaluations, so none are measured
    params = mine[mine["metric"] == "params"]["value"].iloc[0]
    assert params == 3 * 16 * 9 + 16 + 1000 * 16 + 16 * 3 * 9 + 3
    latency = rows[rows["metric"] == "latency_ms"]
    assert latency["cell"].nunique() == 1  # timed round-robin with the preset, one cell
    assert '"factory": "mynets_mod:make"' in mine["config"].iloc[0]


@pytest.mark.parametrize(("factory", "message"), [
    ("no_such_module:make", "cannot import no_such_module"),
    ("mynets_mod:missing", "has no callable 'missing'"),
    ("mynets_mod:raises", "raised RuntimeError: weights not found"),
    ("mynets_mod:wrong_shape", "returned (1, 1, 32, 32)"),
    ("mynets_mod:not_a_module", "not a torch.nn.Module"),
    ("mynets_mod", "expected 'package.module:callable'"),
])
def test_bad_factories_are_one_line(outside: Path, capsys, factory: str, message: str) -> None:
    config = _config(outside, factory)
    assert main(["run", "--config", str(config), "--out", str(outside / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (outside / "out").exists()


def test_the_diffusers_ddpm_peer() -> None:
    """google/ddpm-cifar10-32's network through the factory path: its published parameter count,
    x-shaped output at 32 and 64, and one latency cell beside unet."""
    import torch

    from bench.matrix.cells import Cell
    from bench.matrix.measure_cells import measure_latency
    from bench.matrix.spec import parse_spec
    from models.factory import user_model

    net = user_model("models.peers.diffusers_ddpm:ddpm_cifar10", resolution=32)
    assert sum(p.numel() for p in net.parameters()) == 35_746_307
    with torch.no_grad():
        for side in (32, 64):
            assert net.eval()(torch.randn(1, 3, side, side), torch.tensor([999])).shape == (1, 3, side, side)
    spec = parse_spec({
        "matrix": {"models": ["unet", "ddpm"], "resolutions": [32], "metrics": ["latency_ms"],
                   "threads": 1},
        "models": {"ddpm": {"factory": "models.peers.diffusers_ddpm:ddpm_cifar10"}},
        "overrides": {"unet": {"width": 8}},
        "latency": {"warmup": 1, "calls_per_round": 1, "min_rounds": 2, "max_rounds": 2, "budget_s": 0.0},
    }, name="t")
    cell = Cell("latency_ms", ("latency_ms",), "unet+ddpm", resolution=32, batch_size=1,
                members=("unet", "ddpm"))
    rows = pd.DataFrame(measure_latency(spec, cell))
    assert (rows["status"] == "ok").all()
    assert set(rows[rows["metric"] == "latency_ratio"]["model"]) == {"unet", "ddpm"}


def test_a_user_factory_broken_down(outside: Path) -> None:
    assert main(["breakdown", "--model", "mynets_mod:make", "--resolution", "16", "--calls", "2",
                 "--warmup", "1", "--threads", "1", "--out", str(outside / "p")]) == 0
    rows = pd.read_csv(outside / "p" / "breakdown.csv")
    shares = rows[rows["metric"] == "breakdown_block_pct"]
    assert set(shares["stat"]) == {"inp", "time", "out", "rest"}  # its top-level children
    assert shares["value"].sum() == pytest.approx(100.0, abs=0.01)


def test_a_user_model_trained_then_swept(outside: Path) -> None:
    """`train --model FACTORY` on digits (the factory's `channels` parameter gets 1), its checkpoint
    rebuilding the user's network, then the smoke profile's 2- and 5-step FID sweep of it."""
    from bench.train.checkpoints import latest_checkpoint, load_for_sampling

    assert main(["train", "--model", "mynets_mod:make", "--model-arg", "width=4", "--dataset",
                 "digits", "--steps", "3", "--batch-size", "8", "--no-progress", "--out",
                 str(outside / "tr")]) == 0
    model, _, meta = load_for_sampling(latest_checkpoint(outside / "tr"))
    assert meta["spec"]["model_config"] == {"factory": "mynets_mod:make",
                                            "kwargs": {"channels": 1, "width": 4}}
    assert type(model).__name__ == "TinyDenoiser" and model.inp.in_channels == 1
    assert main(["run", "--profile", "smoke", "--model", "mynets_mod:make", "--model-arg", "width=4",
                 "--out", str(outside / "q")]) == 0
    rows = pd.read_csv(outside / "q" / "measurements.csv")
    fid = rows[(rows["model"] == "mynets_mod:make") & (rows["metric"] == "fid")
               & (rows["checkpoint"] != "untrained")]
    assert set(fid["steps"]) == {2, 3, 5} and (fid["status"] == "ok").all()
    # the profile's own models left out; the feature classifier's accuracy is a row of its own
    assert set(rows["model"]) <= {"mynets_mod:make", "real-data", "digits-classifier"}
    assert (outside / "q" / "reports" / "samples_mynets_mod_make.png").is_file()


def test_run_model_replaces_the_matrix_models(outside: Path) -> None:
    config = _config(outside, "mynets_mod:make")
    assert main(["run", "--config", str(config), "--model", "mynets_mod:make", "--model-arg",
                 "width=5", "--out", str(outside / "out"), "--no-progress"]) == 0
    rows = pd.read_csv(outside / "out" / "measurements.csv")
    assert set(rows["model"]) == {"mynets_mod:make"}
    params = rows[rows["metric"] == "params"]["value"].iloc[0]
    assert params == 3 * 5 * 9 + 5 + 1000 * 5 + 5 * 3 * 9 + 3


def test_check_with_a_user_model_in_the_baseline(outside: Path, capsys) -> None:
    """Counts and latency of a user's model in the gate. Its instruction count is left to the slow
    test below: a valgrind process imports torch for about 60 s on a 2-core runner before it
    counts anything (tests/test_gate_ci.py counts every preset's in the default run)."""
    baseline = str(outside / "baseline.csv")
    common = ["--baseline", baseline, "--override", "unet:width=8", "--rounds", "2",
              "--skip-instructions"]
    assert main(["check", "--update", "--models", "unet,mynets_mod:make", *common]) == 0
    stored = pd.read_csv(baseline)
    assert set(stored["model"]) == {"unet", "mynets_mod:make"}
    assert {"params", "latency_ratio"} <= set(stored.loc[stored["model"] == "mynets_mod:make",
                                                         "metric"])
    assert main(["check", "--skip-latency", *common]) == 0  # the counts match
    capsys.readouterr()
    # the user's model changed (another width): its counts no longer match, the gate says so
    assert main(["check", "--skip-latency", *common, "--skip-instructions",
                 "--override", "mynets_mod:make:width=9"]) == 1
    out = capsys.readouterr().out
    assert "mynets_mod:make" in out and "params" in out


@pytest.mark.slow
def test_check_counts_a_user_models_instructions(outside: Path, capsys) -> None:
    """The valgrind child imports the user's module from the working directory and counts it."""
    if instructions.unavailable():
        pytest.skip(instructions.unavailable())
    baseline = str(outside / "baseline.csv")
    common = ["--baseline", baseline, "--skip-latency"]
    assert main(["check", "--update", "--models", "mynets_mod:make", *common]) == 0
    stored = pd.read_csv(baseline)
    counted = stored[(stored["model"] == "mynets_mod:make") & (stored["metric"] == "instructions")]
    assert (counted["stat"] == "value").sum() == 1 and (counted["value"] > 0).all()
    assert counted["stat"].str.startswith("function ").any()
    assert main(["check", *common]) == 0  # counted again: within the instruction tolerance
    assert "instructions" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["train", "--model", "mynets_mod:wrong_shape", "--steps", "1", "--channels", "3"],
    ["train", "--model", "mynets_mod:wrong_shape", "--steps", "1"],  # fits 1 channel, no weights
    ["train", "--model", "no_such_module:make", "--steps", "1"],
    ["run", "--profile", "smoke", "--model", "mynets_mod:raises"],
    ["run", "--profile", "smoke", "--model", "nonsense"],
    ["check", "--models", "nonsense", "--skip-latency"],
])
def test_bad_models_on_the_command_line_are_one_line(outside: Path, capsys, argv: list[str]) -> None:
    assert main([*argv, "--out" if argv[0] != "check" else "--baseline",
                 str(outside / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert not (outside / "o").exists() or not any((outside / "o").iterdir())  # nothing written


def test_a_user_model_reporting_nfe(outside: Path) -> None:
    """The suite asks the model: `last_nfe()` makes nfe rows; without `ode_functions()` there is no
    macs_per_eval row, and nothing fails."""
    config = _config(outside, "mynets_mod:make_continuous")
    assert main(["run", "--config", str(config), "--model", "mynets_mod:make_continuous",
                 "--out", str(outside / "out"), "--no-progress"]) == 0
    rows = pd.read_csv(outside / "out" / "measurements.csv")
    assert (rows["status"] == "ok").all(), rows["error"].dropna().tolist()
    nfe = rows[(rows["metric"] == "nfe") & (rows["stat"] == "value")]
    assert list(nfe["value"]) == [2]
    assert "macs_per_eval" not in set(rows["metric"])


def test_the_matrix_source_stays_the_toml_path(outside: Path) -> None:
    """(A model check inside parse_spec once overwrote the spec's `source`.)"""
    from bench.matrix import load_spec

    config = _config(outside, "mynets_mod:make")
    assert load_spec(config=config).source == str(config)


def test_model_args_apply_to_every_model_and_tables_of_others_are_cut() -> None:
    from bench.matrix import load_spec
    from bench.matrix.spec import parse_spec, with_models

    spec = load_spec("quick", models_override=["unet", "cunet"], model_args={"width": 8})
    assert spec.overrides["unet"]["width"] == 8 and spec.overrides["cunet"]["width"] == 8
    raw = {"matrix": {"models": ["unet", "cn"], "metrics": ["params"], "threads": 1},
           "models": {"cn": {"preset": "cunet"}}, "overrides": {"cn": {"width": 8}}}
    assert parse_spec(with_models(raw, ["unet"], {}), name="t").models == ["unet"]


def test_resume_measures_again_when_the_model_configuration_changed(outside: Path, capsys) -> None:
    config = _config(outside, "mynets_mod:make")
    out = str(outside / "out")

    def params(width: int) -> float:
        assert main(["run", "--config", str(config), "--model", "mynets_mod:make", "--model-arg",
                     f"width={width}", "--out", out, "--no-progress"]) == 0
        rows = pd.read_csv(outside / "out" / "measurements.csv")
        return rows[rows["metric"] == "params"]["value"].tolist()

    assert params(5) == [3 * 5 * 9 + 5 + 1000 * 5 + 5 * 3 * 9 + 3]
    capsys.readouterr()
    assert params(6) == [3 * 6 * 9 + 6 + 1000 * 6 + 6 * 3 * 9 + 3]  # not the width-5 rows resumed
    assert "measured again: their model's configuration differs" in capsys.readouterr().out
