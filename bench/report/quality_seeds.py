"""Quality reports of a run that trained every model several times (`train_seed` with >= 2
values): every score is first averaged over a training's sampling seeds, and the spread and
confidence intervals run across trainings, the independent replicates
(bench.quality.statistics.across_seeds / difference). See bench.report.quality for the files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.quality.features import score_label
from bench.quality.statistics import across_seeds, difference
from bench.quality.sweep import UNTRAINED, grid_file
from bench.report import render
from bench.report.data import ordered_models
from bench.report.quality import (
    PAPER_DATASETS,
    PAPER_HEADERS,
    SAMPLER_STYLE,
    WITHIN,
    _kind,
    _num,
    _paper_notes,
    _paper_row,
    _pm,
    _steps,
    _table_in_model_order,
    _time_at,
    _timing_and_features_notes,
    best_settings,
    draw_samples,
    failure_lines,
    score_curves,
)
from bench.results.paths import safe_name

# ----------------------------------------------------------------------------- several trainings
#
# A profile with `train_seeds` trains every model several times; each training is one independent
# replicate, so every score is first averaged over a training's sampling seeds and the spread and
# confidence intervals run across trainings (bench.quality.statistics.across_seeds / difference).

SEED_KEYS = ["dataset", "feature_extractor", "model", "sampler"]
SEED_SCORES = ("fid", "fid_inf", "kid_mean")
"""The scores compared across trainings: FD at n, FD-infinity (Chong & Forsyth), KID."""
SCORE_STATS = {"fid": "value", "fid_inf": "extrapolated", "kid_mean": "mean"}
BASELINE = "unet"
"""The model every other is compared with (the paper's baseline)."""
CLAIMED = "cunet"
"""The model the paper's Table 1 claim is about."""


def train_seed_column(frame: pd.DataFrame) -> pd.Series:
    """The training seed as a number, NaN for rows of a single-training run (the CSV reader gives
    text, and runs written before the column have none)."""
    if "train_seed" not in frame:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame["train_seed"], errors="coerce").astype(float)


def trainings(ok: pd.DataFrame) -> list[int]:
    """The training seeds of the trained models' scored cells, ascending."""
    rows = ok[(ok["metric"] == "fid") & (ok["checkpoint"].map(_kind) == "trained")]
    return sorted({int(s) for s in train_seed_column(rows).dropna()})


def several_trainings(ok: pd.DataFrame) -> bool:
    """Whether the run trained its models more than once (then the reports run across trainings)."""
    return len(trainings(ok)) >= 2


def metric_label(metric: str, extractor: str) -> str:
    """'FID (x features)', 'FID-infinity (x features)' or 'KID (x features)': named features."""
    if metric == "fid_inf":
        return score_label("fid", extractor).replace("FID", "FID-infinity", 1)
    return score_label("kid" if metric.startswith("kid") else "fid", extractor)


@dataclass(frozen=True)
class Spread:
    """Mean across trainings and its 95 % Student-t interval (NaN with fewer than 2 trainings)."""

    mean: float
    low: float
    high: float
    trainings: int

    @property
    def half(self) -> float:
        return (self.high - self.low) / 2


def spread(values: Iterable[float]) -> Spread:
    """`across_seeds` of the finite values, or a mean without interval when fewer than 2."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if len(finite) >= 2:
        summary = across_seeds(finite)
        return Spread(summary.mean, summary.low, summary.high, summary.n)
    mean = finite[0] if finite else math.nan
    return Spread(mean, math.nan, math.nan, len(finite))


def training_scores(ok: pd.DataFrame, metric: str = "fid") -> pd.DataFrame:
    """One score per training of each trained (dataset, extractor, model, sampler, steps): the mean
    over that training's sampling seeds. Columns: the keys, steps, train_seed, value, n,
    sampling_seeds."""
    rows = ok[(ok["metric"] == metric) & (ok["checkpoint"].map(_kind) == "trained")]
    rows = rows[rows["stat"] == SCORE_STATS.get(metric, "value")].copy()
    rows["train_seed"] = train_seed_column(rows)
    rows = rows[rows["train_seed"].notna() & rows["steps"].notna()]
    columns = [*SEED_KEYS, "steps", "train_seed", "value", "n", "sampling_seeds"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    grouped = rows.groupby([*SEED_KEYS, "steps", "train_seed"], sort=True)
    out = grouped["value"].agg(value="mean", sampling_seeds="count").reset_index()
    out["n"] = grouped["n"].max().values
    return out[columns]


def seed_curves(ok: pd.DataFrame, metric: str = "fid") -> pd.DataFrame:
    """Per trained (dataset, extractor, model, sampler, steps): mean, low, high, half (95 % CI
    across trainings), trainings, n."""
    scores = training_scores(ok, metric)
    columns = [*SEED_KEYS, "steps", "mean", "low", "high", "half", "trainings", "n"]
    records = []
    for key, group in scores.groupby([*SEED_KEYS, "steps"], sort=True):
        s = spread(group["value"])
        records.append({**dict(zip([*SEED_KEYS, "steps"], key, strict=True)), "mean": s.mean,
                        "low": s.low, "high": s.high, "half": s.half, "trainings": s.trainings,
                        "n": group["n"].max()})
    return pd.DataFrame.from_records(records, columns=columns)


def fewest_within(scores: pd.Series) -> float:
    """The fewest steps (the index) whose score is at most WITHIN above the lowest score."""
    scores = scores.dropna().sort_index()
    if scores.empty:
        return math.nan
    best = scores.min()
    limit = best * (1 + WITHIN) if best >= 0 else best * (1 - WITHIN)
    return float(scores[scores <= limit].index[0])


def _lower_median(values: Sequence[float]) -> float:
    """The median; of an even count the lower middle value, so that it is a step count tried."""
    ordered = sorted(v for v in values if not math.isnan(v))
    return ordered[(len(ordered) - 1) // 2] if ordered else math.nan


def _best_row(curve: pd.DataFrame) -> pd.Series:
    """The steps with the lowest across-training mean, among the steps every training reached (a
    step count that only one training finished would win or lose by luck)."""
    full = curve[curve["trainings"] == curve["trainings"].max()]
    return full.loc[full["mean"].idxmin()]


def _match(frame: pd.DataFrame, **columns: object) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    for column, value in columns.items():
        mask &= frame[column] == value
    return frame[mask]


def floor_at(ok: pd.DataFrame, dataset: str, extractor: str, n: float,
             metric: str = "fid") -> tuple[Spread, float]:
    """The real-vs-real reference of `metric` (over its draws) at `n` images, or at the n it was
    measured at when none was at `n`; returns (spread over draws, n)."""
    rows = ok[(ok["metric"] == metric) & (ok["checkpoint"] == "data") & (ok["dataset"] == dataset)
              & (ok["feature_extractor"] == extractor)]
    rows = rows[rows["stat"] == SCORE_STATS.get(metric, "value")]
    if rows.empty:
        return spread([]), math.nan
    same = rows[rows["n"] == n]
    rows = same if not same.empty else rows
    return spread(rows["value"]), float(rows["n"].max())


def untrained_level(ok: pd.DataFrame, dataset: str, extractor: str, model: str,
                    metric: str = "fid") -> tuple[float, str, float]:
    """(lowest mean score, sampler, steps) of the untrained reference of `model`; NaN if none."""
    curves = score_curves(ok[ok["stat"] == SCORE_STATS.get(metric, "value")], metric)
    ref = _match(curves, kind=UNTRAINED, dataset=dataset, feature_extractor=extractor, model=model)
    if ref.empty:
        return math.nan, "", math.nan
    row = ref.loc[ref["mean"].idxmin()]
    return float(row["mean"]), str(row["sampler"]), float(row["steps"])


def _seed_time_at(ok: pd.DataFrame, dataset: str, model: str, sampler: str, steps: float,
                  first: int | None) -> float:
    """time_per_sample_s (median) at `steps`, measured on the first training (or unnamed)."""
    seeds = train_seed_column(ok)
    timed = ok[seeds.isna() | (seeds == first)] if first is not None else ok
    return _time_at(timed, dataset, model, sampler, steps)


def _own_fewest(scores: pd.DataFrame) -> list[float]:
    """Each training's fewest steps within 5 % of its own best, in training-seed order."""
    return [fewest_within(g.set_index("steps")["value"])
            for _, g in scores.sort_values("train_seed").groupby("train_seed", sort=True)]


def _seed_record(ok: pd.DataFrame, key: tuple, curve: pd.DataFrame, scores: pd.DataFrame,
                 others: dict[str, pd.DataFrame], first: int | None) -> dict[str, object]:
    dataset, extractor, model, sampler = key
    where_key = {"dataset": dataset, "feature_extractor": extractor, "model": model,
                 "sampler": sampler}
    best = _best_row(curve)
    own = _own_fewest(_match(scores, **where_key))
    within = _lower_median(own)
    floor, floor_n = floor_at(ok, dataset, extractor, best["n"])
    record: dict[str, object] = {
        **where_key, "trainings": int(best["trainings"]), "n": best["n"],
        "sampling_seeds": int(_match(scores, **where_key)["sampling_seeds"].max()),
        "best": best["mean"], "best_low": best["low"], "best_high": best["high"],
        "best_half": best["half"], "steps_best": best["steps"], "steps_within": within,
        "steps_within_min": min(own, default=math.nan), "steps_within_max": max(own, default=math.nan),
        "steps_within_each": " ".join(_steps(v) for v in own),
        "time_best_s": _seed_time_at(ok, dataset, model, sampler, best["steps"], first),
        "time_within_s": _seed_time_at(ok, dataset, model, sampler, within, first),
        "floor": floor.mean, "floor_half": floor.half, "floor_n": floor_n,
        "floor_draws": floor.trainings,
    }
    for metric, curves in others.items():
        at = _match(curves, **where_key, steps=best["steps"])
        record[f"{metric}_best"] = at["mean"].iloc[0] if not at.empty else math.nan
        record[f"{metric}_half"] = at["half"].iloc[0] if not at.empty else math.nan
    for metric in SEED_SCORES:
        level, ref_sampler, ref_steps = untrained_level(ok, dataset, extractor, model, metric)
        record[f"untrained_{metric}"] = level
        if metric == "fid":
            record["untrained_sampler"], record["untrained_steps"] = ref_sampler, ref_steps
    paper = _paper_row(dataset, model)
    for column in ("fid", "steps", "time_s"):
        record[f"paper_{column}"] = paper[column] if paper is not None else math.nan
    return record


def table1_seeds_data(ok: pd.DataFrame) -> pd.DataFrame:
    """Table 1 across trainings: one row per trained (dataset, extractor, model, sampler).

    best / best_low / best_high / best_half: the across-training mean FD at n at `steps_best` (the
    steps whose mean is lowest) and its 95 % Student-t CI; steps_within: the median over trainings
    of each training's own fewest steps within 5 % of its own best, steps_within_min/_max its
    range; time_*_s: time per sample at those steps (first training); floor: the real-vs-real FD
    at the same n; fid_inf_best, kid_mean_best (and _half): at steps_best; untrained_*: the
    untrained reference; paper_*: the paper's row where the dataset is one of its.
    """
    curves = seed_curves(ok, "fid")
    scores = training_scores(ok, "fid")
    others = {metric: seed_curves(ok, metric) for metric in ("fid_inf", "kid_mean")}
    seeds = trainings(ok)
    first = seeds[0] if seeds else None
    records = [_seed_record(ok, key, curve, scores, others, first)
               for key, curve in curves.groupby(SEED_KEYS, sort=False)]
    return _table_in_model_order(records)


def _difference_record(a: pd.Series, b: pd.Series) -> dict[str, object] | None:
    """difference(a, b) as columns; None when either side has fewer than 2 trainings."""
    a, b = a.dropna(), b.dropna()
    if len(a) < 2 or len(b) < 2:
        return None
    d = difference(list(a), list(b))
    return {"model_mean": float(a.mean()), "baseline_mean": float(b.mean()), "delta": d.delta,
            "low": d.low, "high": d.high, "verdict": d.verdict, "trainings_model": len(a),
            "trainings_baseline": len(b)}


def _best_steps(curves: pd.DataFrame, **key: object) -> float:
    curve = _match(curves, **key)
    return math.nan if curve.empty else float(_best_row(curve)["steps"])


def _pair_records(scores: pd.DataFrame, curves: pd.DataFrame, model: str,
                  baseline: str) -> list[dict[str, object]]:
    """model - baseline at every steps both reached, then at each one's own best steps."""
    mine, base = scores[scores["model"] == model], scores[scores["model"] == baseline]
    records = []
    for steps in sorted(set(mine["steps"]) & set(base["steps"])):
        diff = _difference_record(mine.loc[mine["steps"] == steps, "value"],
                                  base.loc[base["steps"] == steps, "value"])
        if diff:
            records.append({"at": "steps", "steps_model": steps, "steps_baseline": steps, **diff})
    own, theirs = _best_steps(curves, model=model), _best_steps(curves, model=baseline)
    diff = _difference_record(mine.loc[mine["steps"] == own, "value"],
                              base.loc[base["steps"] == theirs, "value"])
    if diff:
        records.append({"at": "best", "steps_model": own, "steps_baseline": theirs, **diff})
    return records


COMPARISON_COLUMNS = ["dataset", "feature_extractor", "sampler", "metric", "model", "baseline", "at",
                      "steps_model", "steps_baseline", "model_mean", "baseline_mean", "delta", "low",
                      "high", "verdict", "trainings_model", "trainings_baseline"]


def comparisons_data(ok: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """model - baseline for FD at n, FD-infinity and KID, per (dataset, extractor, sampler): at
    every steps value (at = 'steps') and at each model's own best steps (at = 'best'), with the
    95 % Welch CI of the difference of means across trainings and its verdict (lower is better:
    'better' means the model's score is lower than the baseline's, resolved)."""
    records = []
    for metric in SEED_SCORES:
        scores, curves = training_scores(ok, metric), seed_curves(ok, metric)
        for key, group in scores.groupby(["dataset", "feature_extractor", "sampler"], sort=False):
            here = _match(curves, **dict(zip(["dataset", "feature_extractor", "sampler"], key,
                                             strict=True)))
            for model in ordered_models(group["model"]):
                if model == baseline or baseline not in set(group["model"]):
                    continue
                for record in _pair_records(group, here, model, baseline):
                    records.append({"dataset": key[0], "feature_extractor": key[1],
                                    "sampler": key[2], "metric": metric, "model": model,
                                    "baseline": baseline, **record})
    return pd.DataFrame.from_records(records, columns=COMPARISON_COLUMNS)


# ----------------------------------------------------------------------------- text, across trainings


def _ci(low: float, high: float) -> str:
    return "—" if math.isnan(low) or math.isnan(high) else f"[{_num(low)}, {_num(high)}]"


def _steps_range(row: pd.Series) -> str:
    if math.isnan(row["steps_within"]):
        return "—"
    return (f"{_steps(row['steps_within'])} [{_steps(row['steps_within_min'])}, "
            f"{_steps(row['steps_within_max'])}]")


SEED_HEADERS = ["model", "sampler", "best {fid}", "95 % CI", "steps at best",
                "fewest steps within 5 % (median [min, max])", "s/sample at best",
                "s/sample at fewest", "{fid} floor (real, same n)", "{fid_inf} at best",
                "{kid} at best"]


def _seed_headers(extractor: str, with_paper: bool) -> list[str]:
    labels = {"fid": metric_label("fid", extractor), "fid_inf": metric_label("fid_inf", extractor),
              "kid": metric_label("kid", extractor)}
    return [h.format(**labels) for h in SEED_HEADERS] + (PAPER_HEADERS if with_paper else [])


def _seed_rows(section: pd.DataFrame, with_paper: bool) -> list[list[str]]:
    rows = []
    for _, r in section.iterrows():
        row = [r["model"], r["sampler"], _pm(r["best"], r["best_half"]),
               _ci(r["best_low"], r["best_high"]), _steps(r["steps_best"]), _steps_range(r),
               _num(r["time_best_s"]), _num(r["time_within_s"]), _pm(r["floor"], r["floor_half"]),
               _pm(r["fid_inf_best"], r["fid_inf_half"]), _pm(r["kid_mean_best"],
                                                              r["kid_mean_half"], 2)]
        if with_paper:
            row += [_num(r["paper_fid"]), _steps(r["paper_steps"]), _num(r["paper_time_s"])]
        rows.append(row)
    return rows


def _untrained_note(section: pd.DataFrame, label: str) -> str | None:
    known = section.drop_duplicates("model")
    known = known[known["untrained_fid"].notna()]
    if known.empty:
        return None
    first = known.iloc[0]
    levels = "; ".join(f"{r['model']} {_num(r['untrained_fid'])} (FID-infinity "
                       f"{_num(r['untrained_fid_inf'])}, KID {_num(r['untrained_kid_mean'], 2)})"
                       for _, r in known.iterrows())
    return (f"Untrained reference (each architecture at its seeded initialisation, "
            f"{str(first['untrained_sampler']).upper()}, {_steps(first['untrained_steps'])} steps): "
            f"{label} {levels}. What training must beat; left off the plots' axes.")


def _seed_notes(section: pd.DataFrame, ok: pd.DataFrame, dataset: str, extractor: str) -> list[str]:
    first = section.iloc[0]
    label = metric_label("fid", extractor)
    k, n = int(section["trainings"].max()), _steps(first["n"])
    sampling = int(section["sampling_seeds"].max())
    notes = [f"± and [low, high]: 95 % Student-t CI across {k} training seeds (one score per "
             f"training: {sampling} sampling seed(s) of n = {n} images each, averaged); the "
             "training is the replicate, its sampling seeds are not independent of it.",
             f"{label} at n = {n} generated images against the real {dataset} training set; "
             f"the floor is {_steps(first['floor_n'])} held-out real images scored the same way "
             "(what a perfect generator scores at this n; ± across its draws where there are "
             "several). FID-infinity: the FD extrapolated to infinitely many generated images "
             "(Chong & Forsyth 2020). KID: unbiased MMD^2 over subsets.",
             "Steps at best: the steps whose across-training mean is lowest. Fewest steps within "
             "5 %: for each training the fewest steps whose score is at most 5 % above that "
             "training's own best; the median across trainings (the lower middle one for an even "
             "count) and [min, max].",
             "Comparisons between models at every steps value: comparisons.md."]
    untrained = _untrained_note(section, label)
    if untrained:
        notes.append(untrained)
    notes += _timing_and_features_notes(ok, dataset, extractor, label, " of the first training")
    return notes + _paper_notes(dataset, ok)


def _seed_sections(table: pd.DataFrame):
    if table.empty:
        return
    for (dataset, extractor), section in table.groupby(["dataset", "feature_extractor"],
                                                       sort=False):
        with_paper = dataset in PAPER_DATASETS
        yield (dataset, extractor, _seed_headers(extractor, with_paper),
               _seed_rows(section, with_paper), section)


def _fmt_diff(row: pd.Series) -> str:
    return f"{_num(row['delta'])} {_ci(row['low'], row['high'])}"


CLAIM = {
    ("better", True): "holds at this scale: {m}'s best is lower, resolved, and reached within 5 % "
                      "in fewer steps",
    ("better", False): "holds only in part: {m}'s best is lower, resolved, but not reached in "
                       "fewer steps",
    ("not resolved", True): "holds only in part: {m} gets within 5 % of its best in fewer steps, "
                            "but the best scores are not resolved apart",
    ("not resolved", False): "is not supported: neither a resolved difference of the best scores "
                             "nor fewer steps",
    ("worse", True): "does not hold at this scale: {b}'s best is lower, resolved (though {m} gets "
                     "within 5 % of its own best in fewer steps)",
    ("worse", False): "does not hold at this scale: {b}'s best is lower, resolved, and {m} does not "
                      "need fewer steps",
}
VERDICT_TEXT = {"better": "{m} better (the interval excludes 0)",
                "worse": "{m} worse (the interval excludes 0)",
                "not resolved": "not resolved (the interval includes 0)"}


def _paper_claim() -> str:
    from bench.paper_data import table1

    paper = table1()
    rows = {r["backbone"]: r for _, r in paper[paper["dataset"] == "MNIST"].iterrows()}
    u, c = rows.get("U-Net"), rows.get("cU-Net")
    if u is None or c is None:
        return "The paper claims better quality in fewer steps for the cU-Net."
    return (f"The paper's MNIST claim: cU-Net FID {_num(c['fid'])} at {_steps(c['steps'])} steps "
            f"against U-Net {_num(u['fid'])} at {_steps(u['steps'])}, better quality in fewer "
            "steps.")


def _pick(comparisons: pd.DataFrame, **key: object) -> pd.Series | None:
    rows = _match(comparisons, **key)
    return None if rows.empty else rows.iloc[0]


def claim_paragraph(table: pd.DataFrame, comparisons: pd.DataFrame, dataset: str, extractor: str,
                    sampler: str, model: str = CLAIMED, baseline: str = BASELINE) -> str | None:
    """Whether the paper's claim (model: better quality in fewer steps than baseline) holds in
    this run, written from the numbers; None when either model or their comparison is missing."""
    rows = {r["model"]: r for _, r in _match(table, dataset=dataset, feature_extractor=extractor,
                                              sampler=sampler).iterrows()}
    here = _match(comparisons, dataset=dataset, feature_extractor=extractor, sampler=sampler,
                  metric="fid")
    best = _pick(here, model=model, at="best")
    if model not in rows or baseline not in rows or best is None:
        return None
    m, b = rows[model], rows[baseline]
    label = metric_label("fid", extractor)
    names = {"m": model, "b": baseline}
    text = [_paper_claim(),
            f"Here ({dataset}, {label} at n = {_steps(m['n'])}, {sampler.upper()}, "
            f"{int(m['trainings'])} trainings per model): {model}'s best is {_num(m['best'])} "
            f"{_ci(m['best_low'], m['best_high'])} at {_steps(m['steps_best'])} steps, "
            f"{baseline}'s {_num(b['best'])} {_ci(b['best_low'], b['best_high'])} at "
            f"{_steps(b['steps_best'])} steps; {model} - {baseline} of the best scores is "
            f"{_fmt_diff(best)}: {VERDICT_TEXT[best['verdict']].format(**names)}.",
            f"Each training gets within 5 % of its own best at a median of "
            f"{_steps(m['steps_within'])} steps for {model} (range {_steps(m['steps_within_min'])}"
            f"-{_steps(m['steps_within_max'])}) and {_steps(b['steps_within'])} for {baseline} "
            f"({_steps(b['steps_within_min'])}-{_steps(b['steps_within_max'])})."]
    per_steps = here[(here["model"] == model) & (here["at"] == "steps")]
    if not per_steps.empty:
        fewest = per_steps.loc[per_steps["steps_model"].idxmin()]
        text.append(f"At {_steps(fewest['steps_model'])} steps {model} - {baseline} = "
                    f"{_fmt_diff(fewest)}: {VERDICT_TEXT[fewest['verdict']].format(**names)}.")
    for other in (x for x in rows if x not in (model, baseline)):
        row = _pick(here, model=other, at="best")
        if row is not None:
            text.append(f"{other} - {baseline} of the best scores: {_fmt_diff(row)}, "
                        f"{VERDICT_TEXT[row['verdict']].format(m=other, b=baseline)}.")
    fewer = bool(m["steps_within"] < b["steps_within"])
    text.append(f"So the claim {CLAIM[(best['verdict'], fewer)].format(**names)} "
                f"(intervals: 95 %, across trainings).")
    return " ".join(text)


def render_seeds_markdown(table: pd.DataFrame, comparisons: pd.DataFrame, ok: pd.DataFrame,
                          failed: pd.DataFrame | None = None) -> str:
    """table1.md for a run with several trainings per model, closing with the claim paragraph."""
    out = ["# Table 1: sample quality against sampling steps, across trainings", "",
           "Generated by `bench.report.quality` from `measurements.csv`; do not edit by hand.", ""]
    if table.empty:
        out += ["No trained model was scored in this run.", ""]
    for dataset, extractor, headers, rows, section in _seed_sections(table):
        out += [f"## {dataset}: {metric_label('fid', extractor)}", "",
                render.markdown_table(headers, rows, align_left=2)]
        out += [f"- {note}" for note in _seed_notes(section, ok, dataset, extractor)]
        out.append("")
        for sampler in section["sampler"].unique():
            paragraph = claim_paragraph(table, comparisons, dataset, extractor, sampler)
            if paragraph:
                out += [f"### Does the paper's claim hold here? ({sampler.upper()})", "",
                        paragraph, ""]
    failures = failure_lines(failed)
    if failures:
        out += ["## Failed", "", *[f"- {line}" for line in failures], ""]
    return "\n".join(out)


def render_seeds_latex(table: pd.DataFrame, ok: pd.DataFrame) -> str:
    if table.empty:
        return "% no trained model was scored in this run\n"
    return "\n".join(render.latex_table(
        headers, rows, caption=f"Sample quality against sampling steps on {dataset} "
        f"({metric_label('fid', extractor)}), across trainings.",
        label=f"tab:table1-{dataset}-{extractor}",
        notes=_seed_notes(section, ok, dataset, extractor), align_left=2)
        for dataset, extractor, headers, rows, section in _seed_sections(table))


def _comparison_rows(section: pd.DataFrame, models: list[str]) -> list[list[str]]:
    rows = []
    for at, steps in _comparison_points(section):
        row = [_steps(steps) if at == "steps" else "each one's best"]
        for model in models:
            match = section[(section["model"] == model) & (section["at"] == at)
                            & ((section["steps_model"] == steps) if at == "steps" else True)]
            if match.empty:
                row += ["—", "—", "—"]
                continue
            r = match.iloc[0]
            where = (f" ({_steps(r['steps_model'])} vs {_steps(r['steps_baseline'])} steps)"
                     if at == "best" else "")
            row += [f"{_num(r['delta'])}{where}", _ci(r["low"], r["high"]), r["verdict"]]
        rows.append(row)
    return rows


def _comparison_points(section: pd.DataFrame) -> list[tuple[str, float]]:
    steps = sorted(section.loc[section["at"] == "steps", "steps_model"].unique())
    return [("steps", s) for s in steps] + ([("best", math.nan)]
                                            if (section["at"] == "best").any() else [])


def render_comparisons_markdown(comparisons: pd.DataFrame) -> str:
    """comparisons.md: one table per (dataset, extractor, sampler, score), rows = steps."""
    out = ["# Comparisons between models, across trainings", "",
           "Generated by `bench.report.quality` from `measurements.csv`; do not edit by hand.", ""]
    if comparisons.empty:
        return "\n".join(out + ["No two models with at least 2 trainings each to compare.", ""])
    keys = ["dataset", "feature_extractor", "sampler", "metric"]
    for (dataset, extractor, sampler, metric), section in comparisons.groupby(keys, sort=False):
        baseline = section["baseline"].iloc[0]
        models = ordered_models(section["model"])
        headers = ["steps"] + [h for m in models
                               for h in (f"{m} - {baseline}", "95 % CI", "verdict")]
        out += [f"## {dataset}, {sampler.upper()}: {metric_label(metric, extractor)}", "",
                render.markdown_table(headers, _comparison_rows(section, models)), ""]
    k = int(comparisons["trainings_model"].max())
    out += [f"- Difference of the means across trainings ({k} per model), model - {BASELINE}; "
            "95 % CI: Welch's unequal-variance t interval.",
            "- Verdict: 'better' / 'worse' when the interval excludes 0 (lower scores are better), "
            "'not resolved' when it includes 0: these trainings cannot tell the two apart.",
            "- 'each one's best': each model at the steps of its own lowest across-training mean.",
            ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- figures, across trainings


def _axis_range(values: Iterable[float]) -> tuple[float, float] | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    pad = 0.06 * (high - low) if high > low else 0.1 * max(abs(high), 1e-12)
    return low - pad, high + pad


def _draw_band(ax, curve: pd.DataFrame, colour: str, style: tuple[str, str], name: str) -> None:
    """One curve's mean line and its shaded 95 % CI across trainings."""
    line, marker = style
    ax.plot(curve["steps"], curve["mean"], color=colour, linestyle=line, marker=marker,
            markersize=4, label=f"{name} (mean of {int(curve['trainings'].max())} trainings)")
    ax.fill_between(curve["steps"], curve["low"], curve["high"], color=colour, alpha=0.18,
                    linewidth=0)


def _draw_seed_panel(ax, curves: pd.DataFrame, floor: tuple[Spread, float],
                     untrained: list[tuple[str, float]], colours: dict[str, str], label: str,
                     untrained_where: str) -> None:
    """Mean and 95 % CI band per (model, sampler); y from the trained curves and the floor only
    (untrained levels, far above, are written in the x label instead)."""
    steps = sorted({int(s) for s in curves["steps"].dropna()})
    for model in ordered_models(curves["model"]):
        for sampler, curve in curves[curves["model"] == model].groupby("sampler", sort=False):
            _draw_band(ax, curve.sort_values("steps"), colours.get(model, "k"),
                       SAMPLER_STYLE.get(sampler, (":", "^")), f"{model} {sampler}")
    level, n = floor
    if not math.isnan(level.mean):
        ax.axhline(level.mean, color="0.3", linestyle="--", linewidth=1.2,
                   label=f"real images, n = {_steps(n)} (floor)")
    limits = _axis_range([*curves["mean"], *curves["low"], *curves["high"], level.mean])
    if limits:
        ax.set_ylim(*limits)
    ax.set_xscale("log")
    if steps:
        ax.set_xticks(steps)
        ax.set_xticklabels([str(s) for s in steps])
        ax.minorticks_off()
    note = ("\nuntrained " + untrained_where + ": "
            + ", ".join(f"{m} {_num(v)}" for m, v in untrained)) if untrained else ""
    ax.set_xlabel("sampling steps" + note, fontsize=9)
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def draw_seed_curves(ok: pd.DataFrame, metric: str = "fid"):
    """One panel per (dataset, extractor): `metric` against steps, mean and shaded 95 % CI across
    trainings, the real-data floor dashed, log-x."""
    curves = seed_curves(ok, metric)
    groups = list(curves.groupby(["dataset", "feature_extractor"], sort=False).groups)
    figure = render.new_figure(7.5, 4.8 * max(1, len(groups)))
    if not groups:
        ax = figure.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, f"no {metric} measured", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return figure
    axes = figure.subplots(len(groups), 1, squeeze=False)
    colours = {m: f"C{i}" for i, m in enumerate(ordered_models(curves["model"]))}
    for ax, (dataset, extractor) in zip(axes[:, 0], groups, strict=True):
        here = _match(curves, dataset=dataset, feature_extractor=extractor)
        floor = floor_at(ok, dataset, extractor, here["n"].max(), metric)
        levels = [(m, untrained_level(ok, dataset, extractor, m, metric))
                  for m in ordered_models(here["model"])]
        untrained = [(m, v) for m, (v, _, _) in levels if not math.isnan(v)]
        where = next((f"({s.upper()}, {_steps(t)} steps)" for _, (v, s, t) in levels
                      if not math.isnan(v)), "")
        label = metric_label(metric, extractor)
        _draw_seed_panel(ax, here, floor, untrained, colours, label, where)
        ax.set_title(f"{dataset}: {label}, 95 % CI across trainings", fontsize=10)
    return figure


# ----------------------------------------------------------------------------- writers, across trainings


def _find_grid(results_dir: Path, ok: pd.DataFrame, dataset: str, model: str, sampler: str,
               steps: float, train_seed: int) -> tuple[Path, bool] | None:
    """(grid file, whether it names the training) of the first sampling seed of `train_seed`; the
    un-named file (sweeps before `grid_file` took a training seed) only as a fallback: with several
    trainings it may hold any of them, and the grid's title says so."""
    rows = ok[(ok["metric"] == "fid") & (ok["dataset"] == dataset) & (ok["model"] == model)
              & (ok["sampler"] == sampler) & (ok["steps"] == steps)
              & (ok["checkpoint"].map(_kind) == "trained") & (train_seed_column(ok) == train_seed)]
    samples = Path(results_dir) / "samples"
    for seed in sorted(int(s) for s in rows["seed"].dropna().unique()):
        named = grid_file(samples, dataset, model, "trained", sampler, int(steps), seed,
                          train_seed)
        if named.is_file():
            return named, True
        plain = grid_file(samples, dataset, model, "trained", sampler, int(steps), seed)
        if plain.is_file():
            return plain, False
    return None


def _grid_title(model: str, dataset: str, sampler: str, steps: float, train_seed: int,
                named: bool, score: float, label: str) -> str:
    which = f"training seed {train_seed}" if named else "training not named in the grid file"
    return (f"{model} on {dataset}: {sampler.upper()}, {_steps(steps)} steps, {which}\n"
            f"({label} of this training {_num(score)})")


def _grid_plan(row: pd.Series, fewest: float, suffix: str) -> list[tuple[float, str]]:
    """(steps, file name) of a model's grids: its best steps, and the fewest steps tried unless
    they are the best (then one grid says both)."""
    model = safe_name(row["model"])
    plan = [(row["steps_best"], f"samples_{model}{suffix}.png")]
    if not math.isnan(fewest) and fewest != row["steps_best"]:
        plan.append((fewest, f"samples_{model}_s{_steps(fewest)}{suffix}.png"))
    return plan


def write_seed_sample_grids(results_dir: Path, table: pd.DataFrame, ok: pd.DataFrame,
                            out_dir: Path) -> list[Path]:
    """Per model, at its best sampler: the first training's samples at its best steps
    (`samples_<model>.png`) and at the fewest steps tried (`samples_<model>_s<steps>.png`), from
    the grid files the sweep kept (`grid_file(..., train_seed)`); a missing file is skipped."""
    seeds = trainings(ok)
    if table.empty or not seeds:
        return []
    scores = training_scores(ok, "fid")
    best = best_settings(table)
    several = best["dataset"].nunique() > 1
    paths = []
    for _, row in best.iterrows():
        mine = _match(scores, dataset=row["dataset"], model=row["model"], sampler=row["sampler"],
                      train_seed=float(seeds[0]))
        fewest = float(mine["steps"].min()) if not mine.empty else math.nan
        for steps, name in _grid_plan(row, fewest, f"_{row['dataset']}" if several else ""):
            found = _find_grid(results_dir, ok, row["dataset"], row["model"], row["sampler"],
                               steps, seeds[0])
            if found is None:
                continue
            with np.load(found[0]) as data:
                images = data["images"]
            score = _match(mine, steps=steps)["value"]
            title = _grid_title(row["model"], row["dataset"], row["sampler"], steps, seeds[0],
                                found[1], score.iloc[0] if not score.empty else math.nan,
                                metric_label("fid", row["feature_extractor"]))
            paths.append(render.save_figure(draw_samples(images, title), Path(out_dir) / name))
    return paths


SEED_PLOTS = (("fid", "fid_vs_steps.png"), ("fid_inf", "fid_inf_vs_steps.png"),
              ("kid_mean", "kid_vs_steps.png"))


def write_seed_reports(results_dir: Path, ok: pd.DataFrame, failed: pd.DataFrame | None,
                       out_dir: Path) -> list[Path]:
    """Every report of a run with several trainings per model (see `write_quality_reports`)."""
    table = table1_seeds_data(ok)
    comparisons = comparisons_data(ok)
    paths = [
        render.write_text(out_dir / "table1.md",
                          render_seeds_markdown(table, comparisons, ok, failed)),
        render.write_text(out_dir / "table1.tex", render_seeds_latex(table, ok)),
        render.write_csv(out_dir / "table1.csv", table),
        render.write_text(out_dir / "comparisons.md", render_comparisons_markdown(comparisons)),
        render.write_csv(out_dir / "comparisons.csv", comparisons),
    ]
    for metric, name in SEED_PLOTS:
        if metric == "fid" or (ok["metric"] == metric).any():
            paths.append(render.save_figure(draw_seed_curves(ok, metric), out_dir / name))
    return paths + write_seed_sample_grids(results_dir, table, ok, out_dir)


# ----------------------------------------------------------------------------- writers


