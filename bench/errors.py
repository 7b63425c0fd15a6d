"""Errors the command line turns into a one-line message and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: the message names what was wrong and how to fix it."""


def failure_reason(error: BaseException, limit: int = 300) -> str:
    """'ErrorType: first line of its message', cut to `limit` characters: what a failed
    measurement records instead of a traceback."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"[:limit]

