"""``python -m workbench``: one sub-command module per job.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
from typing import Sequence

COMMAND_MODULES = [
    "workbench.cli.runs",
    "workbench.cli.tour",
    "workbench.cli.scrape",
    "workbench.cli.train",
    "workbench.cli.resume",
    "workbench.cli.meta",
    "workbench.cli.tune",
]


class _OneLineHelp(argparse.HelpFormatter):
    """Keeps each command's name and help on one line: argparse sizes the help column without
    the extra indent it gives sub-commands, so ``stub-serpapi`` would wrap."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction) and action.choices:
            longest = max(len(name) for name in action.choices)
            self._action_max_length = max(self._action_max_length,
                                          self._current_indent + self._indent_increment + longest)


class _Parser(argparse.ArgumentParser):
    """argparse with "did you mean" for a mistyped command or action (``workbench trian``).

    Python 3.12's ``suggest_on_error`` does this; this package supports 3.10 too. Sub-parsers
    are built with the same class (``add_subparsers`` uses ``type(self)``).
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        m = re.match(r"argument \S+: invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if m:
            choices = re.findall(r"'([^']*)'", m.group(2)) or [c.strip() for c in m.group(2).split(",")]
            close = difflib.get_close_matches(m.group(1), choices, n=2, cutoff=0.5)
            if close:
                message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m workbench",
        description="The meta-learning workbench: scrape → train → record → meta-learn → meta-analyse.",
        formatter_class=_OneLineHelp,
    )
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # clear lines, not a traceback (WORKBENCH_DEBUG=1 shows it)
        if os.environ.get("WORKBENCH_DEBUG"):
            raise
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        # a command's problems (ConfigError.problems) are all shown; other errors by their first line
        for line in lines if len(getattr(exc, "problems", ())) > 1 else lines[:1]:
            print(f"error: {line.strip()}" if line is lines[0] else f"       {line.strip()}", file=sys.stderr)
        return 1
    return int(rc or 0)
