"""Efficiency regression gate: `python -m bench check` against a committed baseline.

- `baseline`: read/validate/write the baseline CSV (tidy measurements format, one context).
- `counts`: the deterministic counts, measured with the matrix's cells.
- `compare`: pure verdicts (exact counts, latency ratios within a tolerance).
- `run`: one gate run (check or update); `table`: the text tables it prints.
"""
