"""The efficiency benchmark matrix: TOML profiles -> cells -> tidy rows in measurements.csv."""

from bench.matrix.spec import EFFICIENCY_PROFILES, METRICS, MatrixSpec, load_spec

__all__ = ["EFFICIENCY_PROFILES", "METRICS", "MatrixSpec", "load_spec"]
