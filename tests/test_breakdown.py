"""`python -m bench breakdown` (and its deprecated alias `profile`) and the matrix's torch.profiler
metric: per-block shares that add up to 100 %, kinds of work that add up to the call, CSV + trace +
plot written, bad input in one line, old (`profile_*`) rows read like new ones."""

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
    out = tmp_path_factory.mktemp("breakdown")
    assert main(["breakdown", "--model", "unet", "--model", "cunet", "--model-arg", "width=8",
                 "--resolution", "32", "--calls", "2", "--warmup", "1", "--threads", "1",
                 "--out", str(out)]) == 0
    return out


def test_breakdown_writes_csv_trace_and_plot(profiled: Path, capsys) -> None:
    assert {p.name for p in profiled.iterdir()} >= {"breakdown.csv", "breakdown.png",
                                                    "trace-unet.json", "trace-cunet.json"}
    trace = json.loads((profiled / "trace-cunet.json").read_text())
    names = {event.get("name") for event in trace["traceEvents"]}
    assert "block:enc1 ODE function" in names and "denoiser call" in names
    rows = pd.read_csv(profiled / "breakdown.csv")
    for column in ("device", "batch_size", "resolution", "dtype", "mode", "threads", "git_commit"):
        assert column in rows.columns


def test_block_shares_add_up_and_name_the_blocks(profiled: Path) -> None:
    rows = pd.read_csv(profiled / "breakdown.csv")
    for _model, mine in rows.groupby("model"):
        shares = mine[mine["metric"] == "breakdown_block_pct"]
        assert shares["value"].sum() == pytest.approx(100.0, abs=0.01)
        call = mine[mine["metric"] == "breakdown_call_ms"]["value"].iloc[0]
        kinds = mine[mine["metric"] == "breakdown_kind_ms"]["value"].sum()
        assert kinds == pytest.approx(call, rel=1e-6)
        assert (mine[mine["metric"] == "breakdown_block_ms"]["value"] >= 0).all()
    cunet = set(rows[(rows["model"] == "cunet") & (rows["metric"] == "breakdown_block_pct")]["stat"])
    assert {"enc1 ODE solver", "enc1 ODE function", "enc4 attention", "down1 transition", "head",
            "rest"} <= cunet
    unet = set(rows[(rows["model"] == "unet") & (rows["metric"] == "breakdown_block_pct")]["stat"])
    assert {"down1 resnets", "mid attention", "time embedding", "output"} <= unet
    cunet_kinds = rows[(rows["model"] == "cunet") & (rows["metric"] == "breakdown_kind_ms")]
    assert cunet_kinds.set_index("stat")["value"]["solver bookkeeping"] > 0


def test_a_models_own_blocks_or_its_children() -> None:
    from bench.measure.breakdown import named_blocks

    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.ReLU())
    assert [name for name, _ in named_blocks(plain)] == ["0", "1"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "nonet"], "unknown model 'nonet'"),
    (["--model", "unet", "--mode", "turbo"], "unknown mode"),
    (["--model", "unet", "--model-arg", "width=4.5"], "is not accepted"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, message) -> None:
    assert main(["breakdown", *argv, "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_cuda_without_cuda_and_unwritable_out(tmp_path, capsys) -> None:
    assert main(["breakdown", "--model", "unet", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["breakdown", "--model", "unet", "--model-arg", "width=8", "--out",
                 str(blocker / "p")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_breakdown_as_a_matrix_metric(tmp_path) -> None:
    from bench.matrix.runner import run_matrix
    from bench.report import write_efficiency_reports

    spec = parse_spec({"matrix": {"models": ["unet", "cunet"], "resolutions": [32],
                                  "metrics": ["profile"], "threads": 1},
                       "overrides": {"unet": {"width": 8}, "cunet": {"width": 4}}}, name="t")
    run_matrix(spec, tmp_path, progress=False)
    rows = pd.read_csv(tmp_path / "measurements.csv")
    assert set(rows["model"]) == {"unet", "cunet"} and (rows["status"] == "ok").all()
    for _, mine in rows[rows["metric"] == "breakdown_block_pct"].groupby("model"):
        assert mine["value"].sum() == pytest.approx(100.0, abs=0.01)
    written = write_efficiency_reports(tmp_path, tmp_path / "reports")
    assert {"profile.md", "profile.png"} <= {p.name for p in written}
    text = (tmp_path / "reports" / "profile.md").read_text()
    assert "% ODE function" in text and "profiler's overhead" in text


def test_profile_is_a_deprecated_alias_of_breakdown(tmp_path, capsys) -> None:
    out = tmp_path / "p"
    assert main(["profile", "--model", "unet", "--model-arg", "width=8", "--resolution", "16",
                 "--calls", "1", "--warmup", "0", "--threads", "1", "--out", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deprecated" in err[0] and "python -m bench breakdown" in err[0]
    rows = pd.read_csv(out / "breakdown.csv")
    assert rows["metric"].str.startswith("breakdown_").all()
    assert rows["cell"].str.startswith("breakdown|").all()


def test_rows_written_before_the_rename_read_as_breakdown_rows(profiled: Path) -> None:
    """Committed results hold `profile_*` rows: the report reads them like `breakdown_*` ones."""
    from bench.measure.breakdown import is_breakdown_metric, with_current_names
    from bench.report.breakdown_report import category_frame

    new = pd.read_csv(profiled / "breakdown.csv")
    old = new.assign(metric=new["metric"].str.replace("breakdown_", "profile_", regex=False))
    assert is_breakdown_metric(old["metric"]).all() and is_breakdown_metric(new["metric"]).all()
    assert with_current_names(old).equals(new)
    pd.testing.assert_frame_equal(category_frame(old), category_frame(new))
