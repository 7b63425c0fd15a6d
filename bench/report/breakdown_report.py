"""reports/profile.md (+ profile_blocks.csv, profile.png): where each denoiser's time goes, from the
breakdown rows of a run (the matrix's torch.profiler metric, or `python -m bench breakdown`'s
breakdown.csv). Rows of results written before the rename (`profile_*`) are read as today's
(`breakdown_*`); the report's file names stay those of the committed reports.

Per context: the share of the call in each block category (comparable across architectures), the
per-block table of every model, the kinds of work, and on CUDA the GPU's busy time and the
launch-bound fraction. All profiled times include the profiler's overhead.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.measure.breakdown import (
    BLOCK_CATEGORIES,
    BLOCK_MS,
    BLOCK_PCT,
    CALL_MS,
    GPU_BUSY_MS,
    KERNELS,
    KIND_MS,
    KINDS,
    LAUNCH_BOUND_PCT,
    MEAN_KERNEL_US,
    category_of,
    is_breakdown_metric,
    with_current_names,
)
from bench.report import render
from bench.report.data import Results, environment_details, fmt, ordered_models

KEYS = ["device", "dtype", "batch_size", "resolution", "mode"]


def category_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model (and context): percent of the call in each block category."""
    rows = with_current_names(frame)
    rows = rows[rows["metric"] == BLOCK_PCT].copy()
    rows["category"] = rows["stat"].map(category_of)
    keys = [c for c in ("model", "device", "dtype", "batch_size", "mode") if c in rows]
    wide = rows.pivot_table(index=keys, columns="category", values="value", aggfunc="sum", fill_value=0.0)
    return wide.reindex(columns=[c for c in BLOCK_CATEGORIES if c in wide.columns]).reset_index()


def draw_blocks(frame: pd.DataFrame):
    """Stacked bars: each model's call split into block categories (percent)."""
    wide = category_frame(frame)
    order = {m: i for i, m in enumerate(ordered_models(wide["model"]))}
    wide = wide.sort_values("model", key=lambda c: c.map(order))
    labels = [f"{r['model']}\n{r['device']}, b{int(r['batch_size'])}" for _, r in wide.iterrows()]
    figure = render.new_figure(1.6 + 1.3 * len(wide), 4.0)
    ax = figure.add_subplot(1, 1, 1)
    bottom = [0.0] * len(wide)
    for category in [c for c in BLOCK_CATEGORIES if c in wide.columns]:
        values = wide[category].tolist()
        ax.bar(range(len(wide)), values, bottom=bottom, label=category)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(range(len(wide)), labels, fontsize=7)
    ax.set_ylabel("% of the profiled call")
    ax.set_title("where the time goes (torch.profiler, with its overhead)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figure

def _breakdown_rows(results: Results) -> pd.DataFrame:
    frame = results.all_modes if results.all_modes is not None else results.ok
    rows = with_current_names(frame[is_breakdown_metric(frame["metric"])]).copy()
    rows["mode"] = rows["mode"].where(rows["mode"] != "", "eager")
    return rows


def render_markdown(rows: pd.DataFrame, results: Results) -> str:
    out = ["# Where the time goes", "",
           "torch.profiler over several calls after warm-up, per-call means. Each block's time is "
           "exclusive (a cU-Net's ODE solver row is the block's own time: the solver's bookkeeping "
           "around its ODE function's evaluations), so the shares add up to 100 %. These are "
           "profiled times, with the profiler's overhead: compare shares, and take latencies from "
           "the latency report.", ""]
    for key, section in rows.groupby(KEYS, sort=False, dropna=False):
        context = dict(zip(KEYS, key, strict=True))
        out += [f"## {context['device']}, {context['dtype']}, batch {int(context['batch_size'])}, "
                f"{int(context['resolution'])}x{int(context['resolution'])}, {context['mode']}", ""]
        names = ordered_models(section["model"])
        wide = category_frame(section).set_index("model")
        cats = [c for c in BLOCK_CATEGORIES if c in wide.columns]
        table = []
        for model in names:
            call = section[(section["model"] == model) & (section["metric"] == CALL_MS)]
            table.append([model, fmt(call["value"].iloc[-1], 2) if not call.empty else ""]
                         + [fmt(wide.loc[model, c], 1) for c in cats])
        out += [render.markdown_table(["model", "profiled ms"] + [f"% {c}" for c in cats], table), ""]
        kinds_table = []
        for model in names:
            mine = section[(section["model"] == model) & (section["metric"] == KIND_MS)]
            total = mine["value"].sum()
            by = mine.set_index("stat")["value"]
            kinds_table.append([model] + [fmt(100 * by.get(k, 0.0) / total, 1) if total else ""
                                          for k in KINDS])
        out += ["Kinds of work (% of the call; 'other' = Python and dispatch between operators):", "",
                render.markdown_table(["model"] + list(KINDS), kinds_table), ""]
        gpu = section[section["metric"].isin([LAUNCH_BOUND_PCT, KERNELS,
                                              MEAN_KERNEL_US, GPU_BUSY_MS])]
        if not gpu.empty:
            table = []
            for model in names:
                mine = gpu[gpu["model"] == model].set_index("metric")["value"]
                table.append([model, fmt(mine.get(GPU_BUSY_MS), 3),
                              fmt(mine.get(LAUNCH_BOUND_PCT), 1),
                              fmt(mine.get(KERNELS), 0),
                              fmt(mine.get(MEAN_KERNEL_US), 1)])
            out += [render.markdown_table(["model", "GPU busy ms", "GPU idle (launch-bound) %",
                                           "kernels per call", "mean kernel us"], table), ""]
        for model in names:
            blocks = section[(section["model"] == model) & (section["metric"] == BLOCK_PCT)]
            ms = section[(section["model"] == model) & (section["metric"] == BLOCK_MS)]
            ms = ms.set_index("stat")["value"]
            out += [f"<details><summary>{model}: every block</summary>", "",
                    render.markdown_table(["block", "category", "ms", "%"],
                                          [[b, category_of(b), fmt(ms.get(b), 3), fmt(v, 1)]
                                           for b, v in zip(blocks["stat"], blocks["value"], strict=True)]),
                    "", "</details>", ""]
    return "\n".join(out + environment_details(results))


def write_breakdown_report(results: Results, out_dir: Path) -> list[Path]:
    """profile.md, profile_blocks.csv and profile.png of the run's breakdown rows (none without)."""
    rows = _breakdown_rows(results)
    if rows.empty:
        return []
    return [render.write_text(out_dir / "profile.md", render_markdown(rows, results)),
            render.write_csv(out_dir / "profile_blocks.csv", category_frame(rows)),
            render.save_figure(draw_blocks(rows), out_dir / "profile.png")]
