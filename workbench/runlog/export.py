"""Moving runs between run logs: JSON lines, one ``RunLog.get(id)`` record per line (gzip for ``.gz``).

The same format ships meta-datasets of past runs (``workbench/meta/data/``). Import is
idempotent by run id, refuses a malformed line by its number before anything is written,
and never replaces a stored run that differs unless asked (``overwrite``).
"""
from __future__ import annotations

import gzip
import json
import os
import stat
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterable, Iterator

from .. import paths
from .errors import RunLogError
from .records import dumps_record, record_problems

if TYPE_CHECKING:
    from .log import RunLog


def _open(path: Path, mode: str, gz: bool | None = None) -> IO[bytes]:
    if path.name.endswith(".gz") if gz is None else gz:
        return gzip.open(path, mode)  # type: ignore[return-value]
    return open(path, mode)


def export_runs(log: "RunLog", path: str | os.PathLike, runs: Iterable[str] | None = None) -> int:
    """Write ``runs`` (ids, prefixes or names; default all) to ``path``; returns how many.

    Written to a temp file next to ``path`` and renamed over it: a reader never sees half an export.
    """
    path = Path(path)
    if runs is None:
        recs: Iterable[dict[str, Any]] = log.runs()
    else:
        recs = [log.get(r, metrics=False) for r in runs]
    n = 0
    with paths.replacing(path) as tmp:  # a fresh mkstemp name, renamed over ``path`` or removed
        with _open(tmp, "wb", gz=path.name.endswith(".gz")) as fh:
            for rec in recs:
                rec = dict(rec)
                rec["dir"] = str(log.run_dir(rec["id"]))
                rec["metrics"] = log.read_metrics(rec["id"])
                fh.write(dumps_record(rec).encode("utf-8") + b"\n")
                n += 1
    return n


#: The longest line an import reads (one run with its metrics; a 1M-step run is ~100 MB): a file
#: with no newline (``/dev/zero``) or one giant line is refused, not read into memory whole.
MAX_LINE_BYTES = 128 * 2**20


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or a device never ends
            raise RunLogError(f"{path}: not a regular file; an export file is one (nothing was imported)")
        fh = _open(path, "rb")
    except OSError as exc:
        raise RunLogError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    with fh:
        try:
            lineno = 0
            while raw := fh.readline(MAX_LINE_BYTES + 1):
                lineno += 1
                if len(raw) > MAX_LINE_BYTES:
                    raise RunLogError(f"{path}:{lineno}: a line longer than {MAX_LINE_BYTES // 2**20} MiB;"
                                      " nothing was imported")
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                    raise RunLogError(f"{path}:{lineno}: not a JSON record ({type(exc).__name__}: {exc});"
                                      " nothing was imported") from None
                yield lineno, obj
        except (OSError, EOFError) as exc:  # a truncated or non-gzip .gz file
            raise RunLogError(f"{path}: cannot read it ({exc}); nothing was imported") from None


def check_export_file(path: str | os.PathLike) -> int:
    """Validate every line of an export file; returns the number of runs. Raises naming the first bad line."""
    path = Path(path)
    seen: dict[str, int] = {}
    for lineno, obj in _lines(path):
        problems = record_problems(obj)
        if problems:
            raise RunLogError(f"{path}:{lineno}: not a run record ({'; '.join(problems)}); nothing was imported")
        if obj["id"] in seen:
            raise RunLogError(f"{path}:{lineno}: run {obj['id']} appears twice (first on line {seen[obj['id']]});"
                              " nothing was imported")
        seen[obj["id"]] = lineno
    return len(seen)


def import_runs(log: "RunLog", path: str | os.PathLike, *, overwrite: bool = False) -> dict[str, int]:
    """Add the runs in ``path`` to ``log`` in one transaction; see the module docstring."""
    path = Path(path)
    check_export_file(path)  # pass 1: every line is checked before anything is written

    def items() -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        for _, rec in _lines(path):  # pass 2: stream, so a 100,000-run file never sits in memory twice
            metrics = rec.pop("metrics", None) or []
            rec["dir"] = str(log.run_dir(rec["id"]))
            yield rec, metrics

    added, same, replaced = log.store.import_runs(items(), overwrite=overwrite, where=f"{path}: ")
    return {"added": added, "unchanged": same, "replaced": replaced}
