"""SQL storage for the run log: one row per run, so a write costs O(what changed).

Tables (the same on SQLite and PostgreSQL, prefixed ``wb_`` so a database can be shared
with e.g. Optuna's tables):

- ``wb_runs``: the record as JSON text (Python's dialect: NaN survives) plus indexed columns
  for what queries filter on (id, name, kind, status, created_at), the heartbeat (seconds
  since the epoch, on the database's clock) and the precomputed ``to_frame`` row (strict
  JSON, so 100,000 rows parse in one fast ``orjson`` call);
- ``wb_tags``: (tag, run id), so ``find(tag=…)`` is an index lookup;
- ``wb_metrics``: per-step metric rows, one JSON-lines chunk per flush (a flush is one
  INSERT, a read one index range scan; no torn lines, one place for a team's curves);
- ``wb_quarantine``: malformed records met during a migration, kept verbatim with the reason;
- ``wb_meta``: format marker, schema and frame versions, migration report.

:class:`SQLiteStore` is the zero-setup default: WAL (readers never block the writer),
``BEGIN IMMEDIATE`` for every read-modify-write (so concurrent processes lose no update),
``synchronous=FULL`` when ``fsync`` (a commit survives power loss).
"""
from __future__ import annotations

import gc
import json
import os
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote

from .errors import RunLogError, RunLogFileError
from .records import ACTIVE, FRAME_VERSION, dumps_record, frame_json, loads
from .store import Filters, Store, runs_dir_for
from .jsonl import parse_lines

FORMAT_NAME = "workbench-runlog"
SCHEMA_VERSION = 2  # 1 was the TinyDB file
SQLITE_HEADER = b"SQLite format 3\x00"
_TOP = "\U0010ffff"  # sorts after every character: [prefix, prefix + _TOP) is a prefix range
_ABANDONED: list[Any] = []  # connections inherited over fork(): never used nor closed in the child


def _canonical(rec: dict[str, Any], metrics: list[dict[str, Any]]) -> str:
    body = {k: v for k, v in rec.items() if k not in ("dir", "metrics")}
    return json.dumps([body, metrics], sort_keys=True, allow_nan=True, default=str)


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

    def _q(self, sql: str) -> str:
        return sql if self.PH == "?" else sql.replace("?", self.PH)

    # -- provided by subclasses -----------------------------------------------------
    def _write(self, durable: bool = True) -> Any:
        """Context manager yielding a connection inside a write transaction.

        ``durable=False`` (metric chunks, heartbeats): committed for every other process and
        safe from SIGKILL, but not waited onto the disk; a record write that follows syncs them.
        """
        raise NotImplementedError

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------
    def _exec(self, c: Any, sql: str, params: tuple = ()) -> Any:
        return c.execute(self._q(sql), params)

    def _many(self, c: Any, sql: str, rows: list[tuple]) -> None:
        if rows:
            c.cursor().executemany(self._q(sql), rows)

    def _put(self, c: Any, rec: dict[str, Any], *, new: bool, old_tags: list[str] | None = None,
             heartbeat: bool = True) -> None:
        cols = (rec["name"], rec["kind"], rec["status"], rec["created_at"], dumps_record(rec), frame_json(rec))
        if new:
            hb = self.NOW if heartbeat else "NULL"
            self._exec(c, "INSERT INTO wb_runs (id, name, kind, status, created_at, record, frame, heartbeat)"
                          f" VALUES (?, ?, ?, ?, ?, ?, ?, {hb})", (rec["id"], *cols))
        else:  # writing an active run is a sign of life: its heartbeat moves too
            hb = f", heartbeat = {self.NOW}" if rec["status"] in ACTIVE else ""
            self._exec(c, "UPDATE wb_runs SET name = ?, kind = ?, status = ?, created_at = ?, record = ?, frame = ?"
                          f"{hb} WHERE id = ?", (*cols, rec["id"]))
        tags = sorted(set(rec.get("tags") or []))
        if new or tags != sorted(set(old_tags or [])):
            if not new:
                self._exec(c, "DELETE FROM wb_tags WHERE run_id = ?", (rec["id"],))
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
        with self._write() as c:
            if self._exec(c, "SELECT 1 FROM wb_runs WHERE id = ?", (rec["id"],)).fetchone():
                raise RunLogError(f"a run with id {rec['id']!r} already exists in {self.display}")
            self._put(c, rec, new=True)

    def get(self, run_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT record FROM wb_runs WHERE id = ?", (run_id,))
        return loads(rows[0][0]) if rows else None

    def modify(self, run_id: str, fn: Callable[[dict[str, Any]], dict[str, Any]],
               metrics: list[str] | None = None) -> dict[str, Any]:
        with self._write() as c:
            row = self._exec(c, "SELECT record FROM wb_runs WHERE id = ?" + self.FOR_UPDATE, (run_id,)).fetchone()
            if row is None:
                raise RunLogError(f"no run with id {run_id!r} in {self.display}")
            old = loads(row[0])
            new = fn(dict(old))
            if metrics:
                self._exec(c, "INSERT INTO wb_metrics (run_id, rows) VALUES (?, ?)", (run_id, "\n".join(metrics)))
            self._put(c, new, new=False, old_tags=old.get("tags"))
        return new

    def delete(self, run_id: str) -> None:
        with self._write() as c:
            for table, col in (("wb_metrics", "run_id"), ("wb_tags", "run_id"), ("wb_runs", "id")):
                self._exec(c, f"DELETE FROM {table} WHERE {col} = ?", (run_id,))

    def match_prefix(self, prefix: str, limit: int = 6) -> list[str]:
        rows = self._read(f"SELECT id FROM wb_runs WHERE id >= ? AND id < ? ORDER BY id LIMIT {int(limit)}",
                          (prefix, prefix + _TOP))
        return [r[0] for r in rows]

    def latest_named(self, name: str) -> str | None:
        rows = self._read("SELECT id FROM wb_runs WHERE name = ? ORDER BY created_at DESC, id DESC LIMIT 1", (name,))
        return rows[0][0] if rows else None

    def select(self, filters: Filters) -> list[dict[str, Any]]:
        where, params = self._where(filters)
        with _no_gc():
            rows = self._read(f"SELECT record FROM wb_runs{where} ORDER BY created_at, id", params)
            return [loads(r[0]) for r in rows]

    def frames(self, filters: Filters) -> list[dict[str, Any]]:
        where, params = self._where(filters)
        with _no_gc():
            rows = self._read(f"SELECT frame FROM wb_runs{where} ORDER BY created_at, id", params)
            return loads("[" + ",".join(r[0] for r in rows) + "]")

    def count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM wb_runs")[0][0])

    def active(self) -> list[tuple[dict[str, Any], float | None]]:
        marks = ", ".join("?" * len(ACTIVE))
        rows = self._read(f"SELECT record, {self.NOW} - heartbeat FROM wb_runs WHERE status IN ({marks})", ACTIVE)
        return [(loads(r[0]), None if r[1] is None else float(r[1])) for r in rows]

    def beat(self, run_id: str, at: float | None = None) -> None:
        with self._write(durable=False) as c:
            if at is None:
                self._exec(c, f"UPDATE wb_runs SET heartbeat = {self.NOW} WHERE id = ?", (run_id,))
            else:
                self._exec(c, "UPDATE wb_runs SET heartbeat = ? WHERE id = ?", (float(at), run_id))

    def metrics_writer(self, run_id: str) -> "_SQLMetrics":
        return _SQLMetrics(self, run_id)

    def append_metrics(self, run_id: str, lines: list[str]) -> None:
        """Store one chunk of metric lines (one INSERT)."""
        if lines:
            with self._write(durable=False) as c:
                self._exec(c, "INSERT INTO wb_metrics (run_id, rows) VALUES (?, ?)", (run_id, "\n".join(lines)))

    def read_metrics(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._read("SELECT rows FROM wb_metrics WHERE run_id = ? ORDER BY seq", (run_id,))
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
        with self._write() as c:
            return self.import_into(c, items, overwrite=overwrite, where=where)

    def import_into(self, c: Any, items: Iterable[tuple[dict[str, Any], list[dict[str, Any]]]], *,
                    overwrite: bool = False, where: str = "") -> tuple[int, int, int]:
        """:meth:`import_runs` inside the caller's write transaction ``c``."""
        added = same = replaced = 0
        for rec, metrics in items:
            row = self._exec(c, "SELECT record FROM wb_runs WHERE id = ?", (rec["id"],)).fetchone()
            if row is not None:
                old = loads(row[0])
                mine = [r[0] for r in self._exec(c, "SELECT rows FROM wb_metrics WHERE run_id = ? ORDER BY seq",
                                                 (rec["id"],)).fetchall()]
                old_metrics = parse_lines("\n".join(mine).encode() + b"\n") if mine else []
                if _canonical(old, old_metrics) == _canonical(rec, metrics):
                    same += 1
                    continue
                if not overwrite:
                    raise RunLogError(f"{where}run {rec['id']} ({rec.get('name')}) already exists in"
                                      f" {self.display} with different content; nothing was imported"
                                      " (overwrite=True / --overwrite replaces it)")
                for table, col in (("wb_metrics", "run_id"), ("wb_tags", "run_id"), ("wb_runs", "id")):
                    self._exec(c, f"DELETE FROM {table} WHERE {col} = ?", (rec["id"],))
                replaced += 1
            else:
                added += 1
            self._put(c, rec, new=True, heartbeat=False)
            if metrics:
                self._exec(c, "INSERT INTO wb_metrics (run_id, rows) VALUES (?, ?)",
                           (rec["id"], "\n".join(dumps_record(m) for m in metrics)))
        return added, same, replaced

    def quarantine(self, c: Any, source: str, reason: str, raw: str) -> None:
        """Keep a malformed record verbatim (inside the caller's write transaction)."""
        self._exec(c, "INSERT INTO wb_quarantine (source, reason, raw, at) VALUES (?, ?, ?, ?)",
                   (source, reason, raw, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))

    def quarantined(self) -> list[dict[str, Any]]:
        """Malformed records kept by a migration: source, reason, raw JSON."""
        rows = self._read("SELECT source, reason, raw, at FROM wb_quarantine ORDER BY seq")
        return [{"source": s, "reason": r, "raw": raw, "at": at} for s, r, raw, at in rows]

    def meta(self) -> dict[str, str]:
        return {k: v for k, v in self._read("SELECT key, value FROM wb_meta")}

    def _refresh_frames(self) -> None:
        """Recompute every stored ``to_frame`` row (after :data:`FRAME_VERSION` changed)."""
        with self._write() as c:
            rows = self._exec(c, "SELECT id, record FROM wb_runs").fetchall()
            self._many(c, "UPDATE wb_runs SET frame = ? WHERE id = ?", [(frame_json(loads(r)), i) for i, r in rows])
            self._exec(c, "UPDATE wb_meta SET value = ? WHERE key = 'frame_version'", (str(FRAME_VERSION),))


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


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS wb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS wb_runs (id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL,
    status TEXT NOT NULL, created_at TEXT NOT NULL, heartbeat REAL, record TEXT NOT NULL, frame TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS wb_runs_created ON wb_runs (created_at, id);
CREATE INDEX IF NOT EXISTS wb_runs_kind ON wb_runs (kind, status, created_at);
CREATE INDEX IF NOT EXISTS wb_runs_status ON wb_runs (status, created_at);
CREATE INDEX IF NOT EXISTS wb_runs_name ON wb_runs (name, created_at);
CREATE TABLE IF NOT EXISTS wb_tags (tag TEXT NOT NULL, run_id TEXT NOT NULL, PRIMARY KEY (tag, run_id));
CREATE INDEX IF NOT EXISTS wb_tags_run ON wb_tags (run_id);
CREATE TABLE IF NOT EXISTS wb_metrics (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, rows TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS wb_metrics_run ON wb_metrics (run_id, seq);
CREATE TABLE IF NOT EXISTS wb_quarantine (seq INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,
    reason TEXT NOT NULL, raw TEXT NOT NULL, at TEXT NOT NULL);
"""


@contextmanager
def _transaction(c: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception, Ctrl-C included.

    A KeyboardInterrupt can land between two statements; a transaction it left open is rolled
    back before the next one begins (else: "cannot start a transaction within a transaction").
    """
    if c.in_transaction:
        c.execute("ROLLBACK")
    c.execute("BEGIN IMMEDIATE")
    done = False
    try:
        yield
        c.execute("COMMIT")
        done = True
    finally:
        if not done and c.in_transaction:
            try:
                c.execute("ROLLBACK")
            except sqlite3.Error:
                pass


def _sqlite_fd(path: Path) -> int | None:
    """A descriptor of ``path`` this process already holds (SQLite's), found through /proc."""
    target = os.path.realpath(path)
    fd = _FD_CACHE.get(target)
    if fd is not None:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                return fd
        except OSError:
            pass
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for name in fds:
        try:
            if os.readlink(f"/proc/self/fd/{name}") == target:
                _FD_CACHE[target] = int(name)
                return int(name)
        except OSError:
            continue
    return None


_FD_CACHE: dict[str, int] = {}


def read_header(path: Path) -> bytes | None:
    """The file's first 16 bytes, without ever closing a descriptor of it.

    Closing *any* descriptor of a file drops every POSIX lock this process holds on it,
    SQLite's included. Another process then believes it holds the last connection, checkpoints
    and deletes the WAL, and this process's next commits go to the deleted file (seen here: a
    live writer's metrics and status changes vanished). So while SQLite may have the file open,
    read through SQLite's own descriptor (``pread`` leaves locks alone); open our own only when
    this process has none. Returns None where neither is possible (no /proc).
    """
    fd = _sqlite_fd(path)
    if fd is not None:
        return os.pread(fd, 16, 0)
    if not os.path.isdir("/proc/self/fd"):
        return None
    with open(path, "rb") as fh:
        return fh.read(16)


def _file_is_ours(path: Path, ino: int | None) -> bool:
    try:
        st = os.stat(path)
        head = read_header(path)
    except OSError:
        return False
    return (ino is None or st.st_ino == ino) and head in (SQLITE_HEADER, None)


def _disarm(path: Path) -> None:
    """Point this process's descriptors of ``path`` at a read-only /dev/null.

    SQLite checkpoints its WAL into the database file when the last connection closes. Once
    the file was overwritten by something else, that checkpoint would overwrite it again; with
    the descriptors disarmed the write fails and the foreign content stays as it is.
    """
    target = os.path.realpath(path)
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        for fd in fds:
            try:
                link = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if link == target or link == target + " (deleted)":
                os.dup2(null, int(fd))
    finally:
        os.close(null)


def _close_all(conns: list[sqlite3.Connection], path: Path, ino: list[int | None]) -> None:
    if conns and not _file_is_ours(path, ino[0]):
        _disarm(path)
    while conns:
        try:
            conns.pop().close()
        except sqlite3.Error:
            pass


class SQLiteStore(SQLStore):
    """The embedded default: one SQLite file (WAL) next to the per-run folders."""

    NOW = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path, *, fsync: bool = True, legacy: Path | None = None) -> None:
        self.path = Path(os.path.abspath(path))
        self.location = self.path
        self.display = str(self.path)
        self.fsync = fsync
        self.runs_dir = runs_dir_for(self.path, "runs.db")
        self._pid = os.getpid()
        self._ino: list[int | None] = [None]
        self._conns: list[sqlite3.Connection] = []
        self._finalizer = weakref.finalize(self, _close_all, self._conns, self.path, self._ino)
        self._wlock, self._rlock = threading.RLock(), threading.RLock()
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        self._sync = "NORMAL"
        self._legacy = legacy
        legacy_pending = legacy is not None and (legacy.exists() or legacy.is_symlink())
        self._preflight(legacy_pending)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.read_only = self.path.exists() and not (os.access(self.path, os.W_OK)
                                                     and os.access(self.path.parent, os.W_OK))
        with self._errors():
            if not self._check_schema() and not self.read_only:
                self._init_schema()
            self._ino[0] = os.stat(self.path).st_ino
        if legacy_pending and not self.read_only:
            from .migrate import migrate_legacy

            migrate_legacy(self, legacy)
        if not self.read_only and self.meta().get("frame_version") != str(FRAME_VERSION):
            self._refresh_frames()

    # -- opening ---------------------------------------------------------------------
    def _preflight(self, legacy_pending: bool) -> None:
        if not self.path.exists():
            if legacy_pending and self._legacy.is_file():  # refuse a bad old log before creating the new one
                from .store_json import check_not_truncated, parse_file

                if parse_file(self._legacy, self._legacy.read_bytes()) is None:
                    check_not_truncated(self._legacy, runs_dir_for(self._legacy, "runs.json"))
            return
        if self.path.is_dir():
            raise RunLogFileError(f"{self.path}: is a folder, not a run-log file")
        if self.path.stat().st_size == 0:
            folders = [p.name for p in self.runs_dir.iterdir() if p.is_dir()] if self.runs_dir.is_dir() else []
            if folders and not legacy_pending:
                raise RunLogFileError(
                    f"{self.path}: empty (0-byte) run log next to {len(folders)} run folder(s) in {self.runs_dir}"
                    f" (e.g. {sorted(folders)[0]}): it looks truncated, so it is not treated as a new log."
                    f" Restore it from a backup, or move {self.path.name} and {self.runs_dir.name}/ aside to"
                    " start afresh; the file was left untouched")
            return
        head = read_header(self.path) or SQLITE_HEADER
        if head != SQLITE_HEADER:
            hint = (" It looks like a JSON (TinyDB) run log: name it *.json to migrate it, or open it as"
                    f" tinydb:{self.path}." if head.lstrip()[:1] in (b"{", b"[") else "")
            raise RunLogFileError(f"{self.path}: not a workbench run log (not an SQLite database);"
                                  f" the file was left untouched.{hint}")

    def _connect(self, *, write: bool) -> sqlite3.Connection:
        if write:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._sync = "NORMAL"
        else:
            uri = "file:" + quote(str(self.path))
            try:
                conn = sqlite3.connect(uri + ("?mode=ro" if self.read_only else ""), uri=True, timeout=60.0,
                                       isolation_level=None, check_same_thread=False)
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            except sqlite3.OperationalError:
                if not self.read_only:
                    raise
                # A read-only folder cannot hold the WAL index; nobody can be writing there either.
                conn = sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None, check_same_thread=False)
        self._conns.append(conn)
        return conn

    def _fork_check(self) -> None:
        if os.getpid() != self._pid:  # a forked child must not use (or close) the parent's connections
            _ABANDONED.extend(self._conns)
            self._conns.clear()
            self._w = self._r = None
            self._pid = os.getpid()

    def _writer(self) -> sqlite3.Connection:
        self._fork_check()
        if self.read_only:
            raise RunLogError(f"{self.path}: the run log is read-only here; nothing can be written")
        if self._w is None:
            self._w = self._connect(write=True)
        return self._w

    def _reader(self) -> sqlite3.Connection:
        self._fork_check()
        if self._r is None:
            self._r = self._connect(write=False)
        return self._r

    def _init_schema(self) -> None:
        c = self._writer()
        with _transaction(c):
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "wb_meta" not in tables:
                raise self._foreign(tables)
            if "wb_meta" not in tables:
                for stmt in SQLITE_SCHEMA.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                c.executemany("INSERT OR IGNORE INTO wb_meta (key, value) VALUES (?, ?)",
                              [("format", FORMAT_NAME), ("version", str(SCHEMA_VERSION)),
                               ("frame_version", str(FRAME_VERSION)),
                               ("created_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))])

    def _foreign(self, tables: set[str]) -> RunLogFileError:
        return RunLogFileError(f"{self.path}: an SQLite database that is not a workbench run log (tables:"
                               f" {sorted(tables)}); the file was left untouched")

    def _check_schema(self) -> bool:
        """Refuse a foreign or newer database through a read-only connection, before anything writes.

        Returns True when the run-log tables are there already.
        """
        if not self.path.exists() or self.path.stat().st_size == 0:
            return False
        probe = sqlite3.connect("file:" + quote(str(self.path)) + "?mode=ro", uri=True, timeout=60.0)
        try:
            tables = {r[0] for r in probe.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            meta = dict(probe.execute("SELECT key, value FROM wb_meta").fetchall()) if "wb_meta" in tables else {}
        finally:
            probe.close()
        if not tables:
            return False
        if meta.get("format") != FORMAT_NAME:
            raise self._foreign(tables)
        if int(meta.get("version", "0")) > SCHEMA_VERSION:
            raise RunLogFileError(f"{self.path}: written by a newer workbench (run-log schema"
                                  f" {meta['version']}, this one reads {SCHEMA_VERSION}); the file was left untouched")
        return True

    # -- transactions ----------------------------------------------------------------
    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            msg = str(exc)
            if "not a database" in msg or "malformed" in msg:
                _disarm(self.path)
                raise RunLogFileError(f"{self.path}: corrupt run log ({msg}); the file was left untouched."
                                      " Move it aside to start a new log.") from None
            if "locked" in msg or "busy" in msg:
                raise RunLogError(f"{self.path}: could not lock the run log within 60 s ({msg})") from None
            if "readonly" in msg:
                raise RunLogError(f"{self.path}: the run log is read-only here ({msg})") from None
            raise RunLogError(f"{self.path}: {msg}") from None

    def _check_file(self) -> None:
        if not _file_is_ours(self.path, self._ino[0]):
            _disarm(self.path)
            raise RunLogFileError(f"{self.path}: the run-log file was replaced, truncated or overwritten while open;"
                                  " nothing more is written to it (the file was left untouched)")

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        with self._wlock, self._errors():
            c = self._writer()
            self._check_file()
            sync = "FULL" if durable and self.fsync else "NORMAL"  # FULL: the commit waits for the disk
            if sync != self._sync:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                c.execute(f"PRAGMA synchronous={sync}")
                self._sync = sync
            with _transaction(c):
                yield c

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._rlock, self._errors():
            return self._reader().execute(sql, params).fetchall()

    def close(self) -> None:
        with self._wlock, self._rlock:
            self._w = self._r = None
            _close_all(self._conns, self.path, self._ino)

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"
