"""Output paths checked before anything is measured: a folder that can be written, a file path that
is not a folder, and names safe to use as one file or folder name."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from bench.errors import UsageError


def safe_name(text: str) -> str:
    """`text` usable as one file or folder name (a factory reference 'pkg/nets.py:make' has
    slashes and colons): every run of other characters than letters, digits, '.', '_' and '-'
    becomes '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "_"


def ensure_writable_dir(path: Path, flag: str, *, fix: str | None = None) -> Path:
    """Create `path` (and parents) and prove a file can be written in it, before any measuring or
    training; a one-line UsageError naming `flag` otherwise (e.g. a path under a regular file)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(f"cannot write to output directory {path} ({flag}): {reason}; "
                         f"{fix or f'pass a writable {flag} DIR'}") from None
    return path


def ensure_writable_file(path: Path, flag: str) -> Path:
    """The same for a file to be (re)written atomically: its folder writable, itself not a folder."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a directory; pass a file path")
    ensure_writable_dir(path.parent, f"the folder of {flag}", fix=f"pass a writable {flag} FILE")
    return path
