"""reports/roofline_<device>.png (+ roofline.csv): arithmetic intensity against achieved GFLOP/s
for every model, context and mode, under the device's measured compute peak (per dtype) and
measured copy bandwidth.

- FLOPs per call: `flops_torch` (torch.utils.flop_counter, 2 per MAC) at batch 1 x batch.
- Bytes per call: `bytes_moved`, an UNFUSED upper bound measured at batch 1 (every operator reads
  its inputs and writes its outputs once); at batch b the weights are read once and the
  activations scale: W + b x (bytes_1 - W), with W the float32 parameter bytes (`param_mib`).
  Fused or cached execution moves fewer bytes, so true intensity is higher than plotted.
- Achieved GFLOP/s: FLOPs per call / median latency of that model, context and mode.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report import render
from bench.report.data import Results, is_number, ordered_models, pick, where
from bench.report.modes import MODE_ORDER, _modes_frame
from bench.units import MIB

COLUMNS = ["device", "dtype", "mode", "model", "batch_size", "resolution", "flops", "bytes",
           "intensity", "achieved_gflops", "peak_gflops", "bandwidth_gbs"]
MARKERS = {"eager": "o", "compile": "s", "cudagraph": "^"}


def _value(frame: pd.DataFrame, metric: str, model: str, resolution: float) -> float:
    rows = where(frame, metric, model=model)
    rows = rows[rows["resolution"].fillna(64.0) == resolution] if metric != "param_mib" else rows
    chosen = pick(rows, devices=())
    return float("nan") if chosen is None else float(chosen["value"])


def roofline_data(results: Results) -> pd.DataFrame:
    frame = _modes_frame(results)
    latency = frame[(frame["metric"] == "latency_ms") & (frame["stat"] == "median")]
    records = []
    for row in latency.to_dict("records"):
        resolution = row["resolution"] if is_number(row["resolution"]) else 64.0
        batch = row["batch_size"] if is_number(row["batch_size"]) else 1.0
        flops1 = _value(frame, "flops_torch", row["model"], resolution)
        bytes1 = _value(frame, "bytes_moved", row["model"], resolution)
        weights = _value(frame, "param_mib", row["model"], resolution) * MIB
        if not (is_number(flops1) and is_number(bytes1)) or row["value"] <= 0:
            continue
        moved = weights + batch * (bytes1 - weights) if is_number(weights) else batch * bytes1
        peak = pick(where(frame, "peak_gflops", device=row["device"], dtype=row["dtype"]), devices=(),
                    stats=("max", "value"))
        bandwidth = pick(where(frame, "peak_bandwidth_gbs", device=row["device"]), devices=(),
                         stats=("max", "value"))
        flops = flops1 * batch
        records.append({"device": row["device"], "dtype": row["dtype"], "mode": row["mode"],
                        "model": row["model"], "batch_size": batch, "resolution": resolution,
                        "flops": flops, "bytes": moved, "intensity": flops / moved,
                        "achieved_gflops": flops / (row["value"] / 1e3) / 1e9,
                        "peak_gflops": float("nan") if peak is None else float(peak["value"]),
                        "bandwidth_gbs": float("nan") if bandwidth is None else float(bandwidth["value"])})
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def draw_roofline(data: pd.DataFrame, device: str):
    figure = render.new_figure(6.5, 4.6)
    ax = figure.add_subplot(1, 1, 1)
    section = data[data["device"] == device]
    lo, hi = section["intensity"].min() / 3, section["intensity"].max() * 3
    bandwidth = section["bandwidth_gbs"].dropna()
    for dtype, rows in section.groupby("dtype"):
        peak = rows["peak_gflops"].dropna()
        if peak.empty or bandwidth.empty:
            continue
        xs = [lo * (hi / lo) ** (i / 60) for i in range(61)]
        label = f"roof {dtype}: {peak.iloc[0]:,.0f} GFLOP/s, {bandwidth.iloc[0]:,.0f} GB/s"
        ax.plot(xs, [min(peak.iloc[0], x * bandwidth.iloc[0]) for x in xs], linestyle="--",
                linewidth=1, label=label)
    colors = {m: f"C{i}" for i, m in enumerate(ordered_models(section["model"]))}
    for (model, mode), rows in section.groupby(["model", "mode"]):
        ax.scatter(rows["intensity"], rows["achieved_gflops"], color=colors[model],
                   marker=MARKERS.get(mode, "x"), s=18 + 8 * rows["batch_size"] ** 0.5,
                   label=f"{model} ({mode})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte, unfused byte estimate)")
    ax.set_ylabel("achieved GFLOP/s (flop_counter FLOPs / median latency)")
    ax.set_title(f"roofline, {device} (marker size ~ batch)", fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figure


def write_roofline(results: Results, out_dir: Path) -> list[Path]:
    data = roofline_data(results)
    if data.empty:
        return []
    data = data.sort_values(["device", "dtype", "model", "mode", "batch_size"],
                            key=lambda c: c.map({m: i for i, m in enumerate(MODE_ORDER)}) if c.name == "mode"
                            else c)
    paths = [render.write_csv(out_dir / "roofline.csv", data)]
    for device in data["device"].unique():
        paths.append(render.save_figure(draw_roofline(data, device), out_dir / f"roofline_{device}.png"))
    return paths
