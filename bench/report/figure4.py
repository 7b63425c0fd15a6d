"""Figure 4 regenerated: total parameters per model as bars, the paper's counts marked on them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from bench import paper_data
from bench.report import render
from bench.report.data import (
    AT_PAPER_INPUT,
    FAILED,
    NOT_MEASURED,
    Results,
    context_line,
    failure,
    is_number,
    measured_models,
    ordered_models,
    pick,
    where,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MILLION = 1e6
BAR_COLOR = "#4C72B0"
PAPER_COLOR = "#C44E52"


def figure4_data(results: Results) -> pd.DataFrame:
    """One row per model: `model`, `label`, `params` (exact count from the CSV, NaN if absent),
    `paper_params` (Figure 4's count where the paper drew this model), `status`.

    Parameter counts do not depend on the input, so any `params` row of the model counts.
    Figure 4's models are keyed by our preset names (its cU-Net is `cunet`, 2 attention blocks).
    """
    paper = paper_data.figure4().set_index("model")
    models = ordered_models(set(measured_models(results)) | set(paper.index))
    records = []
    for model in models:
        chosen = pick(where(results.ok, "params", model=model))
        params = float("nan") if chosen is None else float(chosen["value"])
        failed = failure(results, model, "params", defaults=AT_PAPER_INPUT)
        status = "ok" if chosen is not None else (FAILED if failed is not None else NOT_MEASURED)
        in_paper = model in paper.index
        records.append({
            "model": model,
            "label": f"{model}\n({paper.loc[model, 'paper_label']})" if in_paper else model,
            "params": params,
            "paper_params": float(paper.loc[model, "params"]) if in_paper else float("nan"),
            "status": status,
        })
    frame = pd.DataFrame.from_records(
        records, columns=["model", "label", "params", "paper_params", "status"])
    frame["diff"] = frame["params"] - frame["paper_params"]
    return frame


def draw_figure4(data: pd.DataFrame, context: str = "") -> Figure:
    """Bars in millions with the exact count above each; a red tick at the paper's count."""
    figure = render.new_figure(max(6.0, 1.25 * len(data) + 1.5), 4.8)
    ax = figure.add_subplot()
    positions = list(range(len(data)))
    heights = [p / MILLION if is_number(p) else 0.0 for p in data["params"]]
    bars = ax.bar(positions, heights, width=0.6, color=BAR_COLOR, label="ours (exact count)")
    top = max([h for h in heights] + [p / MILLION for p in data["paper_params"] if is_number(p)] + [1.0])
    for bar, params, status in zip(bars, data["params"], data["status"], strict=True):
        x = bar.get_x() + bar.get_width() / 2
        if is_number(params):
            ax.annotate(f"{params / MILLION:.2f} M\n{int(params):,}", (x, bar.get_height()),
                        xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=8)
        else:
            ax.text(x, 0.02 * top, status, ha="center", va="bottom", rotation=90, fontsize=8,
                    color="dimgray")
    paper = [(x, p / MILLION) for x, p in zip(positions, data["paper_params"], strict=True) if is_number(p)]
    if paper:
        ax.hlines([y for _, y in paper], [x - 0.36 for x, _ in paper], [x + 0.36 for x, _ in paper],
                  colors=PAPER_COLOR, linewidths=2.5, zorder=3, label="paper, Figure 4")
    ax.set_xticks(positions, list(data["label"]), fontsize=8)
    ax.set_ylabel("total parameters (millions, frozen included)")
    ax.set_ylim(0, top * 1.22)
    ax.set_title("Figure 4: parameters per model")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if context:  # as the x label, so that the constrained layout keeps it inside the figure
        ax.set_xlabel(context, fontsize=6, color="dimgray")
    return figure


def write_figure4(results: Results, out_dir: Path) -> list[Path]:
    """reports/figure4.png, figure4.pdf and figure4.csv."""
    data = figure4_data(results)
    context = context_line(where(results.ok, "params"))
    figure = draw_figure4(data, context)
    paths = [render.save_figure(figure, out_dir / "figure4.png"),
             render.save_figure(figure, out_dir / "figure4.pdf")]
    columns = ["model", "params", "paper_params", "diff", "status"]
    paths.append(render.write_csv(out_dir / "figure4.csv", data[columns]))
    return paths
