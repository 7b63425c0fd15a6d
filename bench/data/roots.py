"""Where a real dataset lives: an explicit path, else `$BENCH_DATA_DIR/<name>`."""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import UsageError

ENV_DATA_DIR = "BENCH_DATA_DIR"


def resolve_root(name: str, root: str | Path | None, layout: str) -> Path:
    """The existing path for dataset `name`; a one-line UsageError naming `layout` otherwise."""
    if root is None or str(root) == "":
        base = os.environ.get(ENV_DATA_DIR, "").strip()
        if not base:
            raise UsageError(
                f"{name}: no data path given; pass one (e.g. --data-root) or set {ENV_DATA_DIR}=DIR "
                f"with DIR/{name} holding {layout}")
        root = Path(base) / name
    path = Path(root).expanduser()
    if not path.exists():
        raise UsageError(f"{name}: {path} does not exist; expected {layout}")
    return path
