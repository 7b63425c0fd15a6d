"""Table 1 of several quality runs side by side: `table1_runs.md` / `.csv`, drawn by
`python -m bench report --results RUN --beside OTHER [...]`.

What it is for: the same models and sampler at two scales, e.g. the full-width networks trained
on a GPU (`results/mnist-paper-<device>`) beside the reduced-width ones trained on the 2-core CPU
(`results/mnist`), each beside the paper's row. Per run it first states what differs between the
runs (each model's parameters and their share of the paper's, resolution, device, trainings,
training images seen, n); then per model the best score with its 95 % CI across trainings (where
the run has >= 2), the steps at best, the fewest steps within 5 %, and the score at the fewest
steps tried; then, per run, every model minus the U-Net at each one's best (Welch's 95 % CI across
trainings; with one training per model there is no interval, and the gap is said to be
unresolved); and a paragraph written from those numbers.

FD at n depends on n, on the reference set and on the feature extractor, so values from two runs
are set side by side but the paragraph compares runs only through orderings, verdicts and step
counts, and says which of these differ between them. Pure shaping functions (`runs_table_data`,
`runs_gaps_data`) and a writer (`write_runs_report`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.quality.features import score_label
from bench.report import render
from bench.report.data import ordered_models
from bench.report.quality import (
    FULL_WIDTH,
    PAPER_DATASETS,
    _kind,
    _num,
    _paper_row,
    _steps,
    model_scale,
    scale_text,
)
from bench.report.quality_seeds import (
    BASELINE,
    CLAIMED,
    SEED_KEYS,
    _best_row,
    _ci,
    _lower_median,
    _match,
    _own_fewest,
    _paper_claim,
    comparisons_data,
    seed_curves,
    train_seed_column,
    training_scores,
)

RUN_COLUMNS = ["run", "dataset", "feature_extractor", "model", "sampler", "params", "paper_params",
               "width_ratio", "resolution", "channels", "device", "trainings", "train_steps",
               "train_batch", "train_images", "n", "best", "best_low", "best_high", "steps_best",
               "steps_within", "fid_inf_best", "fewest_steps", "at_fewest", "at_fewest_low",
               "at_fewest_high", "paper_fid", "paper_steps"]
GAP_COLUMNS = ["run", "dataset", "feature_extractor", "sampler", "metric", "model", "baseline",
               "steps_model", "steps_baseline", "delta", "low", "high", "verdict", "trainings"]
ONE_TRAINING = "one training: no interval"
"""The verdict of a gap between runs trained once: a point difference, not a resolved one."""


@dataclass(frozen=True)
class QualityRun:
    """One quality results directory: its label (the directory's name) and its ok rows."""

    label: str
    ok: pd.DataFrame


def _trained_once_named(ok: pd.DataFrame) -> pd.DataFrame:
    """The rows with a training seed everywhere: a run that trained once without naming its seed
    (an older results file) counts as training 0, so one rule serves both kinds of run."""
    return ok.assign(train_seed=train_seed_column(ok).fillna(0))


def _first(rows: pd.DataFrame, column: str) -> object:
    values = rows[column].dropna()
    return values.iloc[0] if not values.empty else math.nan


def _training_facts(ok: pd.DataFrame, dataset: str, model: str) -> dict[str, object]:
    """Training steps (median over trainings), batch and images seen of `model` on `dataset`."""
    rows = ok[(ok["metric"] == "train_steps") & (ok["model"] == model) & (ok["dataset"] == dataset)]
    if rows.empty:
        return {"train_steps": math.nan, "train_batch": math.nan, "train_images": math.nan}
    steps, batch = float(rows["value"].median()), float(rows["batch_size"].median())
    return {"train_steps": steps, "train_batch": batch, "train_images": steps * batch}


def _run_records(run: QualityRun) -> list[dict[str, object]]:
    ok = _trained_once_named(run.ok)
    curves, scores = seed_curves(ok, "fid"), training_scores(ok, "fid")
    infinity = seed_curves(ok, "fid_inf")
    records = []
    scales = {dataset: model_scale(ok, dataset) for dataset in curves["dataset"].unique()}
    for key, curve in curves.groupby(SEED_KEYS, sort=False):
        dataset, extractor, model, sampler = key
        where = dict(zip(SEED_KEYS, key, strict=True))
        best, fewest = _best_row(curve), curve.loc[curve["steps"].idxmin()]
        scale = scales[dataset][scales[dataset]["model"] == model]
        at_best = _match(infinity, **where, steps=best["steps"])
        paper = _paper_row(dataset, model)
        scored = ok[(ok["metric"] == "fid") & (ok["model"] == model) & (ok["dataset"] == dataset)
                    & (ok["checkpoint"].map(_kind) == "trained")]
        records.append({
            "run": run.label, **where,
            **{c: _first(scale, c) for c in ("params", "paper_params", "width_ratio", "resolution",
                                             "channels")},
            "device": _first(scored, "device"), "trainings": int(best["trainings"]),
            **_training_facts(ok, dataset, model), "n": best["n"],
            "best": best["mean"], "best_low": best["low"], "best_high": best["high"],
            "steps_best": best["steps"],
            "steps_within": _lower_median(_own_fewest(_match(scores, **where))),
            "fid_inf_best": at_best["mean"].iloc[0] if not at_best.empty else math.nan,
            "fewest_steps": fewest["steps"], "at_fewest": fewest["mean"],
            "at_fewest_low": fewest["low"], "at_fewest_high": fewest["high"],
            "paper_fid": paper["fid"] if paper is not None else math.nan,
            "paper_steps": paper["steps"] if paper is not None else math.nan,
        })
    return records


def runs_table_data(runs: Sequence[QualityRun]) -> pd.DataFrame:
    """One row per (run, dataset, extractor, model, sampler) of trained models, in run order.

    best / best_low / best_high: the across-training mean FD at n at steps_best and its 95 % CI
    (NaN bounds with one training); steps_within: the median over trainings of each one's fewest
    steps within 5 % of its own best; at_fewest*: the score at the fewest steps the run tried;
    width_ratio: params / the paper's params for the model (Figure 4).
    """
    records = [record for run in runs for record in _run_records(run)]
    table = pd.DataFrame.from_records(records, columns=RUN_COLUMNS)
    if table.empty:
        return table
    run_order = {run.label: i for i, run in enumerate(runs)}
    model_order = {m: i for i, m in enumerate(ordered_models(table["model"]))}
    keys = table.assign(_run=table["run"].map(run_order), _model=table["model"].map(model_order))
    return keys.sort_values(["dataset", "feature_extractor", "sampler", "_run", "_model"],
                            kind="stable").drop(columns=["_run", "_model"]).reset_index(drop=True)


def _point_gap(table: pd.DataFrame, run: str, key: dict[str, object], metric: str, model: str,
               baseline: str) -> dict[str, object] | None:
    """model - baseline of the best scores of a run trained once: a difference without interval."""
    rows = {r["model"]: r for _, r in _match(table, run=run, **key).iterrows()}
    if model not in rows or baseline not in rows:
        return None
    column = "best" if metric == "fid" else "fid_inf_best"
    m, b = rows[model], rows[baseline]
    return {"steps_model": m["steps_best"], "steps_baseline": b["steps_best"],
            "delta": m[column] - b[column], "low": math.nan, "high": math.nan,
            "verdict": ONE_TRAINING, "trainings": min(m["trainings"], b["trainings"])}


def runs_gaps_data(runs: Sequence[QualityRun], table: pd.DataFrame,
                   baseline: str = BASELINE) -> pd.DataFrame:
    """Per run, dataset, extractor, sampler and score (FD at n, FD-infinity): every model minus
    `baseline` at each one's best steps, with Welch's 95 % CI across trainings where both have
    >= 2 (bench.report.quality_seeds.comparisons_data), else a point difference (ONE_TRAINING)."""
    records = []
    for run in runs:
        comparisons = comparisons_data(_trained_once_named(run.ok), baseline)
        mine = table[table["run"] == run.label]
        for key, section in mine.groupby(["dataset", "feature_extractor", "sampler"], sort=False):
            where = dict(zip(["dataset", "feature_extractor", "sampler"], key, strict=True))
            for model in section["model"]:
                if model == baseline:
                    continue
                for metric in ("fid", "fid_inf"):
                    found = _match(comparisons, **where, metric=metric, model=model, at="best")
                    if not found.empty:
                        r = found.iloc[0]
                        gap = {c: r[c] for c in ("steps_model", "steps_baseline", "delta", "low",
                                                 "high", "verdict")}
                        gap["trainings"] = min(r["trainings_model"], r["trainings_baseline"])
                    else:
                        gap = _point_gap(table, run.label, where, metric, model, baseline)
                    if gap is not None:
                        records.append({"run": run.label, **where, "metric": metric,
                                        "model": model, "baseline": baseline, **gap})
    return pd.DataFrame.from_records(records, columns=GAP_COLUMNS)


# ----------------------------------------------------------------------------- text


def _with_ci(value: float, low: float, high: float) -> str:
    return _num(value) if math.isnan(low) else f"{_num(value)} {_ci(low, high)}"


def _width(row: pd.Series) -> str:
    if math.isnan(row["params"]):
        return "—"
    if math.isnan(row["width_ratio"]):
        return f"{row['params'] / 1e6:.3g} M"
    if row["width_ratio"] >= FULL_WIDTH:
        return f"{row['params'] / 1e6:.3g} M (the paper's)"
    return f"{row['params'] / 1e6:.3g} M ({100 * row['width_ratio']:.2g} %)"


def _images(row: pd.Series) -> str:
    if math.isnan(row["train_images"]):
        return "—"
    return (f"{row['train_images']:,.0f} ({_steps(row['train_steps'])} x "
            f"{_steps(row['train_batch'])})")


HEADERS = ["run", "model", "params (share of the paper's)", "input", "device", "trainings",
           "training images (steps x batch)", "n", "best {fid} [95 % CI]", "steps at best",
           "fewest steps within 5 %", "{fid_inf} at best", "{fid} at fewest steps tried",
           "paper FID", "paper steps"]


def _rows(section: pd.DataFrame) -> list[list[str]]:
    rows = []
    for _, r in section.iterrows():
        rows.append([
            r["run"], r["model"], _width(r),
            f"{_steps(r['resolution'])}x{_steps(r['resolution'])}x{_steps(r['channels'])}",
            str(r["device"]), str(r["trainings"]), _images(r), _steps(r["n"]),
            _with_ci(r["best"], r["best_low"], r["best_high"]), _steps(r["steps_best"]),
            _steps(r["steps_within"]), _num(r["fid_inf_best"]),
            f"{_with_ci(r['at_fewest'], r['at_fewest_low'], r['at_fewest_high'])} "
            f"({_steps(r['fewest_steps'])} steps)",
            _num(r["paper_fid"]), _steps(r["paper_steps"])])
    return rows


def _gap_text(gap: pd.Series | None, model: str, baseline: str) -> str:
    if gap is None:
        return f"{model} - {baseline}: not measured"
    what = (f"{model} - {baseline} of the best scores ({_steps(gap['steps_model'])} vs "
            f"{_steps(gap['steps_baseline'])} steps) = {_num(gap['delta'])}")
    if gap["verdict"] == ONE_TRAINING:
        return (f"{what}, from one training per model: no interval across trainings, so not "
                "resolved")
    return f"{what} {_ci(gap['low'], gap['high'])}: {gap['verdict']} (95 %, across trainings)"


def _ordering(gap: pd.Series | None, model: str, baseline: str) -> str:
    if gap is None:
        return "unknown"
    return f"{baseline} lower" if gap["delta"] > 0 else f"{model} lower"


def _scale_of(run: QualityRun, dataset: str) -> str:
    return scale_text(model_scale(_trained_once_named(run.ok), dataset)) or "models not the paper's"


def _differences(section: pd.DataFrame) -> list[str]:
    """What the runs of a section do not share (the reasons values are not comparable)."""
    notes = []
    for column, what in (("n", "n (FD at n falls as n grows)"), ("resolution", "resolution"),
                         ("trainings", "trainings per model"),
                         ("device", "device"), ("train_images", "training images seen")):
        if section.groupby("run")[column].first().nunique() > 1:
            notes.append(what)
    return notes


def runs_paragraph(runs: Sequence[QualityRun], table: pd.DataFrame, gaps: pd.DataFrame,
                   dataset: str, extractor: str, sampler: str, model: str = CLAIMED,
                   baseline: str = BASELINE) -> str | None:
    """The paper's claim beside each run's answer, and what changes from one run to the next;
    None unless at least two runs scored both models."""
    section = _match(table, dataset=dataset, feature_extractor=extractor, sampler=sampler)
    both = [run for run in runs
            if {model, baseline} <= set(section.loc[section["run"] == run.label, "model"])]
    if len(both) < 2:
        return None
    text = [_paper_claim() if dataset in PAPER_DATASETS else ""]
    answers = []
    for run in both:
        rows = {r["model"]: r for _, r in section[section["run"] == run.label].iterrows()}
        m, b = rows[model], rows[baseline]
        found = _match(gaps, run=run.label, dataset=dataset, feature_extractor=extractor,
                       sampler=sampler, metric="fid", model=model)
        gap = found.iloc[0] if not found.empty else None
        answers.append((run, m, b, gap))
        fewer = ("fewer" if m["steps_within"] < b["steps_within"]
                 else "the same number of" if m["steps_within"] == b["steps_within"] else "more")
        text.append(
            f"{run.label}: {_scale_of(run, dataset)}, {m['device']}, {m['trainings']} "
            f"training(s) per model, n = {_steps(m['n'])}. {model}'s best is "
            f"{_with_ci(m['best'], m['best_low'], m['best_high'])} at {_steps(m['steps_best'])} "
            f"steps, {baseline}'s {_with_ci(b['best'], b['best_low'], b['best_high'])} at "
            f"{_steps(b['steps_best'])}; {_gap_text(gap, model, baseline)}; {model} gets within "
            f"5 % of its best in {fewer} steps ({_steps(m['steps_within'])} against "
            f"{_steps(b['steps_within'])}).")
    orderings = {_ordering(gap, model, baseline) for _, _, _, gap in answers}
    verdicts = {("resolved" if gap is not None and gap["verdict"] in ("better", "worse")
                 else "unresolved") for _, _, _, gap in answers}
    if len(orderings) == 1:
        order = f"The ordering of the best scores is the same in every run ({orderings.pop()})"
    else:
        each = "; ".join(f"{run.label}: {_ordering(gap, model, baseline)}"
                         for run, _, _, gap in answers)
        order = f"The ordering of the best scores changes between the runs ({each})"
    if verdicts == {"resolved"}:
        order += ", and every run resolves it."
    elif verdicts == {"unresolved"}:
        order += ", but no run resolves it."
    else:
        order += ("; only "
                  + ", ".join(run.label for run, _, _, gap in answers
                              if gap is not None and gap["verdict"] in ("better", "worse"))
                  + " resolves it.")
    text.append(order)
    differ = _differences(section)
    if differ:
        text.append("The runs differ in " + ", ".join(differ) + ": compare orderings, verdicts and "
                    "step counts between them, not score values.")
    return " ".join(t for t in text if t)


def render_runs_markdown(runs: Sequence[QualityRun], table: pd.DataFrame,
                         gaps: pd.DataFrame) -> str:
    out = ["# Table 1 across runs", "",
           "Generated by `bench.report.quality_runs` from each run's `measurements.csv`; do not "
           "edit by hand. Runs: " + ", ".join(f"`{run.label}`" for run in runs) + ".", ""]
    if table.empty:
        return "\n".join(out + ["No trained model was scored in these runs.", ""])
    for (dataset, extractor, sampler), section in table.groupby(
            ["dataset", "feature_extractor", "sampler"], sort=False):
        labels = {"fid": score_label("fid", extractor),
                  "fid_inf": score_label("fid", extractor).replace("FID", "FID-infinity", 1)}
        out += [f"## {dataset}, {sampler.upper()}: {labels['fid']}", "",
                render.markdown_table([h.format(**labels) for h in HEADERS], _rows(section),
                                      align_left=2), ""]
        out += [f"- {note}" for note in _notes(section, labels["fid"])]
        out.append("")
        paragraph = runs_paragraph(runs, table, gaps, dataset, extractor, sampler)
        if paragraph:
            out += ["### The paper's claim at each scale", "", paragraph, ""]
    return "\n".join(out)


def _notes(section: pd.DataFrame, label: str) -> list[str]:
    notes = ["params: the model's parameter count, in brackets its share of the paper's network "
             "of the same name (Figure 4). Input: resolution x resolution x channels.",
             f"best {label}: the across-training mean at the steps where it is lowest, with its "
             "95 % Student-t CI across trainings where the run trained the model at least twice "
             "(one training: the value alone). Fewest steps within 5 %: the median over trainings "
             "of each training's fewest steps within 5 % of its own best.",
             "paper FID / paper steps: the paper's Table 1 (pytorch-fid, i.e. Inception "
             "features, on 1,000 samples of full MNIST); a score with other features is not "
             "comparable with it in value, only in ordering and steps.",
             "Each run's own table1.md has its floor, untrained reference, timings and "
             "the classifier's accuracy."]
    differ = _differences(section)
    if differ:
        notes.append("These runs differ in " + ", ".join(differ) + ".")
    return notes


def write_runs_report(runs: Sequence[QualityRun], out_dir: Path) -> list[Path]:
    """table1_runs.md / .csv (the table) and table1_runs_gaps.csv (the model - U-Net gaps)."""
    table = runs_table_data(runs)
    gaps = runs_gaps_data(runs, table)
    return [render.write_text(out_dir / "table1_runs.md", render_runs_markdown(runs, table, gaps)),
            render.write_csv(out_dir / "table1_runs.csv", table),
            render.write_csv(out_dir / "table1_runs_gaps.csv", gaps)]
