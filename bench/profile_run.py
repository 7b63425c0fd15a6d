"""The `profile` command's work: profile models, write profile.csv, traces and the plot.
Measuring is `bench.measure.profiling`; this module only adds context and writes files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import models
from bench.context import run_context
from bench.measure.profiling import profile_denoiser, result_rows
from bench.measure.workload import torch_threads
from bench.report import render
from bench.report.profile_report import draw_blocks
from bench.results import COLUMNS, atomic_write_text, cell_key, context_row, safe_name


def profile_models(names: list[str], *, overrides: dict[str, Any], device: torch.device, batch: int,
                   resolution: int, dtype: str, mode: str, what: str, calls: int, warmup: int,
                   threads: int | None, out_dir: Path) -> tuple[str, list[Path]]:
    """Profile every model; returns the printed table and the files written."""
    env = run_context()
    rows: list[dict[str, Any]] = []
    written: list[Path] = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with torch_threads(threads) as used:
        for name in names:
            source = models.model_source(name, overrides)
            net = source.build()
            trace = out_dir / f"trace-{safe_name(name)}.json"
            result = profile_denoiser(
                net, device=device, dtype=getattr(torch, dtype),
                batch=batch, resolution=resolution, mode=mode, what=what, calls=calls, warmup=warmup,
                trace_path=trace)
            written.append(trace)
            context = context_row(
                env, model=name, source=source, device=str(device), batch_size=batch,
                resolution=resolution, channels=3, dtype=dtype, mode=mode,
                threads=used if device.type == "cpu" else None, counter="torch.profiler",
                status="ok", n=calls, profile=f"profile ({what})",
                cell=cell_key("profile", name, device=str(device), resolution=resolution,
                              batch=batch, dtype=dtype, extra=(mode, what)),
                timestamp=stamp)
            rows += [{**context, **row, "method": f"{row['method']}; {'; '.join(result.notes)}"
                      if result.notes else row["method"]} for row in result_rows(result)]
    frame = pd.DataFrame([{c: r.get(c) for c in COLUMNS} for r in rows], columns=COLUMNS)
    path = out_dir / "profile.csv"
    atomic_write_text(path, frame.to_csv(index=False))
    written.append(path)
    written.append(render.save_figure(draw_blocks(frame), out_dir / "profile.png"))
    return block_table(frame), written


def block_table(frame: pd.DataFrame) -> str:
    """The per-block table printed by the command (ms and % per call, per model)."""
    lines = []
    for model, rows in frame.groupby("model", sort=False):
        call = rows[rows["metric"] == "profile_call_ms"]["value"].iloc[0]
        lines.append(f"{model}: {call:.2f} ms per profiled call")
        ms = rows[rows["metric"] == "profile_block_ms"].set_index("stat")["value"]
        pct = rows[rows["metric"] == "profile_block_pct"].set_index("stat")["value"]
        lines += [f"  {block:<28} {ms[block]:9.3f} ms {pct[block]:6.1f} %" for block in ms.index]
        kinds = rows[rows["metric"] == "profile_kind_ms"].set_index("stat")["value"]
        lines.append("  by kind: " + ", ".join(f"{k} {100 * v / call:.1f} %" for k, v in kinds.items()))
        busy = rows[rows["metric"] == "profile_launch_bound_pct"]["value"]
        if not busy.empty:
            lines.append(f"  GPU idle (launch-bound) {busy.iloc[0]:.1f} % of the call")
    return "\n".join(lines)
