"""Errors the command line turns into a one-line message and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: the message names what was wrong and how to fix it."""


def failure_reason(error: BaseException, limit: int = 300) -> str:
    """'ErrorType: first line of its message', cut to `limit` characters: what a failed
    measurement records instead of a traceback."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"[:limit]


def parse_cli_value(text: str) -> object:
    """A KEY=VALUE flag's value: a Python/TOML-like literal (42, 1.5, true, [1, 2], 'x') or else the
    text itself. The model's configuration then checks its type and range (`models.build`)."""
    import ast

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
