"""reports/memory.md (+ memory.csv, memory.png): peak inference and training memory against batch
size, per device, and one sentence on where the paper's "1/4 of the memory" holds.

The paper's "MB" is a training-checkpoint size (docs/paper.md, "MB is a training checkpoint size"),
which does not grow with the batch; the memory a denoiser needs while it runs does, and for the
cU-Nets with attention at high resolution it grows faster than the U-Net's.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report import render
from bench.report.data import Results, environment_details, fmt, is_number, ordered_models, pick, where

METRICS = {"peak_infer_mib": "inference", "peak_train_mib": "one training step"}
COLUMNS = ["device", "model", "batch_size", "phase", "peak_mib", "method"]


def memory_data(results: Results) -> pd.DataFrame:
    """One row per (device, model, batch, phase) with the peak MiB (the last measured), float32
    only: the claim it is read against is about float32 networks, and a bfloat16 row must never
    replace a float32 one unlabelled (bfloat16 rows stay in measurements.csv)."""
    rows = results.ok[results.ok["metric"].isin(list(METRICS))].copy()
    rows = rows[(rows["resolution"].fillna(64.0) == 64.0)
                & rows["dtype"].isin(["float32", ""])]
    records = []
    for (device, model, batch, metric), group in rows.groupby(
            ["device", "model", "batch_size", "metric"], sort=False, dropna=False):
        last = group.sort_values("order").iloc[-1]
        records.append({"device": device, "model": model,
                        "batch_size": 1.0 if not is_number(batch) else float(batch),
                        "phase": METRICS[metric], "peak_mib": float(last["value"]),
                        "method": str(last["method"])})
    data = pd.DataFrame.from_records(records, columns=COLUMNS)
    if data.empty:
        return data
    rank = {m: i for i, m in enumerate(ordered_models(data["model"]))}
    return data.sort_values(["device", "phase", "model", "batch_size"],
                            key=lambda c: c.map(rank) if c.name == "model" else c).reset_index(drop=True)


def claim_sentence(data: pd.DataFrame, results: Results, model: str, reference: str = "unet") -> str:
    """Where the paper's 1/4-memory claim holds for `model`, from the measured numbers."""
    checkpoint = {m: pick(where(results.ok, "checkpoint_mib", model=m)) for m in (model, reference)}
    parts = []
    if all(row is not None for row in checkpoint.values()):
        ratio = float(checkpoint[model]["value"]) / float(checkpoint[reference]["value"])
        verdict = "where the claim holds" if ratio <= 0.3 else "and even there the claim does not hold"
        parts.append(f"its training checkpoint is {fmt(ratio, 2)} x `{reference}`'s (the paper's "
                     f"'MB'), {verdict}")
    infer = data[data["phase"] == "inference"]
    for device, section in infer.groupby("device", sort=False):
        ours = section[section["model"] == model].set_index("batch_size")["peak_mib"]
        base = section[section["model"] == reference].set_index("batch_size")["peak_mib"]
        common = sorted(set(ours.index) & set(base.index))
        if not common:
            continue
        low, high = common[0], common[-1]
        at = f"{fmt(ours[low] / base[low], 2)} x at batch {int(low)}"
        if high != low:
            at += f" and {fmt(ours[high] / base[high], 2)} x at batch {int(high)}"
        parts.append(f"peak inference memory on {device} is {at}"
                     + (" (more than the U-Net)" if ours[high] > base[high] else ""))
    if not parts:
        return f"`{model}`: not enough memory measurements to compare with `{reference}`."
    return f"`{model}` against `{reference}`: " + "; ".join(parts) + "."


def render_markdown(data: pd.DataFrame, results: Results) -> str:
    out = ["# Memory against batch size", "",
           "Peak memory while the denoiser runs, at 64x64: inference (one forward in inference mode) "
           "and one training step (forward, backward, Adam). CPU: resident-set peak of a fresh "
           "process less its baseline; CUDA: the allocator's peak. The paper's \"MB\" (Table 2) is a "
           "training-checkpoint size, which does not depend on the batch.", ""]
    if data.empty:
        return "\n".join(out + ["This run measured no memory.", ""] + environment_details(results))
    for (device, phase), section in data.groupby(["device", "phase"], sort=False):
        batches = sorted(section["batch_size"].unique())
        out += [f"## {device}, {phase} (peak MiB)", ""]
        rows = []
        for model in ordered_models(section["model"]):
            mine = section[section["model"] == model].set_index("batch_size")["peak_mib"]
            rows.append([model] + [fmt(mine.get(b), 1) if b in mine.index else "" for b in batches])
        out += [render.markdown_table(["model"] + [f"batch {int(b)}" for b in batches], rows), ""]
    out += ["## Where the paper's \"1/4 of the memory\" holds", ""]
    for model in ("cunet", "cunet-attn5"):
        if model in set(data["model"]):
            out += [f"- {claim_sentence(data, results, model)}"]
    out += [""]
    return "\n".join(out + environment_details(results))


def draw_memory(data: pd.DataFrame):
    panels = list(data.groupby(["device", "phase"], sort=False))
    figure = render.new_figure(4.5 * len(panels), 3.6)
    for index, ((device, phase), section) in enumerate(panels):
        ax = figure.add_subplot(1, len(panels), index + 1)
        for model in ordered_models(section["model"]):
            mine = section[section["model"] == model].sort_values("batch_size")
            ax.plot(mine["batch_size"], mine["peak_mib"], marker="o", label=model)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("peak MiB")
        ax.set_title(f"{device}, {phase}", fontsize=9)
        ax.legend(fontsize=6)
    return figure


def write_memory_report(results: Results, out_dir: Path) -> list[Path]:
    data = memory_data(results)
    if data.empty:
        return []
    return [render.write_text(out_dir / "memory.md", render_markdown(data, results)),
            render.write_csv(out_dir / "memory.csv", data.drop(columns=["method"])),
            render.save_figure(draw_memory(data), out_dir / "memory.png")]
