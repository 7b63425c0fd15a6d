"""Command-line dispatcher.

Each sub-command lives in `bench.commands.<name>` and exposes `add_arguments(parser)` and
`execute(args) -> int`. Bad input anywhere raises `UsageError` (or `ModelInputError`), which is
printed as one line on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from bench.errors import UsageError
from models.errors import ModelInputError

COMMANDS = {
    "run": "Run a benchmark profile (efficiency matrix or quality sweep) and write CSVs + reports.",
    "report": "Redraw tables and plots from existing CSVs without measuring.",
    "train": "Train a denoiser on a dataset with the DDPM loss.",
    "check": "Efficiency regression gate against a committed baseline.",
    "breakdown": "Where a denoiser call's time goes: per block, per kind of work, GPU busy vs idle.",
    "profile": "Deprecated: the old name of 'breakdown' (removed in the next release).",
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"bench.commands.{name}")
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_execute=module.execute)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (what a batch scheduler sends) turned into the same clean stop as Ctrl-C: finished
    cells are kept, and `subprocess.run` kills its child (the memory probe) on the way out."""


def _terminate(signum: int, _frame: object) -> None:
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "command", None):
            raise UsageError("no command given: use one of " + ", ".join(COMMANDS) + " (see --help)")
        return int(args._execute(args) or 0)
    except (UsageError, ModelInputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        what = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
        print(f"{what}: finished cells are kept; run the same command again to resume",
              file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
