"""The metric registry is the one declaration of every metric: the matrix's metric names and units,
its cells, its measuring dispatch and the gate are views of it; an axis a metric does not vary over
is said, and bfloat16 memory is measured (or its absence stated), never silently float32."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.cli import main
from bench.gate import compare
from bench.matrix import cells, measure_cells, spec
from bench.matrix.metrics import GATE_EXACT, METRIC_REGISTRY, UNITS, unvaried_axes


def test_every_view_comes_from_the_registry() -> None:
    names = [name for metric in METRIC_REGISTRY for name in metric.metrics]
    assert len(names) == len(set(names))
    assert set(spec.METRICS) == set(names) | {"compile_s"} and spec.METRICS is UNITS
    assert cells.GROUPS == {m.name: m.metrics for m in METRIC_REGISTRY}
    for metric in METRIC_REGISTRY:  # every declared measurer resolves (the runner calls only these)
        assert callable(metric.measurer())
    assert compare.COUNT_METRICS == tuple(m.name for m in METRIC_REGISTRY if m.gate == GATE_EXACT)
    assert compare.RELATIVE_SLACK == {"checkpoint_mib": 0.001}


def test_an_unvaried_axis_is_named_with_its_reason() -> None:
    lines = unvaried_axes(["params", "peak_infer_mib"], {"dtype": ["float32", "bfloat16"]})
    assert len(lines) == 1 and "params: a count" in lines[0] and "peak_infer_mib" not in lines[0]
    assert unvaried_axes(["peak_infer_mib"], {"dtype": ["bfloat16"]}) == []


def test_bfloat16_memory_rows_on_cpu(tmp_path: Path) -> None:
    config = tmp_path / "bf16.toml"
    config.write_text('''
[matrix]
models = ["cunet-noattn-nores"]
resolutions = [32]
dtypes = ["float32", "bfloat16"]
metrics = ["params", "peak_infer_mib", "peak_train_mib"]
threads = 1
[overrides]
cunet-noattn-nores = { width = 4 }
''')
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    rows = pd.read_csv(out / "measurements.csv")
    infer = rows[rows["metric"] == "peak_infer_mib"]
    assert set(infer["dtype"]) == {"float32", "bfloat16"} and (infer["status"] == "ok").all()
    train = rows[rows["metric"] == "peak_train_mib"]
    assert set(train["dtype"]) == {"float32"}  # bf16 training runs only on CUDA: stated, not faked
    notes = json.loads((out / "environment.json").read_text())["notes"]
    assert any("params: a count: the same at every dtype" in n for n in notes)
    assert any(n.startswith("peak_train_mib not measured for bfloat16 on cpu") for n in notes)


def measure_weight_norm(spec, cell):  # a metric nobody here wrote: the sum of |weights|
    net = measure_cells.build_model(spec, cell.model)
    return [{"metric": "weight_l1", "value": float(sum(p.detach().abs().sum() for p in net.parameters())),
             "unit": "sum", "stat": "value", "status": "ok"}]


def test_a_new_metric_is_one_function_and_one_registry_line(tmp_path: Path) -> None:
    from bench.matrix import metrics

    saved = ([*metrics.METRIC_REGISTRY], dict(metrics.UNITS), dict(metrics.GROUPS),
             dict(metrics.GROUP_OF), dict(metrics.METRIC_OF))
    try:
        metrics.register_metric(metrics.Metric("weight_l1", "sum",
                                                f"{__name__}:measure_weight_norm", axes=("dtype",)))
        config = tmp_path / "m.toml"
        config.write_text('[matrix]\nmodels = ["cunet-noattn-nores"]\nresolutions = [32]\n'
                          'metrics = ["weight_l1"]\nthreads = 1\n'
                          '[overrides]\ncunet-noattn-nores = { width = 4 }\n')
        assert main(["run", "--config", str(config), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
        rows = pd.read_csv(tmp_path / "o" / "measurements.csv")
        assert list(rows["metric"]) == ["weight_l1"] and rows["value"].iloc[0] > 0
    finally:
        metrics.METRIC_REGISTRY[:] = saved[0]
        for view, old in zip((metrics.UNITS, metrics.GROUPS, metrics.GROUP_OF, metrics.METRIC_OF),
                             saved[1:], strict=True):
            view.clear()
            view.update(old)


def test_a_model_without_sampling_steps_is_said_not_skipped_silently() -> None:
    from bench.matrix.cells import expand
    from bench.matrix.spec import parse_spec

    spec = parse_spec({"matrix": {"models": ["unet", "cunet"], "metrics": ["sample_time_s"],
                                  "threads": 1},
                       "sampling": {"steps": {"unet": [3]}}}, name="t")
    cells, notes = expand(spec)
    assert {c.model for c in cells} == {"unet"}
    assert any(n.startswith("sample_time_s not measured for cunet") for n in notes)


def test_bfloat16_memory_rows_never_stand_in_for_float32_ones() -> None:
    """Table 2 and memory.md are float32 figures: a later bfloat16 row of the same model, batch and
    resolution is not picked (it would be an unlabelled other number)."""
    from bench.report.data import results_from_frame
    from bench.report.memory import memory_data
    from bench.report.table2 import table2_data

    base = {"model": "unet", "metric": "peak_infer_mib", "unit": "MiB", "stat": "value",
            "status": "ok", "device": "cpu", "batch_size": 1, "resolution": 64, "channels": 3,
            "method": "cpu-subprocess-rss"}
    results = results_from_frame(pd.DataFrame([{**base, "dtype": "float32", "value": 187.0},
                                                {**base, "dtype": "bfloat16", "value": 104.0}]))
    assert memory_data(results)["peak_mib"].tolist() == [187.0]
    frame = table2_data(results).frame
    assert frame.loc[frame["model"] == "unet", "peak_infer_mib_cpu"].tolist() == [187.0]
