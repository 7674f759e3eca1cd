"""The embedded default store: one SQLite file (WAL) next to the per-run folders.

WAL (readers never block the writer), ``BEGIN IMMEDIATE`` for every read-modify-write (so
concurrent processes lose no update), ``synchronous=FULL`` for record writes when ``fsync``
(a finished run survives power loss). Two hard-won rules live here: never close a descriptor
of the database file while SQLite has it open (:func:`read_header`), and never let SQLite's
close-time checkpoint write into a file that is no longer ours (:func:`_disarm`).
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

from .errors import RunLogError, RunLogFileError
from .records import FRAME_VERSION
from .store import runs_dir_for
from .store_sql import ABANDONED, FORMAT_NAME, SCHEMA_VERSION, SQLStore

SQLITE_HEADER = b"SQLite format 3\x00"

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS wb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS wb_runs (id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL,
    status TEXT NOT NULL, created_at TEXT NOT NULL, heartbeat REAL, record TEXT NOT NULL, frame_cols TEXT NOT NULL,
    frame TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS wb_frame_cols (key TEXT PRIMARY KEY, cols TEXT NOT NULL);
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
            self.refresh_frames()

    # -- opening ---------------------------------------------------------------------
    def _preflight(self, legacy_pending: bool) -> None:
        if not self.path.exists():
            if legacy_pending and self._legacy.is_file():  # refuse a bad old log before creating the new one
                from .store_json import check_not_truncated, parse_file

                try:
                    raw = self._legacy.read_bytes()
                except FileNotFoundError:
                    return  # another process is migrating it right now; the lock sorts that out
                if parse_file(self._legacy, raw) is None:
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
            ABANDONED.extend(self._conns)
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
    def transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
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

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._rlock, self._errors():
            return self._reader().execute(sql, params).fetchall()

    def close(self) -> None:
        with self._wlock, self._rlock:
            self._w = self._r = None
            _close_all(self._conns, self.path, self._ino)

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"
