"""Summarise runs.csv (written by measure.py): determinism spreads and gate verdict counts.

    uv run python results/gate-sensitivity/summarize.py
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def main() -> None:
    runs = pd.read_csv(HERE / "runs.csv")
    counted = runs[runs["experiment"] == "determinism"]
    if not counted.empty:
        print("determinism: instruction counts of each preset's small configuration")
        print("| preset | hogs | runs | median Ir | spread (max-min)/median |")
        print("|---|---:|---:|---:|---:|")
        for (model, hogs), group in counted.groupby(["model", "hogs"], sort=False):
            values = group["value"].astype(float)
            spread = (values.max() - values.min()) / values.median() * 100
            print(f"| {model} | {hogs} | {len(values)} | {values.median():,.0f} | {spread:.3f} % |")
        seconds = counted.drop_duplicates(["hogs", "run"]).groupby("hogs")["seconds"]
        print("seconds per run (all presets):", seconds.median().to_dict(),
              "min", seconds.min().to_dict(), "max", seconds.max().to_dict())
    gated = runs[runs["experiment"].str.startswith("sensitivity")].copy()
    # A latency check that passed with its ratio beyond the 10 % tolerance kept that change as
    # 'inconclusive (busy)' (older runs of measure.py did not write the word; the exit code and
    # the change say it).
    latency = gated["experiment"] == "sensitivity-latency"
    beyond = pd.to_numeric(gated["change_pct"], errors="coerce").abs() > 10
    gated.loc[latency & beyond & (gated["verdict"] == "pass"), "verdict"] = \
        "pass (inconclusive: busy)"
    if not gated.empty:
        print("\nsensitivity: verdicts of `bench check` on the factory (changed = extra_ops=1)")
        print("| gate | case | hogs | runs | FAIL | pass | of which inconclusive (busy) | changes (%) "
              "| seconds (median) |")
        print("|---|---|---:|---:|---:|---:|---:|---|---:|")
        for (gate, case, hogs), group in gated.groupby(["experiment", "case", "hogs"], sort=False):
            verdicts = group["verdict"].astype(str)
            changes = ", ".join(str(c) for c in group["change_pct"])
            print(f"| {gate.removeprefix('sensitivity-')} | {case} | {hogs} | {len(group)} | "
                  f"{verdicts.str.startswith('FAIL').sum()} | {verdicts.str.startswith('pass').sum()} "
                  f"| {verdicts.str.contains('inconclusive').sum()} | {changes} "
                  f"| {group['seconds'].median():.0f} |")
        odd = gated[~gated["verdict"].astype(str).str.match(r"^(FAIL|pass)$")]
        for _, row in odd.iterrows():
            print(f"note: {row['experiment']} {row['case']} hogs={row['hogs']} run={row['run']}: "
                  f"{row['verdict']}")


if __name__ == "__main__":
    main()
