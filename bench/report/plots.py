"""Latency against batch size and resolution, and achieved GFLOP/s as a fraction of the device's
measured matmul peak. One panel per device (and CPU thread count, and dtype when several)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from bench.report import render
from bench.report.data import Results, is_number, ordered_models, pick, where

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

PANEL = ["device", "threads", "dtype"]
LATENCY_COLUMNS = ["model", *PANEL, "batch_size", "resolution", "median_ms", "p90_ms", "min_ms"]
ACHIEVED_COLUMNS = LATENCY_COLUMNS + ["flops_per_sample", "achieved_gflops", "peak_gflops",
                                      "fraction_of_peak"]
DEFAULT_RESOLUTION = 64.0


def latency_data(results: Results) -> pd.DataFrame:
    """One row per (model, device, threads, dtype, batch, resolution) with the median, p90 and min
    milliseconds per denoiser call (the last written when a cell was measured twice). Threads are
    NaN on CUDA; a missing resolution or batch counts as the default 64 / 1."""
    rows = _panel_keys(where(results.ok, "latency_ms"))
    keys = ["model", *PANEL, "batch_size", "resolution"]
    if rows.empty:
        return pd.DataFrame(columns=LATENCY_COLUMNS)
    records = []
    for key, group in rows.sort_values("order").groupby(keys, sort=False, dropna=False):
        record = dict(zip(keys, key, strict=True))
        for stat in ("median", "p90", "min"):
            values = group.loc[group["stat"] == stat, "value"]
            record[f"{stat}_ms"] = float(values.iloc[-1]) if not values.empty else float("nan")
        if not is_number(record["median_ms"]):  # a run that kept a single statistic
            chosen = pick(group, stats=("value", "mean"), devices=())
            record["median_ms"] = float("nan") if chosen is None else float(chosen["value"])
        records.append(record)
    wide = pd.DataFrame.from_records(records, columns=LATENCY_COLUMNS)
    order = {m: i for i, m in enumerate(ordered_models(wide["model"]))}
    return wide.sort_values(["model", *PANEL, "batch_size", "resolution"],
                            key=lambda c: c.map(order) if c.name == "model" else c).reset_index(drop=True)


def _panel_keys(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.copy()
    rows["threads"] = rows["threads"].where(rows["device"] == "cpu")
    rows["batch_size"] = rows["batch_size"].fillna(1.0)
    rows["resolution"] = rows["resolution"].fillna(DEFAULT_RESOLUTION)
    rows["dtype"] = rows["dtype"].where(rows["dtype"] != "", "float32")
    return rows


def failed_latency(results: Results) -> pd.DataFrame:
    """Failed latency cells (e.g. out of memory at a large batch), keyed like `latency_data`."""
    failed = results.failed
    rows = failed[failed["metric"].isin(["latency_ms", ""])]
    return _panel_keys(rows)[["model", *PANEL, "batch_size", "resolution", "error"]]


def achieved_data(results: Results, latency: pd.DataFrame | None = None) -> pd.DataFrame:
    """Achieved GFLOP/s = torch FLOPs per sample x batch / median latency, and its fraction of the
    `peak_gflops` measured on the same device (same CPU thread count preferred).

    FLOPs per sample come from `flops_torch` at the same resolution (batch 1 preferred; a row at
    batch b is divided by b), so a latency point without a FLOP count is left out."""
    latency = latency_data(results) if latency is None else latency
    records = []
    for record in latency.to_dict("records"):
        flops = _flops_per_sample(results, record["model"], record["resolution"])
        if not is_number(flops) or not is_number(record["median_ms"]) or record["median_ms"] <= 0:
            continue
        achieved = flops * record["batch_size"] / (record["median_ms"] / 1e3) / 1e9
        peak = _peak(results, record["device"], record["threads"], record["dtype"])
        fraction = achieved / peak if is_number(peak) and peak > 0 else float("nan")
        records.append({**record, "flops_per_sample": flops, "achieved_gflops": achieved,
                        "peak_gflops": peak, "fraction_of_peak": fraction})
    return pd.DataFrame.from_records(records, columns=ACHIEVED_COLUMNS)


def _flops_per_sample(results: Results, model: str, resolution: float) -> float:
    rows = where(results.ok, "flops_torch", model=model)
    rows = rows[rows["resolution"].fillna(DEFAULT_RESOLUTION) == resolution]
    if rows.empty:
        return float("nan")
    batch = rows["batch_size"].fillna(1.0)
    best = rows[batch == batch.min()] if not (batch == 1).any() else rows[batch == 1]
    chosen = pick(best)
    if chosen is None:
        return float("nan")
    size = chosen["batch_size"] if is_number(chosen["batch_size"]) else 1.0
    return float(chosen["value"]) / float(size)


def _peak(results: Results, device: str, threads: float, dtype: str = "float32") -> float:
    """The measured matmul peak of `device` in `dtype` (rows without a dtype are float32)."""
    rows = where(results.ok, "peak_gflops", device=device, defaults={"dtype": "float32"}
                 if dtype in ("", "float32") else None)
    if dtype not in ("", "float32"):
        rows = rows[rows["dtype"] == dtype]
    if is_number(threads) and (rows["threads"] == threads).any():
        rows = rows[rows["threads"] == threads]
    chosen = pick(rows, stats=("value", "median", "max", "mean"), devices=())
    return float("nan") if chosen is None else float(chosen["value"])


# ----------------------------------------------------------------------------- drawing

def _panels(frame: pd.DataFrame) -> list[tuple[tuple[object, ...], pd.DataFrame]]:
    if frame.empty:
        return []
    groups = frame.groupby(PANEL, sort=False, dropna=False)
    return sorted(groups, key=lambda g: (g[0][0] != "cpu", str(g[0][0]), str(g[0][1]), str(g[0][2])))


def _title(key: tuple[object, ...], several_dtypes: bool) -> str:
    device, threads, dtype = key
    title = str(device) or "device not recorded"
    if is_number(threads):
        title += f", {int(threads)} threads"  # type: ignore[call-overload]
    if several_dtypes:
        title += f", {dtype}"
    return title


def _grid(count: int, title: str) -> tuple[Figure, list[Axes]]:
    columns = min(count, 2) or 1
    rows = max(1, -(-count // columns))
    figure = render.new_figure(6.4 * columns, 4.6 * rows)
    figure.suptitle(title, fontsize=11 if columns > 1 else 10)
    axes = [figure.add_subplot(rows, columns, i + 1) for i in range(max(count, 1))]
    return figure, axes


def _log_axis(axis: Axis, values: Iterable[float]) -> None:
    """Log scale with plain numbers at 1, 2 and 5 per decade; minor ticks are labelled too when
    the data spans less than a factor 5 (else no major tick might fall inside the axis)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    present = [v for v in values if is_number(v) and v > 0]
    narrow = bool(present) and max(present) / min(present) < 5
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(plain if narrow else NullFormatter())


def _not_measured(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}: not measured", ha="center", va="center", transform=ax.transAxes,
            color="dimgray")
    ax.set_xticks([])
    ax.set_yticks([])


def _latency_figure(data: pd.DataFrame, failed: pd.DataFrame, x: str, title: str, xlabel: str) -> Figure:
    panels = _panels(data)
    figure, axes = _grid(len(panels), title)
    if not panels:
        _not_measured(axes[0], "latency_ms")
        return figure
    several_dtypes = data["dtype"].nunique() > 1
    for ax, (key, panel) in zip(axes, panels, strict=True):
        for model in ordered_models(panel["model"]):
            line = panel[panel["model"] == model].sort_values(x)
            upper = (line["p90_ms"] - line["median_ms"]).clip(lower=0).fillna(0)
            ax.errorbar(line[x], line["median_ms"], yerr=[[0] * len(line), list(upper)], marker="o",
                        markersize=4, capsize=3, label=model)
        failed_x = _mark_failed(ax, failed, key, x)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        _log_axis(ax.yaxis, pd.concat([panel["median_ms"], panel["p90_ms"]]))
        ticks = sorted(set(panel[x]) | failed_x)
        ax.set_xticks(ticks, [f"{int(v)}" for v in ticks])
        ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("latency per denoiser call (ms, median; bar to p90)")
        ax.set_title(_title(key, several_dtypes))
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return figure


def _mark_failed(ax: Axes, failed: pd.DataFrame, key: Sequence[object], x: str) -> set[float]:
    """An 'x' at the top of the panel where a cell failed (say, out of memory at a large batch),
    with the failed models named; returns the x values marked."""
    device, threads, dtype = key
    rows = failed[(failed["device"] == device) & (failed["dtype"] == dtype)]
    rows = rows[rows["threads"].isna()] if not is_number(threads) else rows[rows["threads"] == threads]
    rows = rows[rows[x].notna()]
    if rows.empty:
        return set()
    top = ax.get_xaxis_transform()
    ax.scatter(rows[x], [0.96] * len(rows), marker="x", color="black", transform=top,
               label="failed cell", zorder=4)
    for value, group in rows.groupby(x):
        ax.annotate("failed:\n" + "\n".join(ordered_models(group["model"])), (value, 0.93),
                    xycoords=top, ha="center", va="top", fontsize=6)
    return set(rows[x])


def draw_latency_vs_batch(latency: pd.DataFrame, failed: pd.DataFrame) -> Figure:
    at = latency[latency["resolution"] == DEFAULT_RESOLUTION]
    return _latency_figure(at, failed[failed["resolution"] == DEFAULT_RESOLUTION], "batch_size",
                           "Latency per denoiser call vs batch size (3x64x64)", "batch size")


def draw_latency_vs_resolution(latency: pd.DataFrame, failed: pd.DataFrame) -> Figure:
    at = latency[latency["batch_size"] == 1]
    return _latency_figure(at, failed[failed["batch_size"] == 1], "resolution",
                           "Latency per denoiser call vs resolution (batch 1, 3 channels)",
                           "resolution (pixels per side)")


def draw_achieved(achieved: pd.DataFrame) -> Figure:
    """Fraction of peak vs batch size at 64x64; panels without a measured peak show GFLOP/s."""
    at = achieved[achieved["resolution"] == DEFAULT_RESOLUTION]
    panels = _panels(at)
    figure, axes = _grid(len(panels), "Achieved compute per denoiser call at 3x64x64\n"
                                      "(torch FLOPs x batch / median latency)")
    if not panels:
        _not_measured(axes[0], "flops_torch with latency_ms")
        return figure
    several_dtypes = at["dtype"].nunique() > 1
    for ax, (key, panel) in zip(axes, panels, strict=True):
        peak = panel["peak_gflops"].dropna()
        relative = not peak.empty
        for model in ordered_models(panel["model"]):
            line = panel[panel["model"] == model].sort_values("batch_size")
            y = line["fraction_of_peak"] * 100 if relative else line["achieved_gflops"]
            ax.plot(line["batch_size"], y, marker="o", markersize=4, label=model)
        ax.set_xscale("log", base=2)
        ticks = sorted(panel["batch_size"].unique())
        ax.set_xticks(ticks, [f"{int(v)}" for v in ticks])
        ax.set_xlabel("batch size")
        title = _title(key, several_dtypes)
        ax.set_yscale("log")
        _log_axis(ax.yaxis, panel["fraction_of_peak"] * 100 if relative else panel["achieved_gflops"])
        if relative:
            ax.set_ylabel("achieved / measured fp32 matmul peak (%)")
            title += f" (peak {peak.iloc[0]:,.0f} GFLOP/s)"
        else:
            ax.set_ylabel("achieved GFLOP/s (2 FLOPs per MAC)")
            title += " (peak_gflops not measured)"
        ax.set_title(title)
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return figure


def write_plots(results: Results, out_dir: Path) -> list[Path]:
    """latency_vs_batch.png, latency_vs_resolution.png, achieved_gflops.png and their data as CSV."""
    latency = latency_data(results)
    failed = failed_latency(results)
    achieved = achieved_data(results, latency)
    return [
        render.save_figure(draw_latency_vs_batch(latency, failed), out_dir / "latency_vs_batch.png"),
        render.save_figure(draw_latency_vs_resolution(latency, failed),
                           out_dir / "latency_vs_resolution.png"),
        render.save_figure(draw_achieved(achieved), out_dir / "achieved_gflops.png"),
        render.write_csv(out_dir / "latency.csv", latency),
        render.write_csv(out_dir / "achieved_gflops.csv", achieved),
    ]
