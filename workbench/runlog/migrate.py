"""One-time, loss-free move of a pre-SQLite run log (``runs.json`` + ``runs/*/metrics.jsonl``) into SQLite.

Runs under the lock file older workbench versions take (``runs.json.lock``), so no old
writer can change the file meanwhile. Every well-formed record is copied with its metric
rows in one transaction and read back and compared before it commits; a malformed record
is kept verbatim in ``wb_quarantine`` with the reason. Only then is ``runs.json`` renamed to
``runs.json.bak`` (never deleted); the metrics files stay where they are.
"""
from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from .errors import RunLogError, RunLogFileError
from .jsonl import read_jsonl
from .records import record_problems
from .store import runs_dir_for
from .store_json import RUNS_TABLE, check_not_truncated, clean_stale_temps, parse_file

if TYPE_CHECKING:
    from .store_sqlite import SQLiteStore

log = logging.getLogger(__name__)


def _backup_name(path: Path) -> Path:
    cand = path.with_name(path.name + ".bak")
    n = 2
    while cand.exists():
        cand = path.with_name(f"{path.name}.bak{n}")
        n += 1
    return cand


def migrate_legacy(store: "SQLiteStore", legacy: Path, timeout: float = 60.0) -> dict[str, Any] | None:
    """Move ``legacy`` (a TinyDB run log) into ``store``; returns the report, None if already gone."""
    lock = FileLock(str(legacy) + ".lock", thread_local=False)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise RunLogError(f"{legacy}: could not lock it for migration within {timeout:.0f} s") from None
    try:
        if not legacy.exists() and not legacy.is_symlink():
            return None  # another process migrated it meanwhile
        if legacy.is_symlink() or not legacy.is_file():
            raise RunLogFileError(f"{legacy}: not a regular file; it was left untouched (not migrated)")
        clean_stale_temps(legacy)
        data = parse_file(legacy, legacy.read_bytes()) or {}
        old_runs = runs_dir_for(legacy, "runs.json")
        if not data:
            check_not_truncated(legacy, old_runs, {r[0] for r in store.query("SELECT id FROM wb_runs")})
        report = _copy(store, legacy, data.get(RUNS_TABLE, {}), old_runs)
        backup = _backup_name(legacy)
        os.replace(legacy, backup)
        report["backup"] = str(backup)
        with store.transaction() as c:
            store.execute(c, "INSERT INTO wb_meta (key, value) VALUES (?, ?)",
                          (f"migrated:{report['at']}:{legacy.name}", json.dumps(report)))
    finally:
        lock.release()
    if report["quarantined"]:
        warnings.warn(f"{legacy}: {report['quarantined']} malformed record(s) were not migrated as runs; they are"
                      f" kept verbatim in {store.path} (RunLog.store.quarantined())", stacklevel=4)
    log.info("migrated %s runs from %s into %s (backup: %s)", report["runs"], legacy, store.path, report["backup"])
    return report


def _copy(store: "SQLiteStore", legacy: Path, docs: dict[str, Any], old_runs: Path) -> dict[str, Any]:
    good: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    bad: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, doc in docs.items():
        problems = record_problems(doc)
        if not problems and doc["id"] in seen:
            problems = [f"duplicate id {doc['id']!r}"]
        if problems:
            bad.append((f"{legacy.name}#{key}: " + "; ".join(problems), json.dumps(doc, allow_nan=True, default=str)))
            continue
        seen.add(doc["id"])
        rec = dict(doc)
        rec["dir"] = str(store.runs_dir / rec["id"])
        good.append((rec, read_jsonl(old_runs / rec["id"] / "metrics.jsonl")))
    where = f"{legacy}: "
    with store.transaction() as c:
        added, same, _ = store.import_into(c, good, where=where)
        for reason, raw in bad:
            store.quarantine(c, str(legacy), reason, raw)
        _verify(store, c, good, where)
    return {"source": str(legacy), "runs": added + same, "added": added, "already_there": same,
            "metric_rows": sum(len(m) for _, m in good), "quarantined": len(bad),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _verify(store: "SQLiteStore", c: Any, good: list[tuple[dict[str, Any], list[dict[str, Any]]]], where: str) -> None:
    """Read every copied record back inside the transaction; any difference aborts the migration."""
    from .records import canonical, loads

    for rec, metrics in good:
        row = store.execute(c, "SELECT record FROM wb_runs WHERE id = ?", (rec["id"],)).fetchone()
        chunks = store.execute(c, "SELECT rows FROM wb_metrics WHERE run_id = ?", (rec["id"],)).fetchall()
        n_rows = sum(len(ch[0].split("\n")) for ch in chunks if ch[0])
        if row is None or canonical(loads(row[0]), []) != canonical(rec, []) or n_rows != len(metrics):
            raise RunLogError(f"{where}migration check failed for run {rec['id']}; nothing was migrated"
                              " and the file was left as it was")
