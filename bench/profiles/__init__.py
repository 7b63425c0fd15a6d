"""Benchmark profiles: the presets `python -m bench run --profile NAME` runs, one TOML file each in
this folder (NAME.toml).

A profile says which kind it is by its main table: `[matrix]` is an efficiency profile (models x
resolutions x batch sizes x devices x metrics, read by `bench.matrix.spec`), `[quality]` a quality
profile (train each model, then sweep FID/KID against sampling steps, read by
`bench.quality.profiles`). Both share `description` and `[overrides]` (model name -> preset
overrides). The folder is the only list of profiles: every listing and error reads it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UsageError

PROFILE_DIR = Path(__file__).resolve().parent
KINDS = ("matrix", "quality")
"""A profile's kind is the name of its main table."""
DEFAULT = "quick"
"""The profile `run` runs without --profile or --config."""


@dataclass(frozen=True)
class ProfileFile:
    """One decoded profile file."""

    name: str
    kind: str
    """'matrix' (efficiency) or 'quality'."""
    raw: dict[str, Any]
    path: Path


def read_toml(path: Path) -> dict[str, Any]:
    """The decoded TOML of `path`; a one-line UsageError if it is not valid TOML."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path} is not valid TOML: {error}") from None


def kind_of(raw: dict[str, Any], where: str) -> str:
    """'matrix' or 'quality': the one main table `raw` has (a one-line UsageError otherwise)."""
    found = [kind for kind in KINDS if kind in raw]
    if len(found) != 1:
        raise UsageError(f"{where}: a profile has either a [matrix] table (efficiency) or a [quality] "
                         f"table (quality), not {' and '.join(f'[{k}]' for k in found) or 'neither'}; "
                         "see bench/profiles/quick.toml or bench/profiles/smoke.toml")
    return found[0]


def read_profile_file(path: Path, name: str | None = None) -> ProfileFile:
    """A profile file (built-in or a user's `--config`), decoded and its kind told."""
    path = Path(path)
    raw = read_toml(path)
    return ProfileFile(name or path.stem, kind_of(raw, str(path)), raw, path)


def read_config(path: Path) -> ProfileFile:
    """A user's profile file (`run --config FILE.toml`), named by its stem."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--config {path} is a directory; pass a TOML matrix description file")
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist; pass a TOML matrix description")
    return read_profile_file(path)


def profile_names(kind: str | None = None) -> list[str]:
    """Every built-in profile (of `kind` when given), the default first, then alphabetical."""
    names = sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))
    names.sort(key=lambda n: n != DEFAULT)
    if kind is None:
        return names
    return [n for n in names if read_profile_file(PROFILE_DIR / f"{n}.toml").kind == kind]


def listing() -> str:
    """'efficiency: quick, ...; quality: digits, ...': every built-in profile, by kind."""
    return (f"efficiency: {', '.join(profile_names('matrix'))}; "
            f"quality: {', '.join(profile_names('quality'))}")


def load_profile(name: str) -> ProfileFile:
    """The built-in profile `name`; a one-line UsageError naming every profile if there is none."""
    path = PROFILE_DIR / f"{name}.toml"
    if not name or "/" in name or "\\" in name or not path.is_file():
        raise UsageError(f"unknown profile '{name}'; available: {listing()}")
    return read_profile_file(path, name)
