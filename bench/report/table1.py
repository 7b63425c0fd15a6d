"""Table 1's time column regenerated: seconds per generated sample at the paper's step counts,
ours beside the paper's, and the cU-Net / U-Net ratio of each."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench import paper_data
from bench.report import render
from bench.report.data import (
    FAILED,
    NOT_MEASURED,
    Results,
    context_line,
    environment_details,
    failure,
    fmt,
    is_number,
    pick,
    unique_text,
    where,
)

BACKBONES = {"U-Net": "unet", "cU-Net": "cunet"}
"""Table 1's backbones and the presets we time for them (the released cU-Net, 2 attention blocks)."""
METRIC = "sample_time_s"
RESOLUTION = 64

FRAME_COLUMNS = ["device", "threads", "dataset"] + [
    f"{key}_{field}" for key in BACKBONES.values()
    for field in ("steps", "median_s", "p90_s", "batch_size", "paper_s", "status")
] + ["ratio_ours", "ratio_paper"]


def _sections(results: Results) -> list[tuple[str, float]]:
    """(device, threads) pairs with sample-time rows; CPU first (the paper's device). Threads are
    NaN on CUDA, where they do not change the timing."""
    rows = results.ok[results.ok["metric"] == METRIC]
    keys: set[tuple[str, float | None]] = set()  # None, not NaN: NaN != NaN would split a set
    for device, threads in zip(rows["device"], rows["threads"], strict=True):
        keys.add((device, float(threads) if device == "cpu" and is_number(threads) else None))
    if not keys:
        return [("cpu", float("nan"))]
    ordered = sorted(keys, key=lambda k: (k[0] != "cpu", k[0], -1.0 if k[1] is None else k[1]))
    return [(device, float("nan") if threads is None else threads) for device, threads in ordered]


def _timing(results: Results, model: str, steps: int, device: str, threads: float
            ) -> tuple[pd.Series | None, pd.Series | None]:
    """The median and p90 rows of one (model, steps) run: batch 1 preferred (the paper's setting),
    otherwise the smallest batch measured."""
    exact: dict[str, object] = {"device": device, "steps": steps}
    if is_number(threads):
        exact["threads"] = threads
    rows = where(results.ok, METRIC, model=model, defaults={"resolution": RESOLUTION}, **exact)
    if rows.empty:
        return None, None
    batches = rows["batch_size"]
    batch = 1.0 if (batches == 1).any() or batches.isna().all() else float(batches.min())
    rows = rows[(batches == batch) | batches.isna()] if batch == 1.0 else rows[batches == batch]
    median = pick(rows, stats=("median", "value", "mean"), devices=())
    return median, pick(rows, stats=("p90",), devices=())


def table1_time_data(results: Results) -> pd.DataFrame:
    """One row per (device, threads, dataset) with our median/p90 seconds per sample of unet and
    cunet at that dataset's paper step counts, the paper's seconds, and both cU-Net/U-Net ratios."""
    paper = paper_data.table1()
    records = []
    for device, threads in _sections(results):
        for dataset, group in paper.groupby("dataset", sort=False):
            record: dict[str, object] = {"device": device, "threads": threads, "dataset": dataset}
            for backbone, model in BACKBONES.items():
                row = group[group["backbone"] == backbone].iloc[0]
                steps = int(row["steps"])
                median, p90 = _timing(results, model, steps, device, threads)
                record[f"{model}_steps"] = steps
                record[f"{model}_median_s"] = float("nan") if median is None else float(median["value"])
                record[f"{model}_p90_s"] = float("nan") if p90 is None else float(p90["value"])
                record[f"{model}_batch_size"] = float("nan") if median is None else median["batch_size"]
                record[f"{model}_paper_s"] = float(row["time_s"])
                failed = failure(results, model, METRIC, device=device, steps=steps)
                record[f"{model}_status"] = "ok" if median is not None else (
                    FAILED if failed is not None else NOT_MEASURED)
            record["ratio_ours"] = _ratio(record["cunet_median_s"], record["unet_median_s"])
            record["ratio_paper"] = _ratio(record["cunet_paper_s"], record["unet_paper_s"])
            records.append(record)
    return pd.DataFrame.from_records(records, columns=FRAME_COLUMNS)


def _ratio(numerator: object, denominator: object) -> float:
    if is_number(numerator) and is_number(denominator) and denominator:
        return float(numerator) / float(denominator)  # type: ignore[arg-type]
    return float("nan")


def _ours(record: dict[str, object], model: str) -> str:
    median = record[f"{model}_median_s"]
    if not is_number(median):
        return str(record[f"{model}_status"])
    text = fmt(median, 3)
    if is_number(record[f"{model}_p90_s"]):
        text += f" (p90 {fmt(record[f'{model}_p90_s'], 3)})"
    batch = record[f"{model}_batch_size"]
    if is_number(batch) and batch != 1:
        text += f" [batch {int(batch)}]"  # type: ignore[call-overload]
    return text


def render_markdown(data: pd.DataFrame, results: Results) -> str:
    headers = ["dataset", "U-Net steps", "ours U-Net s/sample (p90)", "paper U-Net s",
               "cU-Net steps", "ours cU-Net s/sample (p90)", "paper cU-Net s",
               "ours cU-Net / U-Net", "paper cU-Net / U-Net"]
    out = ["# Table 1, time column: seconds per generated sample at the paper's step counts", "",
           "Presets: U-Net = `unet`; cU-Net = `cunet` (the released model, 2 attention blocks). "
           "Each time is one whole sampling run at the given number of steps divided by the batch; "
           "ours is the median over repeats, with p90.", ""]
    for (device, threads), section in data.groupby(["device", "threads"], sort=False, dropna=False):
        used = where(results.ok, METRIC, device=device)
        if is_number(threads):
            used = used[used["threads"] == threads]
        title = f"{device}" + (f", {int(threads)} threads" if is_number(threads) else "")
        if used.empty:
            context = ("This run measured no time per sample (metric `sample_time_s`); the `paper` "
                       "profile does: `python -m bench run --profile paper`. Paper values only.")
        else:
            context = (f"Measured at: {context_line(used)}; sampler "
                       f"{', '.join(unique_text(used['sampler'])) or 'not recorded'}.")
        out += [f"## {title}", "", context, ""]
        rows = []
        for record in section.to_dict("records"):
            rows.append([record["dataset"],
                         str(record["unet_steps"]), _ours(record, "unet"), fmt(record["unet_paper_s"], 2),
                         str(record["cunet_steps"]), _ours(record, "cunet"),
                         fmt(record["cunet_paper_s"], 2),
                         fmt(record["ratio_ours"], 2) or NOT_MEASURED, fmt(record["ratio_paper"], 2)])
        out += [render.markdown_table(headers, rows)]
    out += [
        "- The paper timed a CPU with `time.time()` around each denoiser call, one 64x64 image, "
        "summed over the steps, without warm-up, thread control or repeats; "
        "ours warms up, fixes the thread count and reports the median and p90 of repeated runs.",
        "- The ratios compare each backbone at its own step count, as the paper does; the time "
        "does not depend on the dataset, only on the steps (all datasets are 3x64x64).",
        "- 'not measured' means the run had no `sample_time_s` row for that model and step count; "
        "'failed' that the cell failed (see measurements.csv for the error).",
    ]
    return "\n".join(out + environment_details(results))


def write_table1_time(results: Results, out_dir: Path) -> list[Path]:
    """reports/table1_time.md and table1_time.csv."""
    data = table1_time_data(results)
    return [render.write_text(out_dir / "table1_time.md", render_markdown(data, results)),
            render.write_csv(out_dir / "table1_time.csv", data)]
