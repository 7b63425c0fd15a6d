"""The efficiency benchmark matrix: TOML profiles -> cells -> tidy rows in measurements.csv."""

from bench.matrix.spec import METRICS, MatrixSpec, load_spec, validate_models

__all__ = ["METRICS", "MatrixSpec", "load_spec", "validate_models"]
