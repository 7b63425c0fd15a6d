"""`python -m bench profile`: the old name of `python -m bench breakdown`, kept for one release.

Same options and outputs as `breakdown` (breakdown.csv, breakdown.png, traces); it only adds a
one-line deprecation note on stderr. "profile" now means a benchmark preset (`run --profile`).
"""

from __future__ import annotations

import argparse
import sys

from bench.commands import breakdown

NOTE = ("note: 'python -m bench profile' is deprecated and will be removed in the next release; "
        "use 'python -m bench breakdown' (same options; it writes breakdown.csv)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    breakdown.add_arguments(parser)


def execute(args: argparse.Namespace) -> int:
    print(NOTE, file=sys.stderr)
    return breakdown.execute(args)
