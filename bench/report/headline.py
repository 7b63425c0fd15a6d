"""The headline of a run, for the terminal: what `python -m bench run` prints when it is done.

Efficiency runs: Table 2's core columns beside the paper's numbers (thop GMACs = the paper's
'GFLOPS', checkpoint MiB = its 'MB') and the same-run latency ratios at the paper's input beside
the authors' ratios. Quality runs: Table 1's rows (best score, the steps at best, the fewest steps
within 5 %). Drawn from the same shaping functions as the report files, so the terminal and the
files never disagree; the files hold the notes and the context.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.data import Results, fmt, fmt_int, fmt_pct, is_number, load_results
from bench.report.latency_table import latency_table_data
from bench.report.render import markdown_table
from bench.report.table2 import table2_data


def efficiency_headline(results: Results) -> str:
    """Table 2 (paper beside ours, the paper's conventions) and the same-run latency ratios."""
    table = table2_data(results).frame
    latency = _first_context_latency(latency_table_data(results))
    headers = ["model", "params", "thop GMACs (paper 'GFLOPS')", "checkpoint MiB (paper 'MB')",
               "NFE", "latency ratio, same run"]
    rows = []
    for record in table.to_dict("records"):
        model = record["model"]
        measured = [record.get(k) for k in ("params", "thop_gmacs", "checkpoint_mib")]
        if not any(is_number(v) for v in measured) and model not in latency.index:
            continue  # a paper row this run did not measure
        rows.append([model, fmt_int(record["params"]) or "-",
                     _beside(fmt(record["thop_gmacs"], 3), fmt(record["paper_gflops"], 2),
                             fmt_pct(record["thop_diff_pct"])),
                     _beside(fmt(record["checkpoint_mib"], 1), fmt(record["paper_mb"], 1),
                             fmt_pct(record["checkpoint_diff_pct"])),
                     fmt_int(record["nfe"]) or "-", _latency_cell(latency, model)])
    if not rows:
        return "nothing of Table 2 or the latency table was measured in this run"
    lines = ["Table 2: counts at 1x3x64x64, batch 1, float32 (ours, then the paper's number and the "
             "difference)"]
    if not latency.empty:
        first = latency.iloc[0]
        lines.append(f"latency: per-call ratio to {first['ratio_to']} timed round-robin in one run, "
                     f"{first['device']}, {first['dtype']}, {fmt_int(first['resolution'])}x"
                     f"{fmt_int(first['resolution'])}, batch {fmt_int(first['batch_size'])}"
                     " (authors' ratio to their U-Net where comparable)")
    return "\n".join(lines) + "\n" + markdown_table(headers, rows)


def _first_context_latency(data: pd.DataFrame) -> pd.DataFrame:
    """The latency rows of one context, one per model: the paper's (CPU, batch 1, 64x64, float32)
    when measured, else the first context of the run."""
    if data.empty:
        return data.set_index("model")
    paper = data[(data["device"] == "cpu") & (data["batch_size"] == 1) & (data["resolution"] == 64)
                 & (data["dtype"] == "float32")]
    first = data.iloc[0]
    chosen = paper if not paper.empty else data[
        (data["device"] == first["device"]) & (data["dtype"] == first["dtype"])
        & (data["resolution"] == first["resolution"]) & (data["batch_size"] == first["batch_size"])]
    return chosen.drop_duplicates("model").set_index("model")


def _beside(ours: str, paper: str, diff: str) -> str:
    if not ours:
        return "-"
    return f"{ours} ({paper}, {diff})" if paper else ours


def _latency_cell(latency: pd.DataFrame, model: str) -> str:
    if model not in latency.index or not is_number(latency.loc[model, "ratio"]):
        return "-"
    row = latency.loc[model]
    text = f"{fmt(row['ratio'], 3)} x {row['ratio_to']}"
    return text + (f" (authors' {fmt(row['authors_ratio'], 2)})" if is_number(row["authors_ratio"])
                   else "")


def quality_headline(results: Results) -> str:
    """Table 1's rows: each model and sampler's best score and the steps it takes; with several
    trainings per model, the ± is a confidence interval across them."""
    from bench.report.quality import table1_data
    from bench.report.quality_seeds import several_trainings, table1_seeds_data

    if several_trainings(results.ok):
        table = table1_seeds_data(results.ok)
        spread, within = "best_half", "fewest steps within 5 % (median [range] over trainings)"
    else:
        table = table1_data(results.ok)
        spread, within = "best_std", "fewest steps within 5 %"
    if table.empty:
        return "no trained model was scored in this run"
    out = []
    for (dataset, extractor), section in table.groupby(["dataset", "feature_extractor"], sort=False):
        rows = [[r["model"], r["sampler"], f"{fmt(r['best'], 3)} ± {fmt(r[spread], 2)}",
                 fmt_int(r["steps_best"]), _within(r)] for r in section.to_dict("records")]
        out += [f"Table 1, {dataset}: {_what_the_spread_is(section, extractor)}:",
                markdown_table(["model", "sampler", "best", "steps at best", within], rows,
                               align_left=2)]
    return "\n".join(out)


def _within(record: dict) -> str:
    text = fmt_int(record["steps_within"])
    if "steps_within_min" in record:
        text += f" [{fmt_int(record['steps_within_min'])}, {fmt_int(record['steps_within_max'])}]"
    return text


def _what_the_spread_is(section: pd.DataFrame, extractor: str) -> str:
    from bench.quality.features import score_label

    label = score_label("fid", extractor)
    if "trainings" in section:
        return (f"{label} at n (± is the 95 % Student-t CI half-width across "
                f"{int(section['trainings'].max())} training seeds)")
    return (f"{label} (± is the standard deviation over {int(section['seeds'].max())} sampling "
            "seed(s) of one trained model)")


def headline(results_dir: Path) -> str:
    """The headline for a results directory of either kind."""
    results = load_results(Path(results_dir))
    if set(results.ok["metric"].astype(str)) & {"fid", "kid_mean"}:
        return quality_headline(results)
    return efficiency_headline(results)
