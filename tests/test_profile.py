"""`python -m bench profile` and the matrix metric `profile`: per-block shares that add up to
100 %, kinds of work that add up to the call, CSV + trace + plot written, bad input in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.matrix.spec import parse_spec


@pytest.fixture(scope="module")
def profiled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("profile")
    assert main(["profile", "--model", "unet", "--model", "cunet", "--model-arg", "width=8",
                 "--resolution", "32", "--calls", "2", "--warmup", "1", "--threads", "1",
                 "--out", str(out)]) == 0
    return out


def test_profile_writes_csv_trace_and_plot(profiled: Path, capsys) -> None:
    assert {p.name for p in profiled.iterdir()} >= {"profile.csv", "profile.png", "trace-unet.json",
                                                    "trace-cunet.json"}
    trace = json.loads((profiled / "trace-cunet.json").read_text())
    names = {event.get("name") for event in trace["traceEvents"]}
    assert "block:enc1 ODE function" in names and "denoiser call" in names
    rows = pd.read_csv(profiled / "profile.csv")
    for column in ("device", "batch_size", "resolution", "dtype", "mode", "threads", "git_commit"):
        assert column in rows.columns


def test_block_shares_add_up_and_name_the_blocks(profiled: Path) -> None:
    rows = pd.read_csv(profiled / "profile.csv")
    for _model, mine in rows.groupby("model"):
        shares = mine[mine["metric"] == "profile_block_pct"]
        assert shares["value"].sum() == pytest.approx(100.0, abs=0.01)
        call = mine[mine["metric"] == "profile_call_ms"]["value"].iloc[0]
        kinds = mine[mine["metric"] == "profile_kind_ms"]["value"].sum()
        assert kinds == pytest.approx(call, rel=1e-6)
        assert (mine[mine["metric"] == "profile_block_ms"]["value"] >= 0).all()
    cunet = set(rows[(rows["model"] == "cunet") & (rows["metric"] == "profile_block_pct")]["stat"])
    assert {"enc1 ODE solver", "enc1 ODE function", "enc4 attention", "down1 transition", "head",
            "rest"} <= cunet
    unet = set(rows[(rows["model"] == "unet") & (rows["metric"] == "profile_block_pct")]["stat"])
    assert {"down1 resnets", "mid attention", "time embedding", "output"} <= unet
    cunet_kinds = rows[(rows["model"] == "cunet") & (rows["metric"] == "profile_kind_ms")]
    assert cunet_kinds.set_index("stat")["value"]["solver bookkeeping"] > 0


def test_a_models_own_blocks_or_its_children() -> None:
    from bench.measure.profiling import profile_blocks

    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.ReLU())
    assert [name for name, _ in profile_blocks(plain)] == ["0", "1"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "nonet"], "unknown model 'nonet'"),
    (["--model", "unet", "--mode", "turbo"], "unknown mode"),
    (["--model", "unet", "--model-arg", "width=4.5"], "is not accepted"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, message) -> None:
    assert main(["profile", *argv, "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_cuda_without_cuda_and_unwritable_out(tmp_path, capsys) -> None:
    assert main(["profile", "--model", "unet", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["profile", "--model", "unet", "--model-arg", "width=8", "--out",
                 str(blocker / "p")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_profile_as_a_matrix_metric(tmp_path) -> None:
    from bench.matrix.runner import run_matrix
    from bench.report import write_efficiency_reports

    spec = parse_spec({"matrix": {"models": ["unet", "cunet"], "resolutions": [32],
                                  "metrics": ["profile"], "threads": 1},
                       "overrides": {"unet": {"width": 8}, "cunet": {"width": 4}}}, name="t")
    run_matrix(spec, tmp_path, progress=False)
    rows = pd.read_csv(tmp_path / "measurements.csv")
    assert set(rows["model"]) == {"unet", "cunet"} and (rows["status"] == "ok").all()
    for _, mine in rows[rows["metric"] == "profile_block_pct"].groupby("model"):
        assert mine["value"].sum() == pytest.approx(100.0, abs=0.01)
    written = write_efficiency_reports(tmp_path, tmp_path / "reports")
    assert {"profile.md", "profile.png"} <= {p.name for p in written}
    text = (tmp_path / "reports" / "profile.md").read_text()
    assert "% ODE function" in text and "profiler's overhead" in text
