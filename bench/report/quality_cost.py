"""Quality against cost: what a generated image costs for a given score, per model and sampler.

Drawn only from a quality results directory. Three costs of one generated image, all from the
same run and machine:

- `steps`: sampling steps;
- `s/sample (batch 1)`: `time_per_sample_s` (median), timed on each model's first training;
- `s/sample (sweep batch)`: `sweep_wall_per_image_s`, the wall time of making a scored set in the
  sweep's batches divided by its n (median over the point's sets);
- `GFLOPs/sample`: `flops_torch` of one denoiser call on one image (torch flop_counter, every op,
  so a cU-Net's count holds all its ODE evaluations) x `denoiser_calls` of the (sampler, steps)
  run (Heun calls the model 2S - 1 times), / 1e9.

Scores are per replicate first: the independent trainings when the run trained every model
several times, else the sampling seeds, else one value (then no interval is drawn or claimed).
Writes `quality_cost.md` / `.csv` (the points, each model's Pareto frontier, the "time to within
5 % of the best score" table with its range across replicates, the best score each model reaches
within a time budget, and a paragraph from the numbers) and `quality_vs_cost.png`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.quality.statistics import NOT_RESOLVED, difference
from bench.quality.sweep import UNTRAINED
from bench.report import render
from bench.report.data import ordered_models
from bench.report.quality import SAMPLER_STYLE, WITHIN, _kind
from bench.report.quality_seeds import metric_label, spread, train_seed_column
from bench.results.schema import SWEEP_WALL_PER_IMAGE
from models.diffusion.samplers import SAMPLERS, get_sampler

COSTS = {"steps": "sampling steps", "seconds_b1": "seconds per sample (batch 1)",
         "seconds_sweep": "seconds per sample (sweep batch)", "gflops": "GFLOPs per sample"}
"""Cost column -> its axis label."""
TIME_COST = "seconds_b1"
"""The cost the time tables use: the per-sample time a user waiting for one image pays."""
SCORE_STAT = {"fid": "value", "kid_mean": "mean"}
POINT_KEYS = ["dataset", "feature_extractor", "model", "sampler", "steps"]


# ----------------------------------------------------------------------------- pure data shaping


def replicate_scores(ok: pd.DataFrame, metric: str = "fid") -> tuple[pd.DataFrame, str]:
    """One score per replicate of every trained point, and what a replicate is ("training",
    "sampling seed" or "none"). Columns: POINT_KEYS, replicate, value."""
    rows = ok[(ok["metric"] == metric) & (ok["checkpoint"].map(_kind) == "trained")
              & (ok["stat"] == SCORE_STAT.get(metric, "value"))].copy()
    rows = rows[rows["steps"].notna()]
    rows["steps"] = rows["steps"].astype(float)
    rows["train_seed"] = train_seed_column(rows)
    columns = [*POINT_KEYS, "replicate", "value"]
    if rows.empty:
        return pd.DataFrame(columns=columns), "none"
    if rows["train_seed"].nunique() >= 2:
        unit, by = "training", "train_seed"
        rows = rows.groupby([*POINT_KEYS, by], sort=True)["value"].mean().reset_index()
    else:
        rows["seed"] = pd.to_numeric(rows.get("seed"), errors="coerce").fillna(0)
        unit, by = ("sampling seed" if rows["seed"].nunique() >= 2 else "none"), "seed"
    rows = rows.rename(columns={by: "replicate"})
    return rows[columns].reset_index(drop=True), unit


def cost_points(ok: pd.DataFrame) -> pd.DataFrame:
    """The costs of every (dataset, model, sampler, steps) point the run measured (NaN where a
    cost was not measured). Columns: dataset, model, sampler, steps, seconds_b1, seconds_sweep,
    sweep_batch, calls, flops_per_call, gflops. The untrained references' rows are left out: they
    share (model, sampler, steps) with trained points, and their times are not those points'."""
    ok = ok[ok["checkpoint"].astype(str).map(_kind) != UNTRAINED]

    def median_of(metric: str, stat: str | None) -> pd.DataFrame:
        rows = ok[(ok["metric"] == metric) & ok["steps"].notna()]
        if stat is not None:
            rows = rows[rows["stat"] == stat]
        rows = rows.assign(steps=rows["steps"].astype(float))
        return rows.groupby(["dataset", "model", "sampler", "steps"])["value"].median()

    def any_busy(metric: str) -> pd.Series:
        rows = ok[(ok["metric"] == metric) & ok["steps"].notna()]
        flags = rows.get("busy", pd.Series("", index=rows.index)).astype(str).str.lower()
        rows = rows.assign(steps=rows["steps"].astype(float), busy=flags.isin(["true", "1"]))
        return rows.groupby(["dataset", "model", "sampler", "steps"])["busy"].any()

    frame = pd.DataFrame({
        "seconds_b1": median_of("time_per_sample_s", "median"),
        "seconds_sweep": median_of(SWEEP_WALL_PER_IMAGE, None),
        "calls": median_of("denoiser_calls", None),
        "busy_b1": any_busy("time_per_sample_s"),
        "busy_sweep": any_busy(SWEEP_WALL_PER_IMAGE),
    })
    sweep_rows = ok[ok["metric"] == SWEEP_WALL_PER_IMAGE]
    batches = (pd.to_numeric(sweep_rows.get("batch_size"), errors="coerce")
               .groupby([sweep_rows["dataset"], sweep_rows["model"]]).max()
               if "batch_size" in sweep_rows else pd.Series(dtype=float))
    flops = ok[ok["metric"] == "flops_torch"].groupby(["dataset", "model"])["value"].median()
    frame = frame.reset_index()
    if frame.empty:
        return pd.DataFrame(columns=["dataset", "model", "sampler", "steps", "seconds_b1",
                                     "seconds_sweep", "sweep_batch", "calls", "flops_per_call",
                                     "gflops", "busy_b1", "busy_sweep"])
    pairs = list(zip(frame["dataset"], frame["model"], strict=True))
    missing = frame["calls"].isna() & frame["sampler"].isin(SAMPLERS)
    frame.loc[missing, "calls"] = [float(get_sampler(s).model_calls(int(n))) for s, n in
                                   zip(frame.loc[missing, "sampler"], frame.loc[missing, "steps"],
                                       strict=True)]  # a run from before denoiser_calls rows
    frame["sweep_batch"] = [batches.get(p, math.nan) for p in pairs]
    frame["flops_per_call"] = [flops.get(p, math.nan) for p in pairs]
    frame["gflops"] = frame["flops_per_call"] * frame["calls"] / 1e9
    return frame


def quality_cost_points(ok: pd.DataFrame, metric: str = "fid") -> tuple[pd.DataFrame, str]:
    """Every trained point with its score (mean, 95 % interval across replicates, replicates)
    and its costs; and the replicate unit."""
    scores, unit = replicate_scores(ok, metric)
    records = []
    for key, group in scores.groupby(POINT_KEYS, sort=True):
        s = spread(group["value"]) if unit != "none" else spread(group["value"][:1])
        records.append({**dict(zip(POINT_KEYS, key, strict=True)), "mean": s.mean, "low": s.low,
                        "high": s.high, "replicates": s.trainings})
    points = pd.DataFrame.from_records(records, columns=[*POINT_KEYS, "mean", "low", "high",
                                                         "replicates"])
    costs = cost_points(ok)
    points["steps_cost"] = points["steps"]
    merged = points.merge(costs, on=["dataset", "model", "sampler", "steps"], how="left")
    merged["steps"] = merged["steps_cost"]
    merged = merged.drop(columns=["steps_cost"])
    for column in COSTS:
        if column not in merged:
            merged[column] = math.nan
    return merged, unit


def pareto_front(points: pd.DataFrame, cost: str, score: str = "mean") -> pd.DataFrame:
    """The points no other point beats on both cost and score (lower is better for both), by
    increasing cost: the best score each budget buys. Points without the cost are left out."""
    usable = points[points[cost].notna() & points[score].notna()]
    ordered = usable.sort_values([cost, score], kind="mergesort")
    keep, best = [], math.inf
    for index, row in ordered.iterrows():
        if row[score] < best:
            keep.append(index)
            best = row[score]
    return ordered.loc[keep]


def _cheapest_within(curve: pd.DataFrame, cost: str, target: float) -> pd.Series | None:
    """The cheapest point of `curve` (columns cost, value) whose value is at most `target`."""
    reached = curve[(curve["value"] <= target) & curve[cost].notna()]
    return None if reached.empty else reached.sort_values([cost, "steps"]).iloc[0]


def time_to_quality(ok: pd.DataFrame, metric: str = "fid", cost: str = TIME_COST) -> pd.DataFrame:
    """Per (dataset, extractor, model, sampler): the best mean score and its steps; the fewest
    steps and the `cost` at which the mean curve comes within 5 % (`WITHIN`) of that best, and
    the [min, max] of that cost over the replicates, each on its own curve against its own best;
    and the same cost to come within 5 % of the model's best score over all its samplers."""
    points, unit = quality_cost_points(ok, metric)
    scores, _ = replicate_scores(ok, metric)
    costs = cost_points(ok)[["dataset", "model", "sampler", "steps", cost]]
    scores = scores.merge(costs, on=["dataset", "model", "sampler", "steps"], how="left")
    records = []
    for (dataset, extractor, model), mine in points.groupby(POINT_KEYS[:3], sort=False):
        model_best = mine["mean"].min()
        for sampler, curve in mine.groupby("sampler", sort=False):
            curve = curve.rename(columns={"mean": "value"})
            best = curve.loc[curve["value"].idxmin()]
            own = _cheapest_within(curve, cost, best["value"] * (1 + WITHIN))
            fewest = _cheapest_within(curve, "steps", best["value"] * (1 + WITHIN))
            overall = _cheapest_within(curve, cost, model_best * (1 + WITHIN))
            spent = []
            replicate_rows = scores[(scores["dataset"] == dataset) & (scores["model"] == model)
                                    & (scores["feature_extractor"] == extractor)
                                    & (scores["sampler"] == sampler)]
            for _, one in replicate_rows.groupby("replicate"):
                hit = _cheapest_within(one, cost, one["value"].min() * (1 + WITHIN))
                if hit is not None:
                    spent.append(float(hit[cost]))
            records.append({
                "dataset": dataset, "feature_extractor": extractor, "model": model,
                "sampler": sampler, "best": best["value"], "best_low": best["low"],
                "best_high": best["high"], "best_steps": best["steps"],
                "within_steps": math.nan if fewest is None else fewest["steps"],
                "within_cost": math.nan if own is None else own[cost],
                "within_cost_min": min(spent) if len(spent) >= 2 else math.nan,
                "within_cost_max": max(spent) if len(spent) >= 2 else math.nan,
                "replicates": int(best["replicates"]),
                "model_best_steps": math.nan if overall is None else overall["steps"],
                "model_best_cost": math.nan if overall is None else overall[cost],
                "cost": cost, "unit": unit,
            })
    return pd.DataFrame.from_records(records)


def budgets(points: pd.DataFrame, cost: str = TIME_COST, count: int = 6) -> list[float]:
    """`count` budgets spaced evenly in log between the cheapest point of the most expensive
    model's frontier start and the largest cost: where every model has at least one point."""
    usable = points[points[cost].notna()]
    if usable.empty:
        return []
    low = usable.groupby("model")[cost].min().max()
    high = usable[cost].max()
    if not low < high:
        return [float(low)]
    return [float(v) for v in np.geomspace(low, high, count)]


def at_equal_cost(ok: pd.DataFrame, metric: str = "fid", cost: str = TIME_COST) -> pd.DataFrame:
    """Per dataset, extractor and budget: each model's best point with `cost` <= budget (its
    sampler, steps, mean score and interval), the leader, and the leader minus the runner-up with
    a Welch interval across replicates where there are >= 2 of each ("not resolved" if it spans 0)."""
    points, unit = quality_cost_points(ok, metric)
    scores, _ = replicate_scores(ok, metric)
    records = []
    for (dataset, extractor), mine in points.groupby(POINT_KEYS[:2], sort=False):
        for budget in budgets(mine, cost):
            chosen = {}
            for model, theirs in mine.groupby("model", sort=False):
                affordable = theirs[theirs[cost] <= budget * (1 + 1e-9)]
                if not affordable.empty:  # the best score; of equal scores the cheaper point
                    chosen[model] = affordable.sort_values(["mean", cost], kind="mergesort").iloc[0]
            if not chosen:
                continue
            ranked = sorted(chosen.items(), key=lambda item: item[1]["mean"])
            record = {"dataset": dataset, "feature_extractor": extractor, "budget": budget,
                      "cost": cost, "leader": ranked[0][0], "unit": unit}
            for model, row in chosen.items():
                record[f"{model}"] = row["mean"]
                record[f"{model} low"] = row["low"]
                record[f"{model} high"] = row["high"]
                record[f"{model} at"] = f"{row['sampler']} {int(row['steps'])}"
            verdict, resolved = "only model within the budget", None
            if len(ranked) >= 2:
                values = []
                for model, row in ranked[:2]:
                    match = scores[(scores["dataset"] == dataset) & (scores["model"] == model)
                                   & (scores["feature_extractor"] == extractor)
                                   & (scores["sampler"] == row["sampler"])
                                   & (scores["steps"] == row["steps"])]
                    values.append(list(match["value"]))
                if min(len(v) for v in values) >= 2 and unit != "none":
                    d = difference(values[0], values[1])
                    verdict = (f"{ranked[0][0]} - {ranked[1][0]} = {d.delta:.3g} "
                               f"[{d.low:.3g}, {d.high:.3g}]: {d.verdict}")
                    resolved = d.verdict != NOT_RESOLVED
                else:
                    verdict = "no interval (one replicate)"
            record["difference"] = verdict
            record["resolved"] = resolved
            record["compared"] = " vs ".join(f"{m} {r['sampler']} {int(r['steps'])}"
                                             for m, r in ranked[:2])
            records.append(record)
    return pd.DataFrame.from_records(records)


# ----------------------------------------------------------------------------- rendering


def _num(value: float, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def _ci(mean: float, low: float, high: float) -> str:
    if math.isnan(low):
        return _num(mean)
    return f"{_num(mean)} [{_num(low)}, {_num(high)}]"


def _steps(value: float) -> str:
    return "—" if math.isnan(value) else str(int(value))


def _what_the_interval_is(unit: str, count: int) -> str:
    if unit == "none":
        return ("one replicate (one training, one sampling seed): no interval is drawn and no "
                "difference is called resolved")
    return f"95 % Student-t interval across {count} {unit}s"


def _interval_sentence(unit: str, count: int) -> str:
    if unit == "none":
        return "There is no ±: " + _what_the_interval_is(unit, count) + "."
    return f"Every ± is a {_what_the_interval_is(unit, count)}."


def few_step_sentences(table: pd.DataFrame) -> list[str]:
    """From `time_to_quality`: per sampler, each model's fewest steps to within 5 % of its own
    best and that best, in words."""
    lines = []
    for (dataset, sampler), rows in table.groupby(["dataset", "sampler"], sort=False):
        parts = [f"{row['model']} {_steps(row['within_steps'])} steps to within 5 % of its best "
                 f"{_num(row['best'])} (at {_steps(row['best_steps'])})" for _, row in rows.iterrows()]
        lines.append(f"- {dataset}, {sampler}: " + "; ".join(parts) + ".")
    return lines


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def few_steps_answer(table: pd.DataFrame) -> list[str]:
    """Per dataset: does a model reach its own best in fewer steps than another, sampler by
    sampler, and what is each model's best over every sampler (a best reached sooner is not a
    better score)? One line per dataset; none where fewer than two models were scored."""
    lines = []
    for (dataset, _), mine in table.groupby(["dataset", "feature_extractor"], sort=False):
        parts = []
        for sampler, rows in mine.groupby("sampler", sort=False):
            steps = {row["model"]: row["within_steps"] for _, row in rows.iterrows()
                     if not math.isnan(row["within_steps"])}
            if len(steps) < 2:
                continue
            fewest = min(steps.values())
            if len(set(steps.values())) == 1:
                parts.append(f"with {sampler} every model is within 5 % of its own best at "
                             f"{_steps(fewest)} steps")
                continue
            first = [m for m, n in steps.items() if n == fewest]
            rest = [f"{m} {_steps(n)}" for m, n in sorted(steps.items(), key=lambda kv: kv[1])
                    if n != fewest]
            one = len(first) == 1
            parts.append(f"with {sampler} {_listing(first)} {'gets' if one else 'get'} within 5 % "
                         f"of {'its' if one else 'their'} own best in {_steps(fewest)} steps "
                         f"({_listing(rest)})")
        if not parts:
            continue
        best = mine.loc[mine.groupby("model", sort=False)["best"].idxmin()]
        bests = [f"{r['model']} {_ci(r['best'], r['best_low'], r['best_high'])} ({r['sampler']} "
                 f"{_steps(r['best_steps'])})" for _, r in best.sort_values("best").iterrows()]
        where = f" ({dataset})" if table["dataset"].nunique() > 1 else ""
        lines.append(f"**Fewer steps?**{where} " + "; ".join(parts) + ". Getting near one's own "
                     "best sooner is not a better score: each model's best over every sampler is "
                     + _listing(bests) + ".")
    return lines


def equal_time_answer(points: pd.DataFrame, equal: pd.DataFrame, cost: str,
                      unit: str = "none") -> list[str]:
    """Per dataset: which model is ahead at equal cost over the budgets of `at_equal_cost`, in how
    many distinct comparisons the lead is resolved (budgets that pick the same two points count
    once), and which models alone have points below the budgets. `unit`: what a replicate is."""
    lines = []
    for dataset, mine in equal.groupby("dataset", sort=False) if not equal.empty else ():
        low, high = float(mine["budget"].min()), float(mine["budget"].max())
        runs: list[tuple[str, float, float]] = []
        for _, r in mine.iterrows():
            if runs and runs[-1][0] == r["leader"]:
                runs[-1] = (r["leader"], runs[-1][1], r["budget"])
            else:
                runs.append((r["leader"], r["budget"], r["budget"]))
        if len(runs) == 1:
            ahead = f"{runs[0][0]} is ahead at every budget from {_num(low)} to {_num(high)} s"
        else:
            ahead = "; ".join(f"{m} is ahead from {_num(a)} to {_num(b)} s" for m, a, b in runs)
        judged = mine[mine["resolved"].notna()] if "resolved" in mine else mine.iloc[:0]
        if judged.empty and unit == "none":
            verdict = "one replicate: no interval, so no lead is claimed as real"
        elif judged.empty:
            verdict = "no budget has two models to compare"
        else:
            distinct = judged.drop_duplicates("compared")
            across = (" across sampling seeds of one training (the spread between trainings is "
                      "not in it)" if unit == "sampling seed" else "")
            verdict = (f"the lead is resolved (its 95 % Welch interval{across} excludes 0) in "
                       f"{int(distinct['resolved'].sum())} of {len(distinct)} distinct comparisons")
        theirs = points[(points["dataset"] == dataset) & (points[cost] < low * (1 - 1e-9))]
        below = ""
        if not theirs.empty:
            best = theirs.loc[theirs.groupby("model", sort=False)["mean"].idxmin()]
            alone = [f"{r['model']} (best {_num(r['mean'])}, {r['sampler']} {_steps(r['steps'])})"
                     for _, r in best.iterrows()]
            below = (f" Below {_num(low)} s only {_listing(alone)} "
                     f"{'has' if len(alone) == 1 else 'have'} points.")
        where = f" ({dataset})" if equal["dataset"].nunique() > 1 else ""
        lines.append(f"**At equal {COSTS[cost]}:**{where} {ahead}; {verdict}.{below}")
    return lines


def render_markdown(ok: pd.DataFrame, metric: str = "fid") -> str:
    """quality_cost.md: points, frontiers, time to quality, equal-time comparison, in words."""
    points, unit = quality_cost_points(ok, metric)
    if points.empty:
        return "# Quality against cost\n\nNo trained model was scored.\n"
    extractor = str(points["feature_extractor"].iloc[0])
    label = metric_label(metric, extractor)
    count = int(points["replicates"].max())
    lines = ["# Quality against cost", "",
             f"Score: {label}, lower is better. {_interval_sentence(unit, count)} Costs are one "
             "generated image's, from the same run and machine: seconds per sample at batch 1 "
             "(median of the timed runs, on each model's first training), at the sweep's batch "
             "(the scored sets' wall time / n), and GFLOPs (torch flop_counter FLOPs of one "
             "denoiser call x the run's denoiser calls; a cU-Net call's FLOPs include all its ODE "
             "evaluations). BUSY: other work held more than a quarter of the cores while it was "
             "timed (bench.measure.load); do not trust that time.", ""]
    headers = ["model", "sampler", "steps", label, "s/sample (batch 1)", "s/sample (sweep batch)",
               "GFLOPs/sample", "calls"]
    rows = []
    several = points["dataset"].nunique() > 1  # then each model is named with its dataset

    def named(dataset: str, model: str) -> str:
        return f"{model} ({dataset})" if several else model

    for _, row in points.sort_values(["dataset", "model", "sampler", "steps"]).iterrows():
        rows.append([named(row["dataset"], row["model"]), row["sampler"], _steps(row["steps"]),
                     _ci(row["mean"], row["low"], row["high"]),
                     _num(row["seconds_b1"]) + (" BUSY" if row.get("busy_b1") is True else ""),
                     _num(row["seconds_sweep"]) + (" BUSY" if row.get("busy_sweep") is True else ""),
                     _num(row["gflops"]), _steps(row["calls"])])
    lines += ["## Every point", "", render.markdown_table(headers, rows), ""]

    lines += ["## Pareto frontier per model", "",
              "The points of each model (over all its samplers and steps) that no other point of "
              "the same model beats on both cost and score: the best score each budget buys.", ""]
    for cost in ("seconds_b1", "gflops", "steps"):
        rows = []
        for dataset, model in ((d, m) for d in points["dataset"].unique()
                               for m in ordered_models(points.loc[points["dataset"] == d, "model"])):
            front = pareto_front(points[(points["model"] == model) & (points["dataset"] == dataset)],
                                 cost)
            rows.append([named(dataset, model), ", ".join(
                f"{r['sampler']} {_steps(r['steps'])}: {_num(r['mean'])} at {_num(r[cost])}"
                for _, r in front.iterrows()) or "—"])
        lines += [f"**{COSTS[cost]}**", "", render.markdown_table(["model", "frontier (score at cost)"],
                                                                   rows), ""]

    table = time_to_quality(ok, metric)
    headers = ["model", "sampler", f"best {label}", "steps at best", "fewest steps within 5 %",
               "least s/sample within 5 % (batch 1)", "range across replicates",
               "s/sample to within 5 % of the model's best"]
    rows = [[named(r["dataset"], r["model"]), r["sampler"], _ci(r["best"], r["best_low"], r["best_high"]),
             _steps(r["best_steps"]), _steps(r["within_steps"]), _num(r["within_cost"]),
             "—" if math.isnan(r["within_cost_min"]) else
             f"{_num(r['within_cost_min'])}–{_num(r['within_cost_max'])}",
             _num(r["model_best_cost"])] for _, r in table.iterrows()]
    lines += ["## Time to reach within 5 % of the best score", "",
              "Within 5 % of the sampler's own best (the mean curve; the range is each replicate "
              "on its own curve against its own best), and, last column, of the model's best over "
              "all its samplers (— where this sampler never gets there).", "",
              render.markdown_table(headers, rows), ""]

    answers = few_steps_answer(table)
    for cost in ("seconds_b1", "seconds_sweep"):
        equal = at_equal_cost(ok, metric, cost)
        if equal.empty:
            continue
        answers += equal_time_answer(points, equal, cost, unit)
        models = [m for m in ordered_models(points["model"]) if m in equal.columns]
        headers = [f"budget: {COSTS[cost]}", *models, "ahead", "leader - runner-up"]
        rows = []
        for _, r in equal.iterrows():
            cells = [("—" if pd.isna(r.get(m)) else
                      f"{_ci(r[m], r[f'{m} low'], r[f'{m} high'])} ({r[f'{m} at']})") for m in models]
            budget = _num(r["budget"]) + (f" ({r['dataset']})" if several else "")
            rows.append([budget, *cells, r["leader"], r["difference"]])
        lines += [f"## The best score within a time budget: {COSTS[cost]}", "",
                  "Each model's best point costing at most the budget; budgets log-spaced from the "
                  "cheapest point of the model whose cheapest point is dearest (below it some model "
                  "has no point) to the dearest point.", "",
                  render.markdown_table(headers, rows), ""]
    lines += ["## The answer, from the numbers above", "",
              f"Score: {label}; " + ("one replicate, so no interval and no claim that a "
                                      "difference is real." if unit == "none" else
                                      f"± is a {_what_the_interval_is(unit, count)}."), "",
              *answers, "", "Per sampler:", "", *few_step_sentences(table), ""]
    return "\n".join(lines)


def draw_quality_vs_cost(ok: pd.DataFrame, metric: str = "fid"):
    """Score against each cost (one column per cost, one row per dataset): one line per (model,
    sampler) with its interval band, and each model's Pareto frontier as a thick translucent step
    line."""
    points, unit = quality_cost_points(ok, metric)
    costs = [c for c in COSTS if points[c].notna().any()] if not points.empty else []
    datasets = list(points["dataset"].unique()) if costs else []
    figure = render.new_figure(5.2 * max(1, len(costs)), 4.6 * max(1, len(datasets)))
    if not costs:
        ax = figure.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no scored points", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return figure
    grid = figure.subplots(len(datasets), len(costs), squeeze=False)
    models = ordered_models(points["model"])
    colours = {m: f"C{i}" for i, m in enumerate(models)}
    label = metric_label(metric, str(points["feature_extractor"].iloc[0]))
    for axes, dataset in zip(grid, datasets, strict=True):
        mine = points[points["dataset"] == dataset]
        for ax, cost in zip(axes, costs, strict=True):
            for (model, sampler), curve in mine.groupby(["model", "sampler"], sort=False):
                curve = curve[curve[cost].notna()].sort_values(cost)
                line, marker = SAMPLER_STYLE.get(sampler, (":", "^"))
                ax.plot(curve[cost], curve["mean"], color=colours[model], linestyle=line,
                        marker=marker, markersize=4, label=f"{model} {sampler}")
                if curve["low"].notna().any():
                    ax.fill_between(curve[cost], curve["low"], curve["high"],
                                    color=colours[model], alpha=0.15, linewidth=0)
            for model in ordered_models(mine["model"]):
                front = pareto_front(mine[mine["model"] == model], cost)
                ax.step(front[cost], front["mean"], where="post", color=colours[model],
                        linewidth=4, alpha=0.25)
            render.log_log_axes(ax)
            ax.set_xlabel(COSTS[cost])
            ax.set_ylabel(label if len(datasets) == 1 else f"{dataset}: {label}")
            ax.grid(True, alpha=0.3, which="both")
    grid[0][0].legend(fontsize=7, ncol=1)
    band = ("bands: " + _what_the_interval_is(unit, int(points["replicates"].max()))
            if unit != "none" else "no bands: one replicate")
    figure.suptitle(f"{label} against cost; thick lines: each model's Pareto frontier; {band}",
                    fontsize=9)
    return figure


def write_quality_cost_reports(ok: pd.DataFrame, out_dir: Path, metric: str = "fid") -> list[Path]:
    """quality_cost.md, quality_cost.csv (the points) and quality_vs_cost.png, when the run
    scored trained models."""
    points, _ = quality_cost_points(ok, metric)
    if points.empty:
        return []
    return [render.write_text(out_dir / "quality_cost.md", render_markdown(ok, metric)),
            render.write_csv(out_dir / "quality_cost.csv", points),
            render.write_csv(out_dir / "time_to_quality.csv", time_to_quality(ok, metric)),
            render.save_figure(draw_quality_vs_cost(ok, metric), out_dir / "quality_vs_cost.png")]
