"""SQL storage for the run log, shared by SQLite and PostgreSQL: one row per run, so a write costs O(what changed).

Tables (the same on both, prefixed ``wb_`` so a database can be shared with e.g. Optuna's tables):

- ``wb_runs``: the record as JSON text (Python's dialect: NaN survives) plus indexed columns
  for what queries filter on (id, name, kind, status, created_at), the heartbeat (seconds
  since the epoch, on the database's clock) and the precomputed ``to_frame`` row (its values
  as a strict JSON array, so 100,000 rows parse in one fast ``orjson`` call);
- ``wb_frame_cols``: the column lists of those rows, each stored once;
- ``wb_tags``: (tag, run id), so ``find(tag=…)`` is an index lookup;
- ``wb_metrics``: per-step metric rows, one JSON-lines chunk per flush (a flush is one
  INSERT, a read one index range scan; no torn lines, one place for a team's curves);
- ``wb_quarantine``: malformed records met during a migration, kept verbatim with the reason;
- ``wb_meta``: format marker, schema and frame versions, migration report.
"""
from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from .errors import RunLogError
from .records import ACTIVE, FRAME_VERSION, build_frame, canonical, dumps_record, frame_parts, frame_row, loads
from .store import Filters, Store
from .jsonl import parse_lines

FORMAT_NAME = "workbench-runlog"
SCHEMA_VERSION = 2  # 1 was the TinyDB file
_TOP = "\U0010ffff"  # sorts after every character: [prefix, prefix + _TOP) is a prefix range
#: Connections inherited over fork(): never used nor closed in the child (both SQL backends fill it).
ABANDONED: list[Any] = []


@contextmanager
def _no_gc() -> Iterator[None]:
    """Parsing 100,000 records allocates millions of containers; the cyclic GC would rescan them all."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class SQLStore(Store):
    """The SQL shared by SQLite and PostgreSQL; subclasses provide connections and dialect."""

    PH = "?"
    FOR_UPDATE = ""
    NOW = ""  # SQL expression: seconds since the epoch on the database's clock
    display = ""

    def dialect(self, sql: str) -> str:
        """``sql`` written with ``?`` placeholders, in this database's placeholder style."""
        return sql if self.PH == "?" else sql.replace("?", self.PH)

    # -- provided by subclasses (public: the migration writes through them too) ------
    def transaction(self, durable: bool = True) -> Any:
        """Context manager yielding a connection inside a write transaction.

        ``durable=False`` (metric chunks, heartbeats): committed for every other process and
        safe from SIGKILL, but not waited onto the disk; a record write that follows syncs them.
        """
        raise NotImplementedError

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of one read-only statement (``?`` placeholders), outside any write transaction."""
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------
    def execute(self, c: Any, sql: str, params: tuple = ()) -> Any:
        """Run one statement (``?`` placeholders) on ``c``, a connection from :meth:`transaction`."""
        return c.execute(self.dialect(sql), params)

    def _many(self, c: Any, sql: str, rows: list[tuple]) -> None:
        if rows:
            c.cursor().executemany(self.dialect(sql), rows)

    def _put(self, c: Any, rec: dict[str, Any], *, new: bool, old_tags: list[str] | None = None,
             heartbeat: bool = True) -> None:
        key, names, values = frame_parts(rec)
        self.execute(c, "INSERT INTO wb_frame_cols (key, cols) VALUES (?, ?) ON CONFLICT DO NOTHING", (key, names))
        cols = (rec["name"], rec["kind"], rec["status"], rec["created_at"], dumps_record(rec), key, values)
        if new:
            hb = self.NOW if heartbeat else "NULL"
            self.execute(c, "INSERT INTO wb_runs (id, name, kind, status, created_at, record, frame_cols, frame,"
                            f" heartbeat) VALUES (?, ?, ?, ?, ?, ?, ?, ?, {hb})", (rec["id"], *cols))
        else:  # writing an active run is a sign of life: its heartbeat moves too
            hb = f", heartbeat = {self.NOW}" if rec["status"] in ACTIVE else ""
            self.execute(c, "UPDATE wb_runs SET name = ?, kind = ?, status = ?, created_at = ?, record = ?,"
                            f" frame_cols = ?, frame = ?{hb} WHERE id = ?", (*cols, rec["id"]))
        tags = sorted(set(rec.get("tags") or []))
        if new or tags != sorted(set(old_tags or [])):
            if not new:
                self.execute(c, "DELETE FROM wb_tags WHERE run_id = ?", (rec["id"],))
            self._many(c, "INSERT INTO wb_tags (tag, run_id) VALUES (?, ?)", [(t, rec["id"]) for t in tags])

    def _where(self, filters: Filters) -> tuple[str, tuple]:
        name, kind, statuses, tag = filters
        sql, params = [], []
        if name is not None:
            sql.append("name = ?"), params.append(name)
        if kind is not None:
            sql.append("kind = ?"), params.append(kind)
        if statuses is not None:
            if not statuses:
                return " WHERE 1 = 0", ()
            sql.append(f"status IN ({', '.join('?' * len(statuses))})"), params.extend(statuses)
        if tag is not None:
            sql.append("id IN (SELECT run_id FROM wb_tags WHERE tag = ?)"), params.append(tag)
        return (" WHERE " + " AND ".join(sql) if sql else ""), tuple(params)

    # -- Store API --------------------------------------------------------------------
    def insert(self, rec: dict[str, Any]) -> None:
        with self.transaction() as c:
            if self.execute(c, "SELECT 1 FROM wb_runs WHERE id = ?", (rec["id"],)).fetchone():
                raise RunLogError(f"a run with id {rec['id']!r} already exists in {self.display}")
            self._put(c, rec, new=True)

    def get(self, run_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT record FROM wb_runs WHERE id = ?", (run_id,))
        return loads(rows[0][0]) if rows else None

    def modify(self, run_id: str, fn: Callable[[dict[str, Any]], dict[str, Any]],
               metrics: list[str] | None = None) -> dict[str, Any]:
        with self.transaction() as c:
            row = self.execute(c, "SELECT record FROM wb_runs WHERE id = ?" + self.FOR_UPDATE, (run_id,)).fetchone()
            if row is None:
                raise RunLogError(f"no run with id {run_id!r} in {self.display}")
            old = loads(row[0])
            new = fn(dict(old))
            if metrics:
                self.execute(c, "INSERT INTO wb_metrics (run_id, rows) VALUES (?, ?)", (run_id, "\n".join(metrics)))
            self._put(c, new, new=False, old_tags=old.get("tags"))
        return new

    def delete(self, run_id: str) -> None:
        with self.transaction() as c:
            for table, col in (("wb_metrics", "run_id"), ("wb_tags", "run_id"), ("wb_runs", "id")):
                self.execute(c, f"DELETE FROM {table} WHERE {col} = ?", (run_id,))

    def match_prefix(self, prefix: str, limit: int = 6) -> list[str]:
        rows = self.query(f"SELECT id FROM wb_runs WHERE id >= ? AND id < ? ORDER BY id LIMIT {int(limit)}",
                          (prefix, prefix + _TOP))
        return [r[0] for r in rows]

    def latest_named(self, name: str) -> str | None:
        rows = self.query("SELECT id FROM wb_runs WHERE name = ? ORDER BY created_at DESC, id DESC LIMIT 1", (name,))
        return rows[0][0] if rows else None

    def select(self, filters: Filters) -> list[dict[str, Any]]:
        where, params = self._where(filters)
        with _no_gc():
            rows = self.query(f"SELECT record FROM wb_runs{where} ORDER BY created_at, id", params)
            return [loads(r[0]) for r in rows]

    def frame(self, filters: Filters):
        where, params = self._where(filters)
        with _no_gc():
            rows = self.query(f"SELECT frame_cols, frame FROM wb_runs{where} ORDER BY created_at, id", params)
            try:
                return build_frame(rows, dict(self.query("SELECT key, cols FROM wb_frame_cols")))
            except (ValueError, KeyError, AssertionError):  # a row edited behind our back: rebuild from the records
                import pandas as pd

                return pd.DataFrame([frame_row(r) for r in self.select(filters)])

    def count(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM wb_runs")[0][0])

    def active(self) -> list[tuple[dict[str, Any], float | None]]:
        marks = ", ".join("?" * len(ACTIVE))
        rows = self.query(f"SELECT record, {self.NOW} - heartbeat FROM wb_runs WHERE status IN ({marks})", ACTIVE)
        return [(loads(r[0]), None if r[1] is None else float(r[1])) for r in rows]

    def beat(self, run_id: str, at: float | None = None) -> None:
        with self.transaction(durable=False) as c:
            if at is None:
                self.execute(c, f"UPDATE wb_runs SET heartbeat = {self.NOW} WHERE id = ?", (run_id,))
            else:
                self.execute(c, "UPDATE wb_runs SET heartbeat = ? WHERE id = ?", (float(at), run_id))

    def metrics_writer(self, run_id: str) -> "_SQLMetrics":
        return _SQLMetrics(self, run_id)

    def append_metrics(self, run_id: str, lines: list[str]) -> None:
        """Store one chunk of metric lines (one INSERT)."""
        if lines:
            with self.transaction(durable=False) as c:
                self.execute(c, "INSERT INTO wb_metrics (run_id, rows) VALUES (?, ?)", (run_id, "\n".join(lines)))

    def read_metrics(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.query("SELECT rows FROM wb_metrics WHERE run_id = ? ORDER BY seq", (run_id,))
        if not rows:
            return []
        text = "\n".join(r[0] for r in rows if r[0])
        try:
            out = loads("[" + text.replace("\n", ",") + "]")
            if all(isinstance(r, dict) for r in out):
                return out
        except (ValueError, RecursionError):
            pass
        return parse_lines(text.encode("utf-8", "replace"), torn_tail=False)  # tampered rows: skip the bad ones

    def import_runs(self, items: Iterable[tuple[dict[str, Any], list[dict[str, Any]]]], *,
                    overwrite: bool = False, where: str = "") -> tuple[int, int, int]:
        with self.transaction() as c:
            return self.import_into(c, items, overwrite=overwrite, where=where)

    def import_into(self, c: Any, items: Iterable[tuple[dict[str, Any], list[dict[str, Any]]]], *,
                    overwrite: bool = False, where: str = "") -> tuple[int, int, int]:
        """:meth:`import_runs` inside the caller's write transaction ``c``."""
        added = same = replaced = 0
        for rec, metrics in items:
            row = self.execute(c, "SELECT record FROM wb_runs WHERE id = ?", (rec["id"],)).fetchone()
            if row is not None:
                old = loads(row[0])
                mine = [r[0] for r in self.execute(c, "SELECT rows FROM wb_metrics WHERE run_id = ? ORDER BY seq",
                                                   (rec["id"],)).fetchall()]
                old_metrics = parse_lines("\n".join(mine).encode() + b"\n") if mine else []
                if canonical(old, old_metrics) == canonical(rec, metrics):
                    same += 1
                    continue
                if not overwrite:
                    raise RunLogError(f"{where}run {rec['id']} ({rec.get('name')}) already exists in"
                                      f" {self.display} with different content; nothing was imported"
                                      " (overwrite=True / --overwrite replaces it)")
                for table, col in (("wb_metrics", "run_id"), ("wb_tags", "run_id"), ("wb_runs", "id")):
                    self.execute(c, f"DELETE FROM {table} WHERE {col} = ?", (rec["id"],))
                replaced += 1
            else:
                added += 1
            self._put(c, rec, new=True, heartbeat=False)
            if metrics:
                self.execute(c, "INSERT INTO wb_metrics (run_id, rows) VALUES (?, ?)",
                             (rec["id"], "\n".join(dumps_record(m) for m in metrics)))
        return added, same, replaced

    def quarantine(self, c: Any, source: str, reason: str, raw: str) -> None:
        """Keep a malformed record verbatim (inside the caller's write transaction)."""
        self.execute(c, "INSERT INTO wb_quarantine (source, reason, raw, at) VALUES (?, ?, ?, ?)",
                     (source, reason, raw, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))

    def quarantined(self) -> list[dict[str, Any]]:
        """Malformed records kept by a migration: source, reason, raw JSON."""
        rows = self.query("SELECT source, reason, raw, at FROM wb_quarantine ORDER BY seq")
        return [{"source": s, "reason": r, "raw": raw, "at": at} for s, r, raw, at in rows]

    def meta(self) -> dict[str, str]:
        return {k: v for k, v in self.query("SELECT key, value FROM wb_meta")}

    def refresh_frames(self) -> None:
        """Recompute every stored ``to_frame`` row (after :data:`FRAME_VERSION` changed)."""
        with self.transaction() as c:
            for rid, text in self.execute(c, "SELECT id, record FROM wb_runs").fetchall():
                key, names, values = frame_parts(loads(text))
                self.execute(c, "INSERT INTO wb_frame_cols (key, cols) VALUES (?, ?) ON CONFLICT DO NOTHING",
                             (key, names))
                self.execute(c, "UPDATE wb_runs SET frame_cols = ?, frame = ? WHERE id = ?", (key, values, rid))
            self.execute(c, "UPDATE wb_meta SET value = ? WHERE key = 'frame_version'", (str(FRAME_VERSION),))


class _SQLMetrics:
    """A live run's metric lines, one chunk per flush."""

    def __init__(self, store: SQLStore, run_id: str) -> None:
        self.store, self.run_id = store, run_id

    def append(self, lines: list[str]) -> None:
        self.store.append_metrics(self.run_id, lines)

    def sync(self) -> None:  # each chunk is a committed transaction already
        pass

    def close(self) -> None:
        pass


