"""Values given on the command line: a KEY=VALUE flag's value read as a literal, and the repeated
`--model-arg KEY=VALUE` flags of every command that builds models."""

from __future__ import annotations

import ast

from bench.errors import UsageError


def parse_cli_value(text: str) -> object:
    """A KEY=VALUE flag's value: a Python/TOML-like literal (42, 1.5, true, [1, 2], 'x') or else the
    text itself. The model's configuration then checks its type and range (`models.build`)."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def parse_model_args(items: list[str], flag: str = "--model-arg") -> dict[str, object]:
    """['width=8', 'solver="euler"'] -> {'width': 8, 'solver': 'euler'}: the KEY=VALUE flags of
    every command that builds models (preset overrides or a factory's keyword arguments)."""
    parsed: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} expects KEY=VALUE, got {item!r}")
        parsed[key.strip()] = parse_cli_value(raw.strip())
    return parsed
