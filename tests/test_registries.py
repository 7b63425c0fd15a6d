"""One definition per concept: a metric's declaration is the only rule for its cells (scope, fixed
axis values, which models and (device, dtype) pairs, the pixel cap), a report is one registry line,
a renamed metric keeps its old name as an alias, and `bench run` prints its headline."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.errors import UsageError
from bench.gate import compare
from bench.matrix import metrics
from bench.matrix.cells import expand
from bench.matrix.spec import parse_spec
from bench.report import data as report_data
from bench.report import registry as report_registry
from bench.results.damage import check_plausible
from bench.results.keys import migrate_cell_key


@pytest.fixture()
def fresh_registry():
    """Registrations made by a test are undone after it (every view is restored in place)."""
    views = (metrics.METRIC_OF, metrics.UNITS, metrics.GROUPS, metrics.GROUP_OF, metrics.ALIASES)
    saved = [list(metrics.METRIC_REGISTRY), set(metrics.INTEGER_METRICS), *(dict(v) for v in views)]
    yield metrics
    metrics.METRIC_REGISTRY[:] = saved[0]
    metrics.INTEGER_METRICS.clear()
    metrics.INTEGER_METRICS.update(saved[1])
    for view, old in zip(views, saved[2:], strict=True):
        view.clear()
        view.update(old)


def _spec(metric_names: list[str], **matrix) -> object:
    table = {"models": ["unet", "cunet"], "resolutions": [32, 64], "batch_sizes": [1, 4],
             "dtypes": ["float32", "bfloat16"], "metrics": metric_names, "threads": 1, **matrix}
    return parse_spec({"matrix": table}, name="t")


def test_the_views_of_other_layers_are_read_from_the_declarations(fresh_registry) -> None:
    fresh_registry.register_metric(metrics.Metric(
        "widgets", "count", f"{__name__}:measure_nothing", integers=("widgets",)))
    rows = pd.DataFrame([{"model": "unet", "metric": "widgets", "value": 2.5, "unit": "count",
                          "status": "ok"}])
    with pytest.raises(UsageError, match="widgets = 2.5 is not an integer"):
        check_plausible(rows, Path("r.csv"))  # the damage check reads the registry's integers
    assert {"params", "params_trainable", "macs_thop", "nfe"} <= metrics.INTEGER_METRICS
    assert "param_mib" not in metrics.INTEGER_METRICS
    assert report_data.MACHINE_METRICS == {"peak_gflops", "peak_bandwidth_gbs"}
    assert compare.RATIO_METRICS == {"latency_ratio": "latency_ms"}
    assert compare.LATENCY_RATIO == "latency_ratio"
    capped = {m.name for m in metrics.METRIC_REGISTRY if m.pixel_cap}
    assert capped == {"peak_infer_mib", "peak_train_mib", "latency_ms", "breakdown"}


def test_a_declared_scope_and_fixed_axes_form_the_cells(fresh_registry) -> None:
    fresh_registry.register_metric(metrics.Metric(
        "joules", "J", f"{__name__}:measure_nothing", axes=("dtype", "batch"),
        scope=metrics.PER_CONTEXT))
    fresh_registry.register_metric(metrics.Metric(
        "fan_rpm", "rpm", f"{__name__}:measure_nothing", axes=("device",),
        scope=metrics.PER_MACHINE, fixed={"resolution": None, "batch": None}))
    fresh_registry.register_metric(metrics.Metric(
        "ode_depth", "count", f"{__name__}:measure_nothing", fixed={"batch": None},
        applies_to="continuous", integers=("ode_depth",)))
    cells, _ = expand(_spec(["joules", "fan_rpm", "ode_depth"]))
    joules = [c for c in cells if c.group == "joules"]
    # one cell per (dtype, batch) timing both models together, at the paper's 64x64
    assert [(c.dtype, c.batch_size, c.resolution) for c in joules] == [
        ("float32", 1, 64), ("float32", 4, 64), ("bfloat16", 1, 64), ("bfloat16", 4, 64)]
    assert all(c.models == ("unet", "cunet") and c.model == "unet+cunet" for c in joules)
    fans = [c for c in cells if c.group == "fan_rpm"]
    assert [(c.model, c.resolution, c.batch_size, c.dtype) for c in fans] == [("machine", None, None,
                                                                                "float32")]
    depth = [c for c in cells if c.group == "ode_depth"]
    assert [c.model for c in depth] == ["cunet"]  # asked of the model: the U-Net is not continuous
    assert "ode_depth" in metrics.INTEGER_METRICS


def test_a_declared_measurable_rule_skips_with_a_note(fresh_registry) -> None:
    fresh_registry.register_metric(metrics.Metric(
        "fp8_peak", "MiB", f"{__name__}:measure_nothing", axes=("dtype",),
        measurable=lambda device, dtype: "no fp8 here" if dtype == "bfloat16" else None))
    cells, notes = expand(_spec(["fp8_peak"]))
    assert {c.dtype for c in cells} == {"float32"}
    assert "fp8_peak not measured for bfloat16 on cpu: no fp8 here" in notes


def test_the_pixel_cap_follows_the_declaration(fresh_registry, tmp_path: Path) -> None:
    fresh_registry.register_metric(metrics.Metric(
        "big_thing", "MiB", f"{__name__}:measure_one", axes=("batch",), pixel_cap=True))
    fresh_registry.register_metric(metrics.Metric(
        "small_thing", "MiB", f"{__name__}:measure_one", axes=("batch",)))
    config = tmp_path / "m.toml"
    config.write_text('[matrix]\nmodels = ["cunet-noattn-nores"]\nresolutions = [32]\n'
                      'batch_sizes = [1, 4]\nmetrics = ["big_thing", "small_thing"]\nthreads = 1\n'
                      'cpu_max_batch_pixels = 2048\n[overrides]\ncunet-noattn-nores = { width = 4 }\n')
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    rows = pd.read_csv(tmp_path / "o" / "measurements.csv").set_index(["metric", "batch_size"])
    assert rows.loc[("big_thing", 4), "status"] == "failed"
    assert "cpu_max_batch_pixels" in rows.loc[("big_thing", 4), "error"]
    assert (rows.loc[[("big_thing", 1), ("small_thing", 1), ("small_thing", 4)], "status"]
            == "ok").all()


def measure_nothing(spec, cell):  # never called: the expansion tests measure nothing
    raise AssertionError("not measured in these tests")


def measure_one(spec, cell):
    return [{"metric": cell.group, "value": 1.0, "unit": "MiB", "stat": "value", "status": "ok"}]


def test_a_former_metric_name_is_an_alias(capsys) -> None:
    spec = _spec(["params", "profile"], resolutions=[64], batch_sizes=[1], dtypes=["float32"])
    assert spec.metrics == ["params", "breakdown"]
    assert "metric 'profile' is now 'breakdown'" in capsys.readouterr().err
    assert migrate_cell_key("profile|unet|cpu|64|1|float32|") == "breakdown|unet|cpu|64|1|float32|"
    assert migrate_cell_key("params|unet|cpu|64||float32|") == "params|unet|cpu|64||float32|"


def write_weights_report(results, out_dir: Path) -> list[Path]:  # a report nobody here wrote
    counts = results.ok[results.ok["metric"] == "params"].set_index("model")["value"]
    path = out_dir / "weights.json"
    path.write_text(json.dumps({model: int(value) for model, value in counts.items()}))
    return [path]


def test_a_new_report_is_one_writer_and_one_registry_line(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(report_registry, "REPORTS", list(report_registry.REPORTS))
    import bench.report as report

    monkeypatch.setattr(report, "REPORTS", report_registry.REPORTS)
    report_registry.register_report(report_registry.Report("weights", f"{__name__}:write_weights_report"))
    with pytest.raises(ValueError, match="already registered"):
        report_registry.register_report(report_registry.Report("weights", "x:y"))
    config = tmp_path / "m.toml"
    config.write_text('[matrix]\nmodels = ["cunet-noattn-nores"]\nresolutions = [32]\n'
                      'metrics = ["params"]\nthreads = 1\n'
                      '[overrides]\ncunet-noattn-nores = { width = 4 }\n')
    out = tmp_path / "o"
    assert main(["run", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    assert main(["report", "--results", str(out), "--out", str(tmp_path / "r")]) == 0
    written = json.loads((tmp_path / "r" / "weights.json").read_text())
    assert written == {"cunet-noattn-nores": int(pd.read_csv(out / "measurements.csv").query(
        "metric == 'params'")["value"].iloc[0])}


def test_run_prints_its_headline(tmp_path: Path, capsys) -> None:
    config = tmp_path / "m.toml"
    config.write_text('[matrix]\nmodels = ["unet", "cunet"]\nresolutions = [64]\n'
                      'metrics = ["params", "latency_ms"]\nthreads = 1\n'
                      '[overrides]\nunet = { width = 8, dim_mults = [1, 2], full_attention = '
                      '[false, true] }\ncunet = { width = 2 }\n'
                      '[latency]\nwarmup = 1\ncalls_per_round = 1\nmin_rounds = 2\nmax_rounds = 2\n'
                      'budget_s = 0.0\n')
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Table 2: counts at 1x3x64x64" in out and "per-call ratio to unet" in out
    params = pd.read_csv(tmp_path / "o" / "measurements.csv").query("metric == 'params'")
    unet = int(params.loc[params["model"] == "unet", "value"].iloc[0])
    line = next(line for line in out.splitlines() if line.startswith("| unet |"))
    assert f"{unet:,}" in line and "1.000 x unet" in line


def test_breakdown_blocks_and_their_former_name_name_the_blocks() -> None:
    from torch import nn

    from bench.measure.breakdown import named_blocks

    class New(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

        def breakdown_blocks(self):
            return [("first", self.a)]

    class Old(New):
        breakdown_blocks = None

        def profile_blocks(self):
            return [("second", self.b)]

    assert [name for name, _ in named_blocks(New())] == ["first"]
    assert [name for name, _ in named_blocks(Old())] == ["second"]
    assert [name for name, _ in named_blocks(nn.Sequential(nn.Linear(2, 2)))] == ["0"]
