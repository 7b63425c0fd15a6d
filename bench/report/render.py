"""Text renderers (Markdown, LaTeX) and atomic writers for the report files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from bench.files import atomic_path, atomic_write_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
                   align_left: int = 1) -> str:
    """A GitHub-flavoured Markdown table; the first `align_left` columns left-aligned, the rest
    right-aligned (numbers)."""
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join(":---" if i < align_left else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
                "\u2014": "---", "\u2013": "--", "\u0394": r"$\Delta$", "\u00d7": r"$\times$"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def latex_table(headers: Sequence[str], rows: Sequence[Sequence[str]], caption: str, label: str,
                notes: Sequence[str] = (), align_left: int = 1) -> str:
    """A booktabs `table` with a caption and the notes as a small paragraph under the tabular.
    Everything is escaped here; callers pass plain text."""
    spec = "l" * align_left + "r" * (len(headers) - align_left)
    out = [r"% needs \usepackage{booktabs} and \usepackage{graphicx} (for \resizebox)",
           r"\begin{table}[t]", r"\centering", r"\small",
           rf"\caption{{{tex_escape(caption)}}}", rf"\label{{{label}}}",
           r"\resizebox{\linewidth}{!}{%", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
           " & ".join(tex_escape(h) for h in headers) + r" \\", r"\midrule"]
    out += [" & ".join(tex_escape(c) for c in row) + r" \\" for row in rows]
    out += [r"\bottomrule", r"\end{tabular}}"]
    if notes:
        out += [r"\par\smallskip", r"\footnotesize"]
        out += [tex_escape(n) + r"\par" for n in notes]
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def write_text(path: Path, text: str) -> Path:
    atomic_write_text(path, text)
    return path


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    """Counts stay exact integers (a column of counts with a gap is float in pandas, and would be
    written as 35710339.0); other numbers get 10 significant digits."""
    frame = frame.copy()
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_float_dtype(values):
            present = values.dropna()
            if not present.empty and (present == present.round()).all() and present.abs().max() < 2**53:
                frame[column] = values.astype("Int64")
    atomic_write_text(path, frame.to_csv(index=False, float_format="%.10g"))
    return path


def save_figure(figure: Figure, path: Path) -> Path:
    """Save to a temporary name beside `path`, then rename, so a reader never sees half a file."""
    # No bbox_inches="tight": the constrained layout already fits every label, and "tight"
    # draws the figure a second time.
    from matplotlib import rc_context

    # TrueType fonts in PDFs: text stays editable/searchable, and saving is ~2x faster than Type 3.
    with atomic_path(path) as tmp, rc_context({"pdf.fonttype": 42}):
        figure.savefig(tmp, format=path.suffix.lstrip("."), dpi=150, metadata=_metadata(path.suffix))
    return path


def _metadata(suffix: str) -> dict[str, str | None]:
    """Drop creation dates so unchanged data gives an unchanged file (reports are committed)."""
    if suffix == ".pdf":
        return {"CreationDate": None, "Producer": None}
    if suffix == ".png":
        return {"Software": None}
    return {}


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib Figure on the Agg canvas, without pyplot's global state or backend switching."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def log_log_axes(ax: Axes, decades_with_minor_labels: float = 2.5) -> None:
    """Both axes logarithmic, minor ticks at 2x and 5x only, labelled while an axis spans fewer
    than `decades_with_minor_labels` decades (else only the powers of ten): matplotlib's default
    labels 2, 3, 4 and 6 as well on a short axis, and they overlap on a narrow panel."""
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
        axis.set_minor_formatter(LogFormatterSciNotation(
            labelOnlyBase=False,
            minor_thresholds=(decades_with_minor_labels, decades_with_minor_labels)))
