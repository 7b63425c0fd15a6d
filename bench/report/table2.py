"""Table 2 regenerated: the paper's "GFLOPS" and "MB" beside ours in the same conventions, then
the counts an honest report adds (complete MACs, FLOPs, NFE, parameter storage, peak memory)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import paper_data
from bench.report import render
from bench.report.data import (
    AT_PAPER_INPUT,
    FAILED,
    NOT_MEASURED,
    Results,
    context_line,
    environment_details,
    failure,
    fmt,
    fmt_int,
    fmt_pct,
    is_number,
    measured_models,
    ordered_models,
    pct_diff,
    pick,
    value_of,
    where,
)

GIGA = 1e9
MEMORY_DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Column:
    key: str
    """Column of the shaped frame (and of table2.csv)."""
    header: str
    metric: str | None
    """The measurement behind it (None: the paper's number or one derived from others)."""
    format: Callable[[object], str]


def _digits(n: int) -> Callable[[object], str]:
    return lambda value: fmt(value, n)


COLUMNS = (
    Column("paper_gflops", "paper 'GFLOPS' (= thop GMACs)", None, _digits(2)),
    Column("thop_gmacs", "ours: thop GMACs (paper 'GFLOPS')", "macs_thop", _digits(3)),
    Column("thop_diff_pct", "\u0394 thop vs paper", None, fmt_pct),
    Column("paper_mb", "paper 'MB' (= checkpoint MiB)", None, _digits(1)),
    Column("checkpoint_mib", "ours: checkpoint MiB (paper 'MB')", "checkpoint_mib", _digits(2)),
    Column("checkpoint_diff_pct", "\u0394 checkpoint vs paper", None, fmt_pct),
    Column("fvcore_gmacs", "fvcore GMACs (with attention matmuls, norms)", "macs_fvcore", _digits(3)),
    Column("torch_gflops", "torch GFLOPs (flop_counter, 2 per MAC)", "flops_torch", _digits(3)),
    Column("nfe", "NFE per call", "nfe", fmt_int),
    Column("params", "params (count)", "params", fmt_int),
    Column("param_mib", "parameter MiB", "param_mib", _digits(2)),
)
MEMORY_HEADER = "peak inference MiB (batch 1; device, method)"
METRICS = tuple(c.metric for c in COLUMNS if c.metric) + ("peak_infer_mib",)


@dataclass(frozen=True)
class Table2:
    frame: pd.DataFrame
    """One row per model: `model`, `paper_label`, the COLUMNS keys, and per memory device d
    `peak_infer_mib_<d>` and `peak_infer_method_<d>`."""
    failed: dict[tuple[str, str], str]
    """(model, metric) -> error, for measurements at 1x3x64x64 that failed."""
    used: pd.DataFrame
    """The rows the table was drawn from (for the context line)."""
    continuous: frozenset[str] = frozenset()
    """Models solved as ODEs (their rows say so): NFE applies to them only."""


def table2_data(results: Results) -> Table2:
    """Shape Table 2: every Table 2 preset and every measured model, paper numbers where the paper
    has a row for that configuration (matched through `paper_data.TABLE2_PRESET`)."""
    paper = paper_data.table2()
    paper_by_preset = {paper_data.TABLE2_PRESET[row.model]: row for row in paper.itertuples()}
    models = ordered_models(set(measured_models(results)) | set(paper_by_preset))
    records, used, failed = [], [], {}
    for model in models:
        record: dict[str, object] = {"model": model}
        row = paper_by_preset.get(model)
        record["paper_label"] = row.paper_label if row is not None else ""
        record["paper_gflops"] = float(row.gflops) if row is not None else float("nan")
        record["paper_mb"] = float(row.mb) if row is not None else float("nan")
        for column in COLUMNS:
            if column.metric is None:
                continue
            chosen = pick(where(results.ok, column.metric, model=model, defaults=AT_PAPER_INPUT))
            value = value_of(chosen)
            if column.metric in ("macs_thop", "macs_fvcore", "flops_torch"):
                value /= GIGA
            record[column.key] = value
            if chosen is not None:
                used.append(chosen)
            else:
                error = failure(results, model, column.metric, defaults=AT_PAPER_INPUT)
                if error is not None:
                    failed[(model, column.metric)] = error
        record["thop_diff_pct"] = pct_diff(record["thop_gmacs"], record["paper_gflops"])  # type: ignore[arg-type]
        record["checkpoint_diff_pct"] = pct_diff(record["checkpoint_mib"], record["paper_mb"])  # type: ignore[arg-type]
        for device in MEMORY_DEVICES:
            rows = where(results.ok, "peak_infer_mib", model=model, defaults=AT_PAPER_INPUT, device=device)
            chosen = pick(rows, stats=("value", "max", "median"))
            record[f"peak_infer_mib_{device}"] = value_of(chosen)
            record[f"peak_infer_method_{device}"] = "" if chosen is None else str(chosen["method"])
            if chosen is not None:
                used.append(chosen)
        if not any(is_number(record[f"peak_infer_mib_{d}"]) for d in MEMORY_DEVICES):
            error = failure(results, model, "peak_infer_mib", defaults=AT_PAPER_INPUT)
            if error is not None:
                failed[(model, "peak_infer_mib")] = error
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    continuous = frozenset(m for m in models if _is_continuous(results, m))
    return Table2(frame, failed, pd.DataFrame(used) if used else results.ok.iloc[0:0], continuous)


def _is_continuous(results: Results, model: str) -> bool:
    """Whether the model's rows say it is solved as ODEs (a `solver` or an `nfe` row); a model
    without rows counts as continuous, so its NFE reads 'not measured' rather than 'none'."""
    rows = pd.concat([results.ok, results.failed])
    rows = rows[rows["model"] == model]
    if rows.empty:
        return True
    return bool((rows["solver"] != "").any() or (rows["metric"] == "nfe").any())


def _cells(table: Table2, blank: str) -> tuple[list[str], list[list[str]]]:
    headers = ["model", "paper row"] + [c.header for c in COLUMNS] + [MEMORY_HEADER]
    rows = []
    for record in table.frame.to_dict("records"):
        model = record["model"]
        cells = [model, record["paper_label"] or "not in Table 2"]
        for column in COLUMNS:
            text = column.format(record[column.key])
            if not text:
                if column.metric is None:
                    text = blank
                elif (model, column.metric) in table.failed:
                    text = FAILED
                elif column.metric == "nfe" and model not in table.continuous:
                    text = "n/a (no ODE)"
                else:
                    text = NOT_MEASURED
            cells.append(text)
        memory = [f"{fmt(record[f'peak_infer_mib_{d}'], 1)} ({d}, {record[f'peak_infer_method_{d}'] or '?'})"
                  for d in MEMORY_DEVICES if is_number(record[f"peak_infer_mib_{d}"])]
        if not memory:
            memory = [FAILED if (model, "peak_infer_mib") in table.failed else NOT_MEASURED]
        cells.append("; ".join(memory))
        rows.append(cells)
    return headers, rows


def notes(table: Table2) -> list[str]:
    """The paragraphs under the table: which configuration is which, and what each counter misses."""
    paper = paper_data.table2().set_index("model")
    figure4 = paper_data.figure4().set_index("model")
    cu = paper.loc["cunet"] if "cunet" in paper.index else None
    lines = []
    if cu is not None:
        preset = paper_data.TABLE2_PRESET["cunet"]
        fig_params = int(figure4.loc["cunet", "params"]) if "cunet" in figure4.index else None
        lines.append(
            f"The paper's Table 2 cU-Net row ({cu.gflops:.2f} 'GFLOPS', {cu.mb:.1f} 'MB') matches our "
            f"`{preset}`: the continuous U-Net with 5 attention blocks. Figure 4's cU-Net "
            + (f"({fig_params:,} parameters) " if fig_params else "")
            + "is our `cunet`, the released model with 2 attention blocks, which has no row in the "
            "paper's Table 2: the paper mixes the two configurations.")
    lines += [
        "Compute is per denoiser call on one 1x3x64x64 input (batch 1); a continuous model's call "
        "includes all NFE evaluations of its ODE blocks.",
        "thop (the paper's 'GFLOPS') counts multiply-accumulates of convolution and linear layers "
        "only: it skips the attention matrix products (matmul / einsum / SDPA) and the normalisation "
        "layers, and one MAC is two FLOPs. fvcore counts MACs including matmuls and norms; "
        "torch.utils.flop_counter counts FLOPs (2 per MAC).",
        "'MB' is the size of a training checkpoint (model weights and schedule buffers, an EMA copy, "
        "Adam's two moments per trainable parameter), not memory used while sampling; parameter MiB "
        "is the weights alone, peak inference MiB the measured peak of one call.",
        "\u0394 = (ours - paper) / paper, against the paper's rounded numbers.",
    ]
    if table.failed:
        lines.append("Failed measurements: " + "; ".join(
            f"{model} {metric}: {error}" for (model, metric), error in sorted(table.failed.items())))
    return lines


def render_markdown(table: Table2, results: Results) -> str:
    headers, rows = _cells(table, "\u2014")
    out = ["# Table 2: compute and size per model, the paper's conventions and ours", "",
           f"Measured at: {context_line(table.used)}.", "",
           render.markdown_table(headers, rows, align_left=2)]
    out += [f"- {line}" for line in notes(table)]
    return "\n".join(out + environment_details(results))


def render_latex(table: Table2) -> str:
    headers, rows = _cells(table, "\u2014")
    caption = ("Compute and size per model: the paper's Table 2 numbers beside ours in the same "
               "conventions, then complete counts.")
    notes_ = [f"Measured at: {context_line(table.used)}."] + notes(table)
    return render.latex_table(headers, rows, caption, "tab:table2", notes_, align_left=2)


def csv_frame(table: Table2) -> pd.DataFrame:
    """table2.csv: the shaped numbers, plus a status per measured column."""
    frame = table.frame.copy()
    for column in COLUMNS:
        if column.metric is None:
            continue
        frame[f"{column.key}_status"] = [
            "ok" if is_number(value) else (FAILED if (model, column.metric) in table.failed else NOT_MEASURED)
            for model, value in zip(frame["model"], frame[column.key], strict=True)]
    return frame


def write_table2(results: Results, out_dir: Path) -> list[Path]:
    """reports/table2.md, table2.tex and table2.csv."""
    table = table2_data(results)
    return [render.write_text(out_dir / "table2.md", render_markdown(table, results)),
            render.write_text(out_dir / "table2.tex", render_latex(table)),
            render.write_csv(out_dir / "table2.csv", csv_frame(table))]

