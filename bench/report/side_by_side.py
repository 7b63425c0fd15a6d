"""reports/side_by_side.md (+ .csv): every model of a run side by side, per resolution: parameters,
thop and fvcore MACs, checkpoint MiB, peak inference memory, per-call latency and its same-run
ratio, time per sample. For comparing the paper's networks with a peer (e.g. the `peers` profile's
diffusers DDPM) or a user's own model; each column says its convention."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report import render
from bench.report.data import Results, environment_details, fmt, fmt_int, ordered_models, pick, where

COLUMNS = [
    ("params", "params (count)", None, lambda v: fmt_int(v)),
    ("macs_thop", "thop GMACs (paper 'GFLOPS')", 1e-9, lambda v: fmt(v, 3)),
    ("macs_fvcore", "fvcore GMACs", 1e-9, lambda v: fmt(v, 3)),
    ("checkpoint_mib", "checkpoint MiB (paper 'MB')", None, lambda v: fmt(v, 1)),
    ("peak_infer_mib", "peak inference MiB (batch 1)", None, lambda v: fmt(v, 1)),
    ("latency_ms", "latency ms (median, batch 1)", None, lambda v: fmt(v, 1)),
    ("latency_ratio", "latency ratio (same run)", None, lambda v: fmt(v, 3)),
]


def side_by_side_data(results: Results) -> pd.DataFrame:
    ok = results.ok
    resolutions = sorted({float(r) for r in ok["resolution"].dropna()}) or [64.0]
    records = []
    for resolution in resolutions:
        for model in ordered_models(ok.loc[ok["metric"] != "peak_gflops", "model"]):
            if model == "machine":
                continue
            record: dict[str, object] = {"model": model, "resolution": resolution}
            for metric, _, scale, _ in COLUMNS:
                rows = where(ok, metric, model=model, defaults={"batch_size": 1})
                rows = rows[rows["resolution"].isna() | (rows["resolution"] == resolution)] \
                    if metric not in ("params", "checkpoint_mib") else rows
                chosen = pick(rows, stats=("median", "value", "mean"), devices=("cpu", "cuda"))
                value = float("nan") if chosen is None else float(chosen["value"])
                record[metric] = value * scale if scale else value
            samples = where(ok, "sample_time_s", model=model)
            samples = samples[samples["resolution"].isna() | (samples["resolution"] == resolution)]
            chosen = pick(samples, stats=("median",), devices=("cpu", "cuda"))
            record["sample_time_s"] = float("nan") if chosen is None else float(chosen["value"])
            record["sample_steps"] = float("nan") if chosen is None else chosen["steps"]
            records.append(record)
    return pd.DataFrame.from_records(records)


def render_markdown(data: pd.DataFrame, results: Results) -> str:
    out = ["# Side by side", "",
           "Every model of the run at each resolution, batch 1. Latency ratios are to the reference "
           "model timed in the same round-robin cell; absolute times are comparable within this run "
           "only.", ""]
    for resolution, section in data.groupby("resolution", sort=True):
        out += [f"## {int(resolution)}x{int(resolution)}", ""]
        headers = ["model"] + [header for _, header, _, _ in COLUMNS] + ["time per sample s (steps)"]
        rows = []
        for record in section.to_dict("records"):
            steps = record["sample_steps"]
            sample = (f"{fmt(record['sample_time_s'], 3)} ({int(steps)})"
                      if fmt(record["sample_time_s"], 3) else "not measured")
            rows.append([record["model"]] + [render_value(record[m], show)
                                             for m, _, _, show in COLUMNS] + [sample])
        out += [render.markdown_table(headers, rows), ""]
    return "\n".join(out + environment_details(results))


def render_value(value: object, show) -> str:
    text = show(value)
    return text if text else "not measured"


def write_side_by_side(results: Results, out_dir: Path) -> list[Path]:
    data = side_by_side_data(results)
    if data.empty or data["model"].nunique() < 2:
        return []
    return [render.write_text(out_dir / "side_by_side.md", render_markdown(data, results)),
            render.write_csv(out_dir / "side_by_side.csv", data)]
