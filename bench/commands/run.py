"""`python -m bench run` (placeholder until its issue lands)."""

from __future__ import annotations

import argparse

from bench.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register this command's flags."""


def execute(args: argparse.Namespace) -> int:
    raise UsageError("'run' is not implemented yet")
