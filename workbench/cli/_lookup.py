"""Naming runs on the command line, and reading the run log without creating it.

Shared by ``runs``, ``runs compare`` and ``test``: a run is named by its id, a unique id prefix
(the timestamp) or suffix (the random tail), or its name; an ambiguous reference is an error
listing the candidates.
"""
from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Any, Iterable

from ..runlog import RunLog
from ..runlog.records import check_run_id


def _stored_at(loc: str) -> list[Path]:
    """The files a run-log location may be stored in (empty for a database server URL)."""
    if loc.startswith(("postgresql:", "postgres:")):
        return []
    if loc.startswith("tinydb:"):
        return [Path(loc.split(":", 1)[1]).expanduser()]
    if loc.startswith("sqlite:"):
        loc = loc.split(":", 1)[1]
        loc = loc[2:] if loc.startswith("///") else loc
    path = Path(loc).expanduser()
    # RunLog("x/runs.json") opens (or migrates to) x/runs.db, and x/runs.db migrates x/runs.json
    return [path, path.with_suffix(".db") if path.suffix == ".json" else path.with_suffix(".json")]


def open_log(db: str | None, *, must_exist: bool = True, ref: str | None = None) -> RunLog | None:
    """The run log to *read*: ``None`` (or an error, with ``must_exist``) when there is none yet.

    ``RunLog(path)`` creates its folder and file; a read must not, so a missing one is said
    instead (``runs list --db /tmp/nope/runs.db`` used to create ``/tmp/nope``). ``ref``: the
    run the caller looks for, named in the error.
    """
    from .. import paths

    loc = os.fspath(db) if db else os.fspath(paths.runlog_location())
    files = _stored_at(loc)
    if not files or any(f.exists() for f in files):
        return RunLog(loc)
    if must_exist:
        where = f"no run log at {loc} yet" + ("" if files[0].parent.is_dir() else f" (no folder {files[0].parent})")
        raise LookupError(f"no run with id or name {ref!r}: {where}" if ref else where)
    return None


def describe(rec: dict) -> str:
    return (f"{rec['id']}  {str(rec.get('name', ''))[:40]}  {rec.get('status', '')}  "
            f"{str(rec.get('created_at', ''))[:19].replace('T', ' ')}")


def ambiguous(what: str, recs: list[dict]) -> LookupError:
    """An error naming every candidate (newest first) and how to pick one."""
    recs = sorted(recs, key=lambda r: r.get("created_at", ""), reverse=True)
    lines = [f"{what} matches {len(recs)} runs; give one of these ids (or a longer part of one):"]
    lines += [f"  {describe(r)}" for r in recs[:10]]
    if len(recs) > 10:
        lines.append(f"  … and {len(recs) - 10} more (python -m workbench runs list)")
    err = LookupError("\n".join(lines))
    err.problems = lines  # type: ignore[attr-defined]  # the CLI prints every line
    return err


def resolve(log: RunLog, ref: str) -> str:
    """The id of the run ``ref`` names: an id, a unique id prefix, a unique id suffix, or a name.

    A name or id part that matches several runs is an error listing them (a duplicate name no
    longer silently picks the newest); a name that matches nothing suggests close ones.
    """
    recs = log.runs()
    if any(r["id"] == ref for r in recs):
        return check_run_id(ref)
    for how, hits in (("id prefix", [r for r in recs if r["id"].startswith(ref)]),
                      ("id suffix", [r for r in recs if r["id"].endswith(ref)])):
        if len(hits) == 1:
            return check_run_id(hits[0]["id"])
        if len(hits) > 1:
            raise ambiguous(f"{how} {ref!r}", hits)
    named = [r for r in recs if r.get("name") == ref]
    if len(named) == 1:
        return check_run_id(named[0]["id"])  # a tampered row's id never reaches a path
    if len(named) > 1:
        raise ambiguous(f"name {ref!r}", named)
    close = difflib.get_close_matches(ref, sorted({str(r.get("name", "")) for r in recs}), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise LookupError(f"no run with id or name {ref!r} in {log.path}{hint}")


def check_choice(value: str | None, allowed: Iterable[str], option: str) -> None:
    """An unknown ``--status`` / ``--kind`` is an error naming the allowed values and a close match."""
    allowed = sorted(set(allowed))
    if value is None or value in allowed:
        return
    close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"{option} {value!r} is not one of {', '.join(allowed)}{hint}")


def confirm(question: str) -> bool:
    """Ask y/N on the terminal (stdin); end of input counts as no."""
    print(question + " [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        return False
    return answer.strip().lower() in ("y", "yes")


def resolve_all(log: RunLog, refs: Iterable[str]) -> list[str]:
    """:func:`resolve` for each reference (``runs compare``)."""
    return [resolve(log, r) for r in refs]


def record_label(rec: dict[str, Any]) -> str:
    """How a run is named in tables: its name, or its id when it has none."""
    return str(rec.get("name") or rec["id"])
