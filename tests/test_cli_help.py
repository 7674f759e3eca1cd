"""The newcomer path: ``python -m workbench --help`` lists every command with a one-line
description, every command (and sub-action) answers ``--help``, and the README's commands are
ones the CLI accepts.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import COMMAND_MODULES, build_parser

REPO = Path(__file__).resolve().parents[1]


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _commands(parser: argparse.ArgumentParser) -> dict[str, str]:
    """name -> one-line help of each sub-command of ``parser`` (aliases excluded)."""
    sub = _subparsers(parser)
    return {a.dest: a.help for a in sub._choices_actions} if sub else {}


def test_every_cli_module_is_registered():
    """A command module that is not in COMMAND_MODULES would be invisible to users."""
    on_disk = {f"workbench.cli.{p.stem}" for p in (REPO / "workbench" / "cli").glob("*.py")
               if p.stem != "__init__" and not p.stem.startswith("_")}
    assert on_disk <= set(COMMAND_MODULES), f"not listed in COMMAND_MODULES: {on_disk - set(COMMAND_MODULES)}"
    for name in COMMAND_MODULES:
        assert callable(getattr(importlib.import_module(name), "register", None)), f"{name} has no register()"


def test_every_command_has_one_line_help():
    commands = _commands(build_parser())
    assert {"runs", "tour"} <= set(commands), commands
    for name, text in commands.items():
        assert text and text.strip(), f"command {name!r} has no help line"
        assert "\n" not in text, f"command {name!r}: help must be one line, got {text!r}"
        assert len(text) <= 60, f"command {name!r}: help is {len(text)} chars; keep it to one short line"


def test_help_lists_every_command():
    """The real entry point, as a user types it: each command sits on one line with its help."""
    # A plain 80-column terminal: every command and its help must share one line there.
    env = dict(os.environ, COLUMNS="80")
    out = subprocess.run([sys.executable, "-m", "workbench", "--help"], capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    listed = dict(re.findall(r"^ {4}(\S+) {2,}(\S[^\n]*)$", out.stdout, flags=re.M))
    for name, text in _commands(build_parser()).items():
        assert name in listed, f"`python -m workbench --help` does not list {name!r}:\n{out.stdout}"
        assert listed[name].strip() == text, (name, listed[name])


def test_no_arguments_prints_help():
    out = subprocess.run([sys.executable, "-m", "workbench"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 2
    assert "commands" in out.stdout and "tour" in out.stdout


def _all_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    sub = _subparsers(parser)
    if sub:
        for name, child in sub.choices.items():
            yield from _all_parsers(child, path + (name,))


@pytest.mark.parametrize("path", [p for p, _ in _all_parsers(build_parser()) if p],
                         ids=lambda p: " ".join(p))
def test_each_command_answers_help(path, capsys):
    """``python -m workbench CMD [ACTION] --help`` exits 0 and documents every option."""
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*path, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m workbench " + " ".join(path))
    parser = dict(_all_parsers(build_parser()))[path]
    for action in parser._actions:
        if action.option_strings and action.help is not argparse.SUPPRESS:
            assert action.help, f"{' '.join(path)} {action.option_strings[0]} has no help"
    for name, text in _commands(parser).items():
        assert text, f"{' '.join(path)} {name} has no help line"


def test_every_db_option_names_the_default_run_log():
    """Regression: four commands' ``--db`` help still named ``runs.json`` after the SQLite move."""
    seen = 0
    for path, parser in _all_parsers(build_parser()):
        for action in parser._actions:
            if "--db" in action.option_strings:
                seen += 1
                assert "runs.db" in action.help and "runs.json" not in action.help, (path, action.help)
    assert seen >= 5


def _shell_blocks(markdown: str) -> list[str]:
    """The bodies of the fenced code blocks marked bash/sh/shell/console (or unmarked)."""
    blocks, body, lang = [], None, ""
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            if body is None:
                body, lang = [], line.strip()[3:].strip().lower()
            else:
                if lang in ("", "bash", "sh", "shell", "console"):
                    blocks.append("\n".join(body))
                body = None
        elif body is not None:
            body.append(line)
    return blocks


def test_readme_commands_parse():
    """Every ``python -m workbench …`` line in the README's shell blocks is accepted by the CLI
    (``[optional parts]`` dropped, placeholders such as DIR taken as given)."""
    readme = (REPO / "README.md").read_text()
    cmds = []
    for block in _shell_blocks(readme):
        for m in re.finditer(r"python -m workbench ([^\n]*)", block):
            text = re.split(r"\s#|&&|\|", m.group(1))[0]
            cmds.append(re.sub(r"\[[^\]]*\]", " ", text).strip())
    assert any(c.startswith("tour") for c in cmds), "README lost its `python -m workbench tour` line"
    for cmd in cmds:
        try:
            args = build_parser().parse_args(shlex.split(cmd))
        except SystemExit as exc:  # --help in the README is fine; anything else is a typo
            assert exc.code == 0, f"README command does not parse: python -m workbench {cmd}"
            continue
        assert getattr(args, "func", None), f"README command does nothing: python -m workbench {cmd}"


def _readme_cli_table() -> list[str]:
    """The usages in the first column of the README's CLI table (`` `runs list [--db PATH]…` ``)."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## CLI", 1)[1].split("\n## ", 1)[0]
    return [m.group(1) for m in re.finditer(r"^\|\s*`([^`]+)`\s*\|", section, flags=re.M)]


def test_readme_cli_table_lists_every_command():
    """The README's CLI table documents every command ``--help`` lists, and each usage parses."""
    usages = _readme_cli_table()
    documented = {u.split()[0] for u in usages}
    missing = set(_commands(build_parser())) - documented
    assert not missing, f"commands missing from the README's CLI table: {sorted(missing)}"
    for usage in usages:
        argv = shlex.split(re.sub(r"\[[^\]]*\]", " ", usage))
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:
            assert exc.code == 0, f"README CLI table usage does not parse: {usage}"
            continue
        assert getattr(args, "func", None), usage
