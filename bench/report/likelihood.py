"""The held-out likelihood report, drawn only from a results directory's rows:

- `likelihood.md` / `likelihood.csv`: per dataset and model the held-out bits/dim (mean across
  trainings, 95 % Student-t CI, the mean Monte Carlo standard error of one training's estimate),
  the denoising error in x0 and in eps (mean over the timestep bands, and per band), and each
  model against the baseline (Welch CI of the difference, verdict; lower is better for all);
- `denoise_mse_vs_noise.png`: denoising error against the noise level (timestep band), one line
  per model, shaded 95 % CI across trainings.

Rows read: `bits_per_dim` (stat "mean", and "stderr": the Monte Carlo standard error over held-out
images and sampled timesteps), `denoise_mse_x0` / `denoise_mse_eps` (stat "mean", one row per
`band` "t000-099" ... "t900-999", low noise to high), per (dataset, model, train_seed) of a trained
checkpoint. A run that trained once has no interval; the table says so with "—".
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench.quality.statistics import difference
from bench.report import render
from bench.report.data import ordered_models
from bench.report.quality import _kind, _num, _pm, _steps
from bench.report.quality_seeds import BASELINE, _ci, _match, spread, train_seed_column

BITS = "bits_per_dim"
MSE_METRICS = ("denoise_mse_x0", "denoise_mse_eps")
LIKELIHOOD_METRICS = (BITS, *MSE_METRICS)
ALL_BANDS = "all"
"""The `band` of a quantity over every timestep band (bits/dim; an MSE's mean over its bands)."""
QUANTITY_LABELS = {BITS: "bits/dim", "denoise_mse_x0": "x0 MSE", "denoise_mse_eps": "eps MSE"}
COLUMNS = ["dataset", "quantity", "band", "model", "mean", "low", "high", "half", "trainings", "n",
           "mc_stderr", "baseline", "delta", "delta_low", "delta_high", "verdict"]


def _rows(ok: pd.DataFrame) -> pd.DataFrame:
    rows = ok[ok["metric"].isin(LIKELIHOOD_METRICS) & (ok["checkpoint"].map(_kind) == "trained")].copy()
    rows["train_seed"] = train_seed_column(rows).fillna(-1.0)  # -1: the one unnamed training
    band = rows["band"].astype(str) if "band" in rows else pd.Series("", index=rows.index)
    rows["band"] = band.where(band != "", ALL_BANDS)
    return rows


def per_training(ok: pd.DataFrame) -> pd.DataFrame:
    """One value per (dataset, model, train_seed, quantity, band): bits/dim with its MC stderr,
    each MSE per band and, as band 'all', its mean over the bands measured."""
    rows = _rows(ok)
    columns = ["dataset", "model", "train_seed", "quantity", "band", "value", "n", "mc_stderr"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    keys = ["dataset", "model", "train_seed", "metric", "band"]
    means = rows[rows["stat"] == "mean"].groupby(keys, sort=True).agg(
        value=("value", "mean"), n=("n", "max")).reset_index()
    stderr = rows[rows["stat"] == "stderr"].groupby(keys, sort=True)["value"].mean()
    means["mc_stderr"] = [stderr.get(tuple(k), math.nan) for k in means[keys].itertuples(index=False)]
    bands = means[means["metric"].isin(MSE_METRICS) & (means["band"] != ALL_BANDS)]
    overall = bands.groupby(["dataset", "model", "train_seed", "metric"], sort=True).agg(
        value=("value", "mean"), n=("n", "max")).reset_index()
    overall["band"], overall["mc_stderr"] = ALL_BANDS, math.nan
    out = pd.concat([means, overall], ignore_index=True).rename(columns={"metric": "quantity"})
    return out.drop_duplicates(["dataset", "model", "train_seed", "quantity", "band"])[columns]


def _compare(mine: pd.Series, base: pd.Series) -> dict[str, object]:
    """Welch difference of mine - base across trainings; empty fields with < 2 on either side."""
    if len(mine) < 2 or len(base) < 2:
        return {"delta": math.nan, "delta_low": math.nan, "delta_high": math.nan, "verdict": ""}
    d = difference(list(mine), list(base))
    return {"delta": d.delta, "delta_low": d.low, "delta_high": d.high, "verdict": d.verdict}


def likelihood_data(ok: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Per (dataset, quantity, band, model): mean across trainings with its 95 % CI, the mean MC
    stderr, and the difference to `baseline` with its verdict (lower is better)."""
    values = per_training(ok)
    records = []
    for (dataset, quantity, band), group in values.groupby(["dataset", "quantity", "band"],
                                                          sort=True):
        base = group.loc[group["model"] == baseline, "value"].dropna()
        for model in ordered_models(group["model"]):
            mine = group[group["model"] == model]
            s = spread(mine["value"])
            against = model != baseline and not base.empty
            compared = _compare(mine["value"].dropna() if against else pd.Series(dtype=float), base)
            records.append({"dataset": dataset, "quantity": quantity, "band": band,
                            "model": model, "mean": s.mean, "low": s.low, "high": s.high,
                            "half": s.half, "trainings": s.trainings, "n": mine["n"].max(),
                            "mc_stderr": mine["mc_stderr"].mean(),
                            "baseline": baseline if model != baseline else "", **compared})
    return pd.DataFrame.from_records(records, columns=COLUMNS)


# ----------------------------------------------------------------------------- text


def _value(table: pd.DataFrame, model: str, quantity: str, band: str = ALL_BANDS) -> pd.Series | None:
    rows = _match(table, model=model, quantity=quantity, band=band)
    return None if rows.empty else rows.iloc[0]


def _summary_rows(section: pd.DataFrame, models: list[str]) -> list[list[str]]:
    rows = []
    for model in models:
        bits = _value(section, model, BITS)
        row = [model]
        row += (["—"] * 5 if bits is None else
                [_pm(bits["mean"], bits["half"], 4), _ci(bits["low"], bits["high"]),
                 _num(bits["mc_stderr"], 2), _steps(bits["n"]), str(int(bits["trainings"]))])
        for quantity in MSE_METRICS:
            mse = _value(section, model, quantity)
            row.append("—" if mse is None else _pm(mse["mean"], mse["half"]))
        rows.append(row)
    return rows


def _comparison_rows(section: pd.DataFrame, models: list[str]) -> list[list[str]]:
    rows = []
    for model in models:
        row = [f"{model} - {section.loc[section['baseline'] != '', 'baseline'].iloc[0]}"]
        for quantity in LIKELIHOOD_METRICS:
            r = _value(section, model, quantity)
            row += (["—", "—", "—"] if r is None or not r["verdict"] else
                    [_num(r["delta"]), _ci(r["delta_low"], r["delta_high"]), r["verdict"]])
        rows.append(row)
    return rows


def _band_rows(section: pd.DataFrame, models: list[str], quantity: str) -> list[list[str]]:
    bands = sorted(b for b in section.loc[section["quantity"] == quantity, "band"].unique()
                   if b != ALL_BANDS)
    rows = []
    for band in bands:
        cells = [_value(section, m, quantity, band) for m in models]
        rows.append([band] + ["—" if r is None else _pm(r["mean"], r["half"]) for r in cells])
    return rows


NOTES = [
    "bits/dim: the model's variational bound on the negative log-likelihood of held-out images, "
    "in bits per pixel value (lower is better).",
    "± and [low, high]: 95 % Student-t CI across the trainings (— with one training). MC stderr: "
    "the Monte Carlo standard error of one training's estimate (over held-out images and sampled "
    "timesteps), mean over trainings: when it is small beside the CI, the spread is between "
    "trainings, not estimation noise.",
    "x0 / eps MSE: mean squared error of the denoiser's prediction of the clean image / of the "
    "noise on held-out images, per band of the training timesteps (t000-099 least noise); "
    "'mean over bands' is their unweighted mean.",
    "Comparisons: difference of the means across trainings with Welch's 95 % CI; 'better' / "
    "'worse' when it excludes 0 (lower is better), else 'not resolved'.",
]


def render_likelihood_markdown(table: pd.DataFrame) -> str:
    out = ["# Held-out likelihood and denoising error", "",
           "Generated by `bench.report.likelihood` from `measurements.csv`; do not edit by hand.", ""]
    if table.empty:
        return "\n".join(out + ["No likelihood was estimated in this run.", ""])
    for dataset, section in table.groupby("dataset", sort=False):
        models = ordered_models(section["model"])
        out += [f"## {dataset}", "", render.markdown_table(
            ["model", "bits/dim", "95 % CI", "MC stderr", "held-out images", "trainings",
             "x0 MSE (mean over bands)", "eps MSE (mean over bands)"],
            _summary_rows(section, models)), ""]
        others = [m for m in models if (section.loc[section["model"] == m, "verdict"] != "").any()]
        if others:
            headers = ["difference"] + [h for q in LIKELIHOOD_METRICS for h in
                                        (QUANTITY_LABELS[q], "95 % CI", "verdict")]
            out += [f"### {dataset}: against the baseline", "",
                    render.markdown_table(headers, _comparison_rows(section, others)), ""]
        for quantity in MSE_METRICS:
            rows = _band_rows(section, models, quantity)
            if rows:
                out += [f"### {dataset}: {QUANTITY_LABELS[quantity]} per noise band", "",
                        render.markdown_table(["band", *models], rows), ""]
    return "\n".join(out + [f"- {note}" for note in NOTES] + [""])


# ----------------------------------------------------------------------------- figure


def draw_denoise_mse(table: pd.DataFrame):
    """x0 and eps MSE against the timestep band, one line per model with its 95 % CI band; log y
    (the error spans orders of magnitude from low to high noise)."""
    figure = render.new_figure(11, 4.2)
    bands_rows = table[table["quantity"].isin(MSE_METRICS) & (table["band"] != ALL_BANDS)]
    if bands_rows.empty:
        ax = figure.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no denoising error measured", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return figure
    axes = figure.subplots(1, len(MSE_METRICS), squeeze=False)[0]
    colours = {m: f"C{i}" for i, m in enumerate(ordered_models(bands_rows["model"]))}
    for ax, quantity in zip(axes, MSE_METRICS, strict=True):
        _draw_mse_panel(ax, bands_rows[bands_rows["quantity"] == quantity], colours)
        ax.set_ylabel(f"{QUANTITY_LABELS[quantity]} on held-out images")
        ax.set_title(f"{QUANTITY_LABELS[quantity]} against noise level, 95 % CI across "
                     "trainings", fontsize=10)
    return figure


def _draw_mse_panel(ax, rows: pd.DataFrame, colours: dict[str, str]) -> None:
    bands = sorted(rows["band"].unique())
    position = {band: i for i, band in enumerate(bands)}
    for (dataset, model), curve in rows.groupby(["dataset", "model"], sort=False):
        curve = curve.assign(x=curve["band"].map(position)).sort_values("x")
        label = model if rows["dataset"].nunique() == 1 else f"{model} ({dataset})"
        colour = colours.get(model, "k")
        ax.plot(curve["x"], curve["mean"], color=colour, marker="o", markersize=3, label=label)
        ax.fill_between(curve["x"], curve["low"], curve["high"], color=colour, alpha=0.2,
                        linewidth=0)
    if (rows["mean"] > 0).all():
        ax.set_yscale("log")
    ax.set_xticks(range(len(bands)))
    ax.set_xticklabels(bands, rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("timestep band (noise level, low to high)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def write_likelihood_reports(ok: pd.DataFrame, out_dir: Path) -> list[Path]:
    """likelihood.md, likelihood.csv and denoise_mse_vs_noise.png when the run has likelihood
    rows; nothing otherwise."""
    if not ok["metric"].isin(LIKELIHOOD_METRICS).any():
        return []
    out_dir = Path(out_dir)
    table = likelihood_data(ok)
    paths = [render.write_text(out_dir / "likelihood.md", render_likelihood_markdown(table)),
             render.write_csv(out_dir / "likelihood.csv", table)]
    if table["quantity"].isin(MSE_METRICS).any():
        paths.append(render.save_figure(draw_denoise_mse(table), out_dir / "denoise_mse_vs_noise.png"))
    return paths
