"""Tests of bench.report on synthetic measurements written by the tests themselves.

The numbers are made up here (derived from the paper's so the % differences are known), never our
real models' counts, so these tests check the shaping and rendering, not the models.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from bench import paper_data
from bench.errors import UsageError
from bench.report import (
    achieved_data,
    figure4_data,
    latency_data,
    latency_table_data,
    load_results,
    table1_time_data,
    table2_data,
    write_efficiency_reports,
)
from bench.report.figure4 import draw_figure4
from bench.results.store import MeasurementStore

CONTEXT = {"status": "ok", "device": "cpu", "threads": 2, "dtype": "float32", "channels": 3,
           "torch": "2.9.0", "git_commit": "abc1234", "host": "testhost", "profile": "synthetic"}
AT_64 = {"batch_size": 1, "resolution": 64}
MODELS = ["unet", "cunet", "cunet-attn5", "cunet-noattn", "cunet-nores", "cunet-noattn-nores", "tiny-x"]

# Per model, a distinct offset from the paper so each % difference is known and different.
THOP_OFFSET = {model: (i + 1) * 0.37 for i, model in enumerate(MODELS)}
CKPT_OFFSET = {model: -(i + 1) * 0.21 for i, model in enumerate(MODELS)}


def synthetic_params(model: str) -> int:
    return 1_000_003 * (MODELS.index(model) + 2) + 17


def synthetic_sample_time(model: str, steps: int) -> float:
    per_step = {"unet": 0.061, "cunet": 0.043}[model]
    return per_step * steps + 0.002


def synthetic_latency(model: str, batch: int, resolution: int) -> float:
    return (MODELS.index(model) + 1) * 3.0 * batch ** 0.9 * (resolution / 64) ** 2


def row(model: str, metric: str, value: float | None, unit: str, **extra: object) -> dict[str, object]:
    return {**CONTEXT, "model": model, "metric": metric, "value": value, "unit": unit,
            "stat": "value", "cell": f"{model}/{metric}", **extra}


def paper_reference(model: str) -> tuple[float, float] | None:
    """(gflops, mb) of the paper's Table 2 row measured on our preset `model`, if any."""
    table = paper_data.table2()
    by_preset = {paper_data.TABLE2_PRESET[r.model]: (r.gflops, r.mb) for r in table.itertuples()}
    return by_preset.get(model)


def full_rows() -> list[dict[str, object]]:
    rows = []
    for model in MODELS:
        reference = paper_reference(model) or (2.0, 100.0)
        thop = reference[0] * 1e9 * (1 + THOP_OFFSET[model] / 100)
        rows += [
            row(model, "params", synthetic_params(model), "count", **AT_64),
            row(model, "macs_thop", thop, "MACs", counter="thop", **AT_64),
            row(model, "macs_fvcore", thop * 1.2, "MACs", counter="fvcore", **AT_64),
            row(model, "flops_torch", thop * 2.4, "FLOPs", counter="torch.utils.flop_counter", **AT_64),
            row(model, "nfe", 0 if model == "unet" else 36, "evaluations", **AT_64),
            row(model, "param_mib", synthetic_params(model) * 4 / 2**20, "MiB", **AT_64),
            row(model, "checkpoint_mib", reference[1] * (1 + CKPT_OFFSET[model] / 100), "MiB", **AT_64),
            row(model, "peak_infer_mib", 40.0 + MODELS.index(model), "MiB", method="rss-subprocess", **AT_64),
        ]
        for batch in (1, 2, 4):
            for stat, factor in (("median", 1.0), ("p90", 1.1), ("min", 0.95)):
                rows.append(row(model, "latency_ms", synthetic_latency(model, batch, 64) * factor, "ms",
                                stat=stat, batch_size=batch, resolution=64))
            rows.append(row(model, "latency_ratio", synthetic_latency(model, batch, 64)
                            / synthetic_latency("unet", batch, 64), "x unet", stat="median",
                            batch_size=batch, resolution=64))
        for resolution in (32, 128):
            rows.append(row(model, "latency_ms", synthetic_latency(model, 1, resolution), "ms",
                            stat="median", batch_size=1, resolution=resolution))
    for model, steps_list in (("unet", (30, 100)), ("cunet", (5, 80, 90))):
        for steps in steps_list:
            median = synthetic_sample_time(model, steps)
            for stat, value in (("median", median), ("p90", median * 1.05)):
                rows.append(row(model, "sample_time_s", value, "s", stat=stat, steps=steps,
                                sampler="ddpm", **AT_64))
    rows.append(row("machine", "peak_gflops", 250.0, "GFLOP/s", stat="median"))
    return rows


def write_run(directory: Path, rows: list[dict[str, object]], environment: bool = True) -> Path:
    MeasurementStore(directory).add(rows)
    if environment:
        (directory / "environment.json").write_text(json.dumps(
            {"host": "testhost", "torch": "2.9.0", "threads": 2, "cpu": {"model": "Synthetic CPU"},
             "wall_time_s": 12.5}))
    return directory


def table_rows(markdown: str) -> dict[str, list[str]]:
    """First cell -> cells of each Markdown table row (header and rule lines skipped)."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("|:") and not line.startswith("|-"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows.setdefault(cells[0], cells)
    return rows


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    results = write_run(tmp_path_factory.mktemp("results"), full_rows())
    out = results / "reports"
    return results, write_efficiency_reports(results, out)


def test_writes_every_report(full_run: tuple[Path, list[Path]]) -> None:
    results, paths = full_run
    names = {p.name for p in paths}
    expected = {"table2.md", "table2.tex", "table2.csv", "figure4.png", "figure4.pdf", "figure4.csv",
                "table1_time.md", "table1_time.csv", "latency_vs_batch.png", "latency_vs_resolution.png",
                "achieved_gflops.png", "latency.csv", "achieved_gflops.csv", "latency.md",
                "latency_table.csv"}
    assert expected <= names
    for path in paths:
        assert path.is_file() and path.stat().st_size > 0, path
        assert path.parent == results / "reports"
    assert (results / "reports" / "figure4.png").read_bytes()[:4] == b"\x89PNG"
    assert (results / "reports" / "figure4.pdf").read_bytes()[:5] == b"%PDF-"
    assert not list((results / "reports").glob(".*.tmp")), "temporary files left behind"


def test_table2_rows_paper_numbers_and_differences(full_run: tuple[Path, list[Path]]) -> None:
    results, _ = full_run
    markdown = (results / "reports" / "table2.md").read_text()
    rows = table_rows(markdown)
    header = rows["model"]
    column = {name: i for i, name in enumerate(header)}
    assert "ours: thop GMACs (paper 'GFLOPS')" in column
    assert "ours: checkpoint MiB (paper 'MB')" in column
    for model in MODELS:
        assert model in rows, f"no row for {model}"
        cells = rows[model]
        reference = paper_reference(model)
        if reference is None:
            assert cells[column["paper 'GFLOPS' (= thop GMACs)"]] == "\u2014"
            continue
        gflops, mb = reference
        assert cells[column["paper 'GFLOPS' (= thop GMACs)"]] == f"{gflops:.2f}"
        assert cells[column["paper 'MB' (= checkpoint MiB)"]] == f"{mb:.1f}"
        ours = gflops * (1 + THOP_OFFSET[model] / 100)
        assert cells[column["ours: thop GMACs (paper 'GFLOPS')"]] == f"{ours:.3f}"
        assert cells[column["\u0394 thop vs paper"]] == f"{THOP_OFFSET[model]:+.2f} %"
        assert cells[column["\u0394 checkpoint vs paper"]] == f"{CKPT_OFFSET[model]:+.2f} %"
        assert cells[column["params (count)"]] == f"{synthetic_params(model):,}"
    # The paper's cU-Net row is matched to the five-attention preset, not to Figure 4's cunet.
    assert rows["cunet-attn5"][column["paper row"]] == "Continuous UNet (cU-Net)"
    assert rows["cunet"][column["paper row"]] == "not in Table 2"
    assert "cunet-attn5" in markdown and "5 attention blocks" in markdown and "2 attention blocks" in markdown
    assert "skips the attention matrix products" in markdown
    assert "device cpu; threads 2" in markdown and "git commit abc1234" in markdown
    assert "host testhost" in markdown and "Synthetic CPU" in markdown  # environment.json shown


def test_table2_data_difference_is_relative_to_paper(full_run: tuple[Path, list[Path]]) -> None:
    results, _ = full_run
    frame = table2_data(load_results(results)).frame.set_index("model")
    for model in ("unet", "cunet-attn5", "cunet-nores"):
        gflops, mb = paper_reference(model)  # type: ignore[misc]
        ours = frame.loc[model, "thop_gmacs"]
        assert frame.loc[model, "thop_diff_pct"] == pytest.approx((ours - gflops) / gflops * 100)
        assert frame.loc[model, "checkpoint_diff_pct"] == pytest.approx(CKPT_OFFSET[model])
    assert math.isnan(frame.loc["cunet", "paper_gflops"])
    assert frame.loc["unet", "peak_infer_method_cpu"] == "rss-subprocess"
    tex = (results / "reports" / "table2.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\%" in tex and "cunet-attn5" in tex
    csv = pd.read_csv(results / "reports" / "table2.csv")
    assert list(csv["model"]) == list(frame.index)


def test_figure4_bars_equal_csv_params(full_run: tuple[Path, list[Path]]) -> None:
    results, _ = full_run
    data = figure4_data(load_results(results)).set_index("model")
    for model in MODELS:
        assert data.loc[model, "params"] == synthetic_params(model)
    paper = paper_data.figure4().set_index("model")["params"]
    assert data.loc["cunet", "paper_params"] == paper["cunet"]  # Figure 4's cU-Net is `cunet`
    assert math.isnan(data.loc["cunet-attn5", "paper_params"])
    figure = draw_figure4(data.reset_index())
    heights = [bar.get_height() for bar in figure.axes[0].patches]
    assert heights == pytest.approx([synthetic_params(m) / 1e6 for m in data.index])


def test_table1_time_ratio(full_run: tuple[Path, list[Path]]) -> None:
    results, _ = full_run
    data = table1_time_data(load_results(results)).set_index("dataset")
    paper = paper_data.table1()
    for dataset in ("MNIST", "CelebA", "LSUN Church"):
        group = paper[paper["dataset"] == dataset].set_index("backbone")
        unet_steps, cunet_steps = int(group.loc["U-Net", "steps"]), int(group.loc["cU-Net", "steps"])
        ours = synthetic_sample_time("cunet", cunet_steps) / synthetic_sample_time("unet", unet_steps)
        assert data.loc[dataset, "unet_median_s"] == pytest.approx(synthetic_sample_time("unet", unet_steps))
        assert data.loc[dataset, "cunet_p90_s"] == pytest.approx(
            synthetic_sample_time("cunet", cunet_steps) * 1.05)
        assert data.loc[dataset, "ratio_ours"] == pytest.approx(ours)
        assert data.loc[dataset, "ratio_paper"] == pytest.approx(
            group.loc["cU-Net", "time_s"] / group.loc["U-Net", "time_s"])
    markdown = (results / "reports" / "table1_time.md").read_text()
    mnist = table_rows(markdown)["MNIST"]
    expected = synthetic_sample_time("cunet", 5) / synthetic_sample_time("unet", 30)
    assert mnist[7] == f"{expected:.2f}" and mnist[8] == f"{0.54 / 3.56:.2f}"
    assert "`unet`" in markdown and "`cunet`" in markdown and "time.time()" in markdown
    assert "## cpu, 2 threads" in markdown


def test_latency_and_achieved_fraction(full_run: tuple[Path, list[Path]]) -> None:
    results, _ = full_run
    loaded = load_results(results)
    latency = latency_data(loaded)
    unet = latency[(latency["model"] == "unet") & (latency["resolution"] == 64)].set_index("batch_size")
    assert unet.loc[4, "median_ms"] == pytest.approx(synthetic_latency("unet", 4, 64))
    assert unet.loc[4, "p90_ms"] == pytest.approx(synthetic_latency("unet", 4, 64) * 1.1)
    achieved = achieved_data(loaded, latency)
    point = achieved[(achieved["model"] == "cunet") & (achieved["batch_size"] == 2)].iloc[0]
    # `cunet` has no Table 2 row, so full_rows gave it thop = 2.0 G (+ offset) and torch = 2.4 x thop.
    thop = 2.0 * 1e9 * (1 + THOP_OFFSET["cunet"] / 100)
    expected = thop * 2.4 * 2 / (synthetic_latency("cunet", 2, 64) / 1e3) / 1e9
    assert point["achieved_gflops"] == pytest.approx(expected)
    assert point["fraction_of_peak"] == pytest.approx(expected / 250.0)
    # No flops_torch at 32 or 128 pixels: those latency points have no achieved rate.
    assert set(achieved["resolution"]) == {64}


def test_latency_table_has_same_run_ratios_and_the_authors_latency(
        full_run: tuple[Path, list[Path]]) -> None:
    results, _ = full_run
    data = latency_table_data(load_results(results))
    at_paper = data[(data["batch_size"] == 1) & (data["resolution"] == 64)].set_index("model")
    assert at_paper.loc["cunet", "ratio"] == pytest.approx(2.0)
    assert at_paper.loc["cunet", "ratio_to"] == "unet"
    assert at_paper.loc["unet", "authors_ratio"] == 1.0
    assert at_paper.loc["cunet", "authors_ratio"] == pytest.approx(39 / 60)
    assert at_paper.loc["cunet-attn5", "authors_ratio"] == pytest.approx(69 / 60)
    # The authors' numbers are batch 1 at 64x64 on a CPU: nothing to compare elsewhere.
    elsewhere = data[(data["batch_size"] == 4) | (data["resolution"] != 64)]
    assert elsewhere["authors_ratio"].isna().all() and len(elsewhere) > 0
    # No cross-run absolute comparison anywhere: our ms are never divided by the authors' ms.
    assert not {"authors_ms", "ours_over_authors"} & set(data.columns)
    markdown = (results / "reports" / "latency.md").read_text()
    assert "ours / authors" not in markdown and "never our milliseconds with theirs" in markdown
    assert "round-robin" in markdown and "2.000 x unet" in markdown
    assert "## cpu, float32, 2 threads" in markdown


def test_partial_and_failed_data_say_not_measured(tmp_path: Path) -> None:
    rows = [
        row("unet", "params", 123_456, "count"),
        row("unet", "latency_ms", 5.0, "ms", stat="median", batch_size=1, resolution=64),
        row("unet", "latency_ms", None, "ms", status="failed", error="CUDA out of memory",
            batch_size=64, resolution=64, device="cuda"),
        row("cunet", "macs_thop", None, "MACs", status="failed", error="thop crashed", **AT_64),
        row("cunet", "", None, "", status="failed", error="killed", batch_size=8, resolution=64),
    ]
    results = write_run(tmp_path / "results", rows, environment=False)
    paths = write_efficiency_reports(results, tmp_path / "out")
    assert all(p.is_file() for p in paths)
    table2 = table_rows((tmp_path / "out" / "table2.md").read_text())
    header = table2["model"]
    thop_column = header.index("ours: thop GMACs (paper 'GFLOPS')")
    assert table2["cunet"][thop_column] == "failed"
    assert table2["unet"][thop_column] == "not measured"
    assert table2["unet"][header.index("params (count)")] == "123,456"
    assert table2["cunet-noattn"][thop_column] == "not measured"  # paper row, nothing measured
    assert "thop crashed" in (tmp_path / "out" / "table2.md").read_text()
    assert "environment.json not found" in (tmp_path / "out" / "table2.md").read_text()
    table1 = (tmp_path / "out" / "table1_time.md").read_text()
    assert "not measured" in table1 and "3.56" in table1
    figure4 = figure4_data(load_results(results)).set_index("model")
    assert figure4.loc["unet", "params"] == 123_456
    assert figure4.loc["cunet", "status"] == "not measured"


def test_a_run_without_the_tables_metrics_still_writes_reports(tmp_path: Path) -> None:
    results = write_run(tmp_path / "results", [row("unet", "nfe", 1, "evaluations")])
    paths = write_efficiency_reports(results, tmp_path / "out")
    assert {p.name for p in paths} >= {"table2.md", "figure4.png", "latency_vs_batch.png"}
    assert "not measured" in (tmp_path / "out" / "table2.md").read_text()


def test_header_only_csv_is_a_usage_error(tmp_path: Path) -> None:
    """The store never writes a header without rows, so such a file lost its rows: refused, not
    drawn as tables of 'not measured' (tests/test_damaged_files.py runs it through the CLI)."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "measurements.csv").write_text("model,metric,value,unit\n")
    with pytest.raises(UsageError, match="holds a header but no rows"):
        write_efficiency_reports(results, tmp_path / "out")


def test_missing_csv_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="measurements.csv"):
        write_efficiency_reports(tmp_path, tmp_path / "out")


def test_remeasured_cell_uses_the_last_row(tmp_path: Path) -> None:
    rows = [row("unet", "params", 1000, "count"), row("unet", "params", 2000, "count")]
    results = write_run(tmp_path, rows)
    assert figure4_data(load_results(results)).set_index("model").loc["unet", "params"] == 2000


def test_each_device_gets_one_table1_section_and_its_own_peak(tmp_path: Path) -> None:
    rows = [row("unet", "sample_time_s", 0.9, "s", stat="median", steps=30, **AT_64),
            row("cunet", "sample_time_s", 0.3, "s", stat="median", steps=5, **AT_64)]
    for model, seconds, steps, threads in (("unet", 0.2, 30, 1), ("cunet", 0.05, 5, 4)):
        # On CUDA the thread count is recorded but does not split the section.
        rows.append(row(model, "sample_time_s", seconds, "s", stat="median", steps=steps, device="cuda",
                        threads=threads, **AT_64))
    rows += [row("unet", "flops_torch", 8e9, "FLOPs", **AT_64),
             row("unet", "latency_ms", 4.0, "ms", stat="median", **AT_64),
             row("unet", "latency_ms", 2.0, "ms", stat="median", device="cuda", **AT_64),
             row("machine", "peak_gflops", 100.0, "GFLOP/s", device="cpu")]
    results = load_results(write_run(tmp_path, rows))
    data = table1_time_data(results)
    assert list(data["device"]) == ["cpu"] * 3 + ["cuda"] * 3
    mnist = data[data["dataset"] == "MNIST"].set_index("device")
    assert mnist.loc["cpu", "ratio_ours"] == pytest.approx(0.3 / 0.9)
    assert mnist.loc["cuda", "ratio_ours"] == pytest.approx(0.05 / 0.2)
    achieved = achieved_data(results).set_index("device")
    assert achieved.loc["cpu", "fraction_of_peak"] == pytest.approx(8e9 / 4e-3 / 1e9 / 100.0)
    assert achieved.loc["cuda", "achieved_gflops"] == pytest.approx(8e9 / 2e-3 / 1e9)
    assert math.isnan(achieved.loc["cuda", "fraction_of_peak"])  # no CUDA peak: not the CPU's


def test_memory_report_says_where_the_quarter_memory_claim_holds(tmp_path: Path) -> None:
    from bench.report.data import results_from_frame
    from bench.report.memory import claim_sentence, memory_data, write_memory_report

    rows = [row(m, "checkpoint_mib", v, "MiB") for m, v in (("unet", 545.0), ("cunet-attn5", 138.0))]
    for batch, (unet, attn5) in {1: (190.0, 70.0), 64: (1292.0, 2275.0)}.items():
        rows += [row("unet", "peak_infer_mib", unet, "MiB", batch_size=batch, device="cuda"),
                 row("cunet-attn5", "peak_infer_mib", attn5, "MiB", batch_size=batch, device="cuda")]
    results = results_from_frame(pd.DataFrame(rows))
    data = memory_data(results)
    sentence = claim_sentence(data, results, "cunet-attn5")
    assert "checkpoint is 0.25 x" in sentence and "where the claim holds" in sentence
    assert "0.37 x at batch 1 and 1.76 x at batch 64 (more than the U-Net)" in sentence
    paths = write_memory_report(results, tmp_path)
    assert {p.name for p in paths} == {"memory.md", "memory.csv", "memory.png"}


def test_roofline_from_synthetic_rows(tmp_path: Path) -> None:
    from bench.report.data import results_from_frame
    from bench.report.roofline import roofline_data, write_roofline

    rows = [row("machine", "peak_gflops", 200.0, "GFLOP/s", stat="max"),
            row("machine", "peak_bandwidth_gbs", 20.0, "GB/s", stat="max")]
    for model, flops, moved, mib, ms in (("unet", 14e9, 5e8, 100.0, 100.0),
                                         ("cunet", 6e9, 4e8, 30.0, 60.0)):
        rows += [row(model, "flops_torch", flops, "FLOPs", **AT_64),
                 row(model, "bytes_moved", moved, "bytes", **AT_64),
                 row(model, "param_mib", mib, "MiB"),
                 row(model, "latency_ms", ms, "ms", stat="median", batch_size=4, resolution=64)]
    data = roofline_data(results_from_frame(pd.DataFrame(rows))).set_index("model")
    weights = 100.0 * 2**20
    assert data.loc["unet", "bytes"] == pytest.approx(weights + 4 * (5e8 - weights))
    assert data.loc["unet", "intensity"] == pytest.approx(4 * 14e9 / data.loc["unet", "bytes"])
    assert data.loc["cunet", "achieved_gflops"] == pytest.approx(4 * 6e9 / 0.060 / 1e9)
    assert data.loc["cunet", "peak_gflops"] == 200.0 and data.loc["cunet", "bandwidth_gbs"] == 20.0
    paths = write_roofline(results_from_frame(pd.DataFrame(rows)), tmp_path)
    assert {p.name for p in paths} == {"roofline.csv", "roofline_cpu.png"}
