"""Execution modes: compile equals eager and records its compile time, cudagraph is refused where it
cannot run, a mode that changes the output fails its pair, and the modes report draws."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

import models
from bench.cli import main
from bench.errors import UsageError
from bench.matrix.cells import Cell
from bench.matrix.measure_cells import measure_latency
from bench.matrix.spec import parse_spec
from bench.measure import modes
from bench.report.data import results_from_frame
from bench.report.modes import footnote_paragraph, modes_data, render_markdown, sample_data

CUDA = torch.cuda.is_available()


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x, t):
        return torch.tanh(self.conv(x)) + t.float()[:, None, None, None] * 1e-3


def test_compile_mode_equals_eager_and_times_its_compile() -> None:
    net = Tiny().eval()
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([1, 2])
    with torch.inference_mode():
        prepared = modes.prepare(net, "compile", x, t)
        out = prepared.call()
        torch.testing.assert_close(out, net(x, t), rtol=1e-5, atol=1e-6)
    assert prepared.compile_s is not None and prepared.compile_s > 0
    assert prepared.max_rel_err <= modes.TOLERANCE["float32"]
    assert "graph breaks: 0" in prepared.notes


def test_graph_breaks_are_counted_and_located() -> None:
    class Breaks(nn.Module):
        def forward(self, x, t):
            y = x * 2
            if y.sum() > 0:  # data-dependent branch: a graph break
                return y + 1
            return y - 1

    count, where = modes.graph_breaks(Breaks(), torch.randn(1, 3, 4, 4), torch.tensor([0]))
    assert count >= 1 and "test_modes.py" in where


def test_a_mode_that_changes_the_output_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong(net, x, t):
        return modes.Prepared("wrong", lambda: net(x, t) + 1.0)

    monkeypatch.setitem(modes.MODES, "wrong", wrong)
    with torch.inference_mode(), pytest.raises(modes.ModeError, match="differs from eager"):
        modes.prepare(Tiny().eval(), "wrong", torch.randn(1, 3, 8, 8), torch.tensor([0]))


@pytest.mark.skipif(CUDA, reason="checks the CPU refusal")
def test_cudagraph_on_cpu_is_refused() -> None:
    with torch.inference_mode(), pytest.raises(modes.ModeError, match="needs a CUDA device"):
        modes.prepare(Tiny().eval(), "cudagraph", torch.randn(1, 3, 8, 8), torch.tensor([0]))


def _raw(**matrix) -> dict:
    base = {"models": ["unet"], "resolutions": [32], "metrics": ["latency_ms"], "devices": ["cpu"]}
    return {"matrix": {**base, **matrix}, "overrides": {"unet": {"width": 8}}}


@pytest.mark.parametrize(("matrix", "message"), [
    ({"modes": ["eager", "turbo"]}, "unknown mode"),
    ({"modes": ["eager", "cudagraph"]}, "cudagraph needs a CUDA device"),
    ({"modes": ["eager"], "mode_models": {"compile": ["cunet"]}}, "unknown model"),
])
def test_bad_modes_in_a_matrix(matrix: dict, message: str) -> None:
    if CUDA and "cudagraph" in str(matrix):
        pytest.skip("a CUDA machine accepts cudagraph")
    with pytest.raises(UsageError, match=message):
        parse_spec(_raw(**matrix), name="t")


def test_cli_rejects_an_unknown_mode_in_one_line(tmp_path, capsys) -> None:
    config = tmp_path / "m.toml"
    config.write_text('[matrix]\nmodels = ["unet"]\nmetrics = ["params"]\nmodes = ["turbo"]\n')
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown mode(s) turbo" in err[0]


def test_latency_cell_pairs_modes_and_fails_one_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cell times every (model, mode) pair: ratios within a mode, speed-up over eager, and a
    pair whose mode fails is recorded as failed while the others are timed."""
    def double(net, x, t):
        return modes.Prepared("double", lambda: net(x, t))

    def broken(net, x, t):
        raise RuntimeError("cannot run here")

    monkeypatch.setitem(modes.MODES, "double", double)
    monkeypatch.setitem(modes.MODES, "broken", broken)
    raw = _raw(models=["unet", "cunet"], modes=["eager", "double", "broken"], threads=1)
    raw["overrides"]["cunet"] = {"width": 4}
    raw["latency"] = {"warmup": 1, "calls_per_round": 1, "min_rounds": 2, "max_rounds": 2,
                      "budget_s": 0.0}
    spec = parse_spec(raw, name="t")
    cell = Cell("latency_ms", ("latency_ms",), "unet+cunet", resolution=32, batch_size=1,
                members=("unet", "cunet"), modes=tuple(spec.modes))
    rows = pd.DataFrame(measure_latency(spec, cell))
    ok = rows[rows["status"] == "ok"]
    assert set(ok[ok["metric"] == "latency_ms"]["mode"]) == {"eager", "double"}
    ratio = ok[(ok["metric"] == "latency_ratio") & (ok["model"] == "unet")]
    assert list(ratio["value"]) == [1.0, 1.0]
    assert set(ok[ok["metric"] == "mode_speedup"]["model"]) == {"unet", "cunet"}
    failed = rows[rows["status"] == "failed"]
    assert set(failed["mode"]) == {"broken"} and failed["error"].str.contains("cannot run here").all()
    assert "|eager+double+broken" in cell.key


def _synthetic() -> pd.DataFrame:
    rows = []

    def add(model, mode, metric, value, stat="median", batch=1, **extra):
        rows.append({"model": model, "mode": mode, "metric": metric, "value": value, "stat": stat,
                     "status": "ok", "device": "cuda", "dtype": "float32", "batch_size": batch,
                     "resolution": 64, "unit": extra.pop("unit", ""), **extra})

    for model, eager, graph in (("unet", 18.0, 2.7), ("cunet", 24.0, 2.0)):
        add(model, "eager", "latency_ms", eager)
        add(model, "cudagraph", "latency_ms", graph)
        add(model, "eager", "latency_ratio", eager / 18.0, unit="x unet")
        add(model, "cudagraph", "latency_ratio", graph / 2.7, unit="x unet")
        add(model, "cudagraph", "mode_speedup", eager / graph, unit="x eager")
        add(model, "cudagraph", "mode_max_rel_err", 1e-6, stat="max")
        add(model, "eager", "flops_torch", 1e10 if model == "unet" else 5e9, stat="value")
    add("machine", "eager", "peak_gflops", 50000.0, stat="max")
    add("unet", "eager", "sample_time_s", 2.0, steps=100)
    add("unet", "cudagraph", "sample_time_s", 0.3, steps=100)
    add("cunet", "cudagraph", "sample_time_s", 0.16, steps=80)
    add("cunet", "eager", "sample_time_s", 2.1, steps=80)
    rows.append({"model": "cunet-torchdiffeq", "mode": "cudagraph", "metric": "latency_ms",
                 "status": "failed", "error": "ModeError: cannot be captured", "device": "cuda",
                 "dtype": "float32", "batch_size": 1, "resolution": 64})
    return pd.DataFrame(rows)


def test_modes_report_from_synthetic_rows() -> None:
    results = results_from_frame(_synthetic())
    assert set(results.ok["mode"]) == {"eager"}  # eager-only reports never see other modes
    data = modes_data(results)
    graph = data[(data["model"] == "cunet") & (data["mode"] == "cudagraph")].iloc[0]
    assert graph["speedup"] == pytest.approx(12.0) and graph["ratio"] == pytest.approx(2.0 / 2.7)
    assert graph["fraction_of_peak"] == pytest.approx(5e9 / 2e-3 / 1e9 / 50000.0)
    samples = sample_data(results)
    text = render_markdown(data, samples, results)
    assert "cunet-torchdiffeq cudagraph" in text and "cannot be captured" in text
    paragraph = footnote_paragraph(data, samples)
    assert "12.0 x faster than eager" in paragraph and "faster than the U-Net" in paragraph
    assert "0.160 s" in paragraph


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("preset", ["unet", "cunet"])
def test_cudagraph_replays_the_eager_output(preset: str) -> None:
    overrides = {"solver_backend": "native"} if preset != "unet" else {}
    net = models.build(preset, width=8, **overrides).eval().cuda()
    x, t = torch.randn(2, 3, 32, 32, device="cuda"), torch.tensor([5, 700], device="cuda")
    with torch.inference_mode():
        prepared = modes.prepare(net, "cudagraph", x, t)
        torch.testing.assert_close(prepared.call(), net(x, t), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cudagraph_refuses_torchdiffeq() -> None:
    net = models.build("cunet", width=4).eval().cuda()
    x, t = torch.randn(1, 3, 32, 32, device="cuda"), torch.tensor([5], device="cuda")
    with torch.inference_mode(), pytest.raises(modes.ModeError, match="solver_backend = 'native'"):
        modes.prepare(net, "cudagraph", x, t)


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_graphed_sampler_equals_eager_sampling(sampler: str) -> None:
    from bench.measure.graphed_sampling import GraphedSampler
    from bench.measure.workload import build_diffusion
    from models.diffusion import sample

    net = models.build("cunet", width=4, solver_backend="native").eval().cuda()
    diffusion = build_diffusion().cuda()
    shape = (2, 3, 32, 32)
    with torch.inference_mode():
        eager = sample(net, diffusion, shape, steps=6, sampler=sampler, seed=3, device="cuda")
        graphed = GraphedSampler(net, diffusion, shape, steps=6, sampler=sampler, seed=3,
                                 device=torch.device("cuda"), dtype=torch.float32)
        first, second = graphed.run(), graphed.run()
    # CUDA divides by a Python scalar as a multiplication by its reciprocal and by a 0-dim tensor
    # exactly; DDIM's eps = (x - sqrt(abar) x0) / sqrt(1 - abar) shows it (1.2e-3 seen on an H100).
    torch.testing.assert_close(first, eager, rtol=0, atol=5e-3)
    torch.testing.assert_close(second, first, rtol=0, atol=0)


@pytest.mark.skipif(CUDA, reason="checks the refusal on a machine without CUDA")
def test_gpu_profile_fails_in_one_line_without_cuda(tmp_path, capsys) -> None:
    assert main(["run", "--profile", "gpu", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA machine" in err[0]
    assert not (tmp_path / "g").exists()


def test_retry_failed_keeps_other_matrices_cells(tmp_path) -> None:
    """--retry-failed re-measures this matrix's failed cells only; a failed cell written by another
    matrix into the same directory keeps its rows."""
    from bench.matrix.runner import run_matrix
    from bench.results.store import MeasurementStore

    store = MeasurementStore(tmp_path)
    store.add([{"model": "other", "metric": "latency_ms", "status": "failed", "cell": "latency_ms|other"},
               {"model": "other", "metric": "latency_ms", "status": "ok", "value": 1.0,
                "cell": "latency_ms|other"}])
    spec = parse_spec({"matrix": {"models": ["unet"], "metrics": ["params"], "resolutions": [32]},
                       "overrides": {"unet": {"width": 8}}}, name="t")
    run_matrix(spec, tmp_path, retry_failed=True, progress=False)
    cells = set(MeasurementStore(tmp_path).frame["cell"])
    assert "latency_ms|other" in cells and any(c.startswith("params|unet") for c in cells)


def test_every_built_in_profile_parses() -> None:
    """Each shipped efficiency profile is valid here, its models too; the CUDA-only ones say so in
    one line on a CPU box."""
    from bench.matrix.spec import load_spec, validate_models
    from bench.profiles import profile_names

    for name in profile_names("matrix"):
        if not CUDA and name in ("gpu", "where-gpu"):
            with pytest.raises(UsageError, match="CUDA machine"):
                load_spec(name)
            continue
        spec = load_spec(name)
        validate_models(spec)
        assert spec.devices
