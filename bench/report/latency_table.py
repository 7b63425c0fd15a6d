"""reports/latency.md: per-call latency of every model in every measured context, its same-run
ratio to the reference model, and beside it the authors' ratio to THEIR U-Net (both same-run
ratios). The authors' absolute milliseconds came from another machine on another day, so no
report divides our milliseconds by theirs.

Where the rows recorded the machine's load while they were timed (`bench.measure.load`), every
context shows the share of the cores other work held, and a timing taken while that share was
above `BUSY_SHARE` is marked BUSY: its times are not to be trusted. Rows of runs that did not
record the load draw the report as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench import paper_data
from bench.measure.load import BUSY_SHARE
from bench.report import render
from bench.report.data import (
    NOT_MEASURED,
    Results,
    context_line,
    environment_details,
    fmt,
    fmt_int,
    is_number,
    ordered_models,
    unique_text,
    where,
)

METRIC = "latency_ms"
RATIO = "latency_ratio"
KEYS = ["device", "threads", "dtype", "resolution", "batch_size"]
FRAME_COLUMNS = KEYS + ["model", "median_ms", "p90_ms", "min_ms", "n", "ratio", "ratio_to",
                        "authors_ratio", "load_other", "busy"]


def _value(rows: pd.DataFrame, metric: str, stat: str) -> pd.Series | None:
    chosen = rows[(rows["metric"] == metric) & (rows["stat"] == stat)]
    return None if chosen.empty else chosen.sort_values("order").iloc[-1]


def latency_table_data(results: Results) -> pd.DataFrame:
    """One row per context and model with median/p90/min ms, calls, the same-run ratio and (where
    the context is the authors': CPU, batch 1, 64x64) the authors' latency and ratio to U-Net."""
    rows = results.ok[results.ok["metric"].isin([METRIC, RATIO])]
    authors = paper_data.authors_latency().set_index("model")
    records = []
    for key, group in rows.groupby(KEYS, sort=True, dropna=False):
        context = dict(zip(KEYS, key, strict=True))
        for model in ordered_models(group["model"]):
            mine = group[group["model"] == model]
            median, p90, low = (_value(mine, METRIC, s) for s in ("median", "p90", "min"))
            ratio = _value(mine, RATIO, "median")
            record = {**context, "model": model,
                      "median_ms": float("nan") if median is None else float(median["value"]),
                      "p90_ms": float("nan") if p90 is None else float(p90["value"]),
                      "min_ms": float("nan") if low is None else float(low["value"]),
                      "n": float("nan") if median is None else median["n"],
                      "ratio": float("nan") if ratio is None else float(ratio["value"]),
                      "ratio_to": "" if ratio is None else str(ratio["unit"]).removeprefix("x "),
                      "authors_ratio": float("nan")}
            comparable = (context["device"] == "cpu" and context["batch_size"] == 1
                          and context["resolution"] == 64)
            if comparable and model in authors.index:
                record["authors_ratio"] = (float(authors.loc[model, "latency_ms"])
                                           / float(authors.loc["unet", "latency_ms"]))
            record.update(_load_of(median if median is not None else ratio))
            records.append(record)
    return pd.DataFrame.from_records(records, columns=FRAME_COLUMNS)


def _load_of(timed: pd.Series | None) -> dict[str, object]:
    """load_other (NaN where not recorded) and busy (None where not recorded) of a timed row."""
    if timed is None:
        return {"load_other": float("nan"), "busy": None}
    share = pd.to_numeric(pd.Series([timed.get("load_other")]), errors="coerce").iloc[0]
    flag = str(timed.get("busy", "")).strip().lower()
    busy = True if flag in ("true", "1") else False if flag in ("false", "0") else None
    return {"load_other": float(share), "busy": busy}


def _is_busy(flag: object) -> bool:
    return isinstance(flag, bool | np.bool_) and bool(flag)


def _load_cell(record: dict[str, object]) -> str:
    """The load column's text: "48 % BUSY", "3 %", or "" where not recorded."""
    share = record["load_other"]
    if not is_number(share):
        return ""
    return f"{100 * float(share):.0f} %" + (" BUSY" if _is_busy(record["busy"]) else "")


def _busy_notes(section: pd.DataFrame) -> list[str]:
    """One line per context of the section that was timed while other work was busy."""
    notes = []
    busy = section[section["busy"].map(_is_busy).astype(bool)]
    for (resolution, batch), context in busy.groupby(["resolution", "batch_size"], sort=True,
                                                      dropna=False):
        share = context["load_other"].max()
        notes.append(f"- BUSY: batch {fmt_int(batch)} at {fmt_int(resolution)}x{fmt_int(resolution)} "
                     f"was timed while other work held {100 * share:.0f} % of the cores (more than "
                     f"{100 * BUSY_SHARE:.0f} %): its times are not to be trusted; re-measure with "
                     f"`--remeasure {METRIC}` on a quieter machine.")
    return notes


def render_markdown(data: pd.DataFrame, results: Results) -> str:
    out = ["# Latency per denoiser call", "",
           "Every model of a context is timed round-robin in one run (each round times a few calls "
           "of every model, in a rotated order), so the models' times come from the same stretch of "
           "machine load. The ratio is the median over rounds of (model's round median / the "
           "reference's round median of the same round): on a shared machine it is far steadier "
           "than the absolute times.", ""]
    if data.empty:
        out += [f"This run measured no latency (metric `{METRIC}`).", ""]
    headers = ["resolution", "batch", "model", "median ms", "p90 ms", "min ms", "calls",
               "ratio (same run)", "authors' ratio to their U-Net"]
    for (device, threads, dtype), section in data.groupby(["device", "threads", "dtype"], sort=False,
                                                           dropna=False):
        used = where(results.ok, METRIC, device=device, dtype=dtype)
        if is_number(threads):
            used = used[used["threads"] == threads]
        title = f"{device}, {dtype}" + (f", {int(threads)} threads" if is_number(threads) else "")
        out += [f"## {title}", "", f"Measured at: {context_line(used)}; "
                f"{'; '.join(unique_text(used['method'])[:1]) or 'method not recorded'}.", ""]
        with_load = section["load_other"].map(is_number).any()  # older runs: drawn as before
        rows = []
        for r in section.to_dict("records"):
            ratio = (f"{fmt(r['ratio'], 3)} x {r['ratio_to']}" if is_number(r["ratio"]) else NOT_MEASURED)
            rows.append([fmt_int(r["resolution"]), fmt_int(r["batch_size"]), r["model"],
                         fmt(r["median_ms"], 1) or NOT_MEASURED, fmt(r["p90_ms"], 1),
                         fmt(r["min_ms"], 1), fmt_int(r["n"]), ratio, fmt(r["authors_ratio"], 2)]
                        + ([_load_cell(r)] if with_load else []))
        notes = _busy_notes(section)
        out += notes + ([""] if notes else [])
        out += [render.markdown_table(headers + (["other load"] if with_load else []), rows), ""]
    out += [
        "- Authors' ratio: our re-measurement of the authors' implementation (docs/paper.md, \"The "
        "authors' latency, re-measured\") on a "
        "2-core x86 CPU (2 threads, batch 1, 64x64, inference mode, median of 15 after warm-up), "
        "each model's latency divided by their U-Net's from the same measurement. Compare it with "
        "the same-run ratio column, never our milliseconds with theirs: their absolute times came "
        "from another machine on another day (timed side by side in one process, our networks and "
        "theirs run at parity: the same section).",
        "- A failed model (say, out of memory at a large batch) has no row here; measurements.csv "
        "holds its error.",
    ]
    if not data.empty and data["load_other"].map(is_number).any():
        out.append(f"- Other load: the share of the machine's cores that other processes held while "
                   f"the context was timed (psutil; `load_other` in measurements.csv). BUSY: more "
                   f"than {100 * BUSY_SHARE:.0f} %, the times are not to be trusted.")
    return "\n".join(out + environment_details(results))


def write_latency_table(results: Results, out_dir: Path) -> list[Path]:
    """reports/latency.md and latency_table.csv (latency.csv is the plots' data)."""
    data = latency_table_data(results)
    return [render.write_text(out_dir / "latency.md", render_markdown(data, results)),
            render.write_csv(out_dir / "latency_table.csv", data)]
