"""Errors the command line turns into a one-line message and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: the message names what was wrong and how to fix it."""
