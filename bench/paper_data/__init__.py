"""The paper's published numbers as pandas tables (see README.md beside this file)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

_HERE = Path(__file__).parent

# Which of our presets each Table 2 row was measured on (docs/paper.md, "Table 2 mixes two cU-Nets").
TABLE2_PRESET = {
    "unet": "unet",
    "cunet": "cunet-attn5",
    "cunet-noattn": "cunet-noattn",
    "cunet-nores": "cunet-nores",
    "cunet-noattn-nores": "cunet-noattn-nores",
}


def table1() -> pd.DataFrame:
    """dataset, backbone, fid, steps, time_s."""
    return pd.read_csv(_HERE / "paper_table1.csv")


def table2() -> pd.DataFrame:
    """model, paper_label, gflops (thop GMACs), mb (checkpoint MiB)."""
    return pd.read_csv(_HERE / "paper_table2.csv")


def figure4() -> pd.DataFrame:
    """model, paper_label, params."""
    return pd.read_csv(_HERE / "paper_figure4.csv")


def authors_latency() -> pd.DataFrame:
    """model, latency_ms, threads, batch_size, resolution: the per-call CPU latency of the
    authors' implementation as we re-measured it, not a number the paper itself prints
    (docs/paper.md, "The authors' latency, re-measured")."""
    return pd.read_csv(_HERE / "authors_latency.csv")
