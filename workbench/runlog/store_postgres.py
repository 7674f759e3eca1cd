"""The run log on a PostgreSQL server, for teams: ``RunLog("postgresql://user@host/db")``.

Same tables and SQL as SQLite (:mod:`.store_sql`), through ``psycopg`` 3. Read-modify-writes
take the row lock (``SELECT … FOR UPDATE``), so processes on any number of machines lose no
update; heartbeats use the server's clock, so a colleague's live run is not marked crashed
because two laptops disagree about the time. Per-step metrics live in the database too,
so every machine sees every curve. Per-run folders (checkpoints) stay on the machine that
wrote them, under ``$WORKBENCH_HOME/runs``.

Passwords: put them in ``PGPASSWORD``, ``~/.pgpass`` or ``WORKBENCH_DB``; the location a log
reports (``RunLog.path``, messages) never carries one, and reopening that location picks
the password up from ``WORKBENCH_DB`` when it names the same server, user and database.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

from .. import paths
from .errors import RunLogError, RunLogFileError
from .records import FRAME_VERSION
from .store_sql import ABANDONED, FORMAT_NAME, SCHEMA_VERSION, SQLStore

_LOCK_KEY = 0x77626C67  # pg_advisory_xact_lock key: one schema creation at a time

PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS wb_meta (key TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS wb_runs (id TEXT COLLATE "C" PRIMARY KEY, name TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL, status TEXT COLLATE "C" NOT NULL, created_at TEXT COLLATE "C" NOT NULL,
    heartbeat DOUBLE PRECISION, record TEXT NOT NULL, frame_cols TEXT COLLATE "C" NOT NULL, frame TEXT NOT NULL)
    WITH (toast_tuple_target = 8160);
CREATE TABLE IF NOT EXISTS wb_frame_cols (key TEXT COLLATE "C" PRIMARY KEY, cols TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS wb_runs_created ON wb_runs (created_at, id);
CREATE INDEX IF NOT EXISTS wb_runs_kind ON wb_runs (kind, status, created_at);
CREATE INDEX IF NOT EXISTS wb_runs_status ON wb_runs (status, created_at);
CREATE INDEX IF NOT EXISTS wb_runs_name ON wb_runs (name, created_at);
CREATE TABLE IF NOT EXISTS wb_tags (tag TEXT COLLATE "C" NOT NULL, run_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tag, run_id));
CREATE INDEX IF NOT EXISTS wb_tags_run ON wb_tags (run_id);
CREATE TABLE IF NOT EXISTS wb_metrics (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id TEXT COLLATE "C" NOT NULL, rows TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS wb_metrics_run ON wb_metrics (run_id, seq);
CREATE TABLE IF NOT EXISTS wb_quarantine (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source TEXT NOT NULL, reason TEXT NOT NULL, raw TEXT NOT NULL, at TEXT NOT NULL)
"""


# toast_tuple_target: records (~2-8 KB) stay inline and uncompressed; find() at 100,000 runs
# spent a fifth of its time decompressing them (measured: 15 -> 12 ms for 536 of 30,000 runs).


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    # the five fields spelled out (not SplitResult._replace): the architecture test reads `._x` as a reach-in
    return urlunsplit((parts.scheme, f"{user}@{netloc[1]}", parts.path, parts.query, parts.fragment))


def _same_target(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.username, pa.hostname, pa.port, pa.path, pa.query) == (pb.username, pb.hostname, pb.port, pb.path,
                                                                       pb.query)


def with_env_password(url: str) -> str:
    """``url``, with the password from ``WORKBENCH_DB`` when it has none and names the same target."""
    env = os.environ.get("WORKBENCH_DB", "")
    if urlsplit(url).password is None and env and urlsplit(env).password and _same_target(url, env):
        return env
    return url


class PostgresStore(SQLStore):
    """A run log on a PostgreSQL server (tables ``wb_*`` in the connection's search path)."""

    PH = "%s"
    FOR_UPDATE = " FOR UPDATE"
    NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"

    def __init__(self, url: str, *, fsync: bool = True) -> None:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - psycopg is a dependency
            raise RunLogError("the PostgreSQL run log needs psycopg 3: pip install 'psycopg[binary]'") from None
        self._psycopg = psycopg
        self._url = with_env_password(url)
        self.location = _without_password(url)
        self.display = self.location
        self.fsync = fsync
        self.runs_dir = paths.runs_dir()
        self._pid = os.getpid()
        self._wlock, self._rlock = threading.RLock(), threading.RLock()
        self._w: Any = None
        self._r: Any = None
        with self._errors():
            self._init_schema()
        if self.meta().get("frame_version") != str(FRAME_VERSION):
            self.refresh_frames()

    def _connect(self) -> Any:
        conn = self._psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        if not self.fsync:
            conn.execute("SET synchronous_commit = off")
        return conn

    def _fork_check(self) -> None:
        if os.getpid() != self._pid:  # a forked child must not talk over the parent's sockets
            ABANDONED.extend(c for c in (self._w, self._r) if c is not None)
            self._w = self._r = None
            self._pid = os.getpid()

    def _init_schema(self) -> None:
        with self.transaction() as c:
            c.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            if c.execute("SELECT to_regclass('wb_meta')").fetchone()[0] is None:
                for stmt in PG_SCHEMA.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                c.cursor().executemany("INSERT INTO wb_meta (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                       [("format", FORMAT_NAME), ("version", str(SCHEMA_VERSION)),
                                        ("frame_version", str(FRAME_VERSION))])
            meta = dict(c.execute("SELECT key, value FROM wb_meta").fetchall())
        if meta.get("format") != FORMAT_NAME:
            raise RunLogFileError(f"{self.display}: its wb_meta table is not a workbench run log's; left untouched")
        if int(meta.get("version", "0")) > SCHEMA_VERSION:
            raise RunLogFileError(f"{self.display}: written by a newer workbench (run-log schema {meta['version']},"
                                  f" this one reads {SCHEMA_VERSION}); left untouched")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._psycopg.OperationalError as exc:
            self._w = self._r = None  # reconnect on the next call
            raise RunLogError(f"{self.display}: {str(exc).strip().splitlines()[0]}") from None
        except self._psycopg.Error as exc:
            raise RunLogError(f"{self.display}: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}") from None

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[Any]:
        with self._wlock, self._errors():
            self._fork_check()
            if self._w is None or self._w.closed:
                self._w = self._connect()
            with self._w.transaction():
                if not durable and self.fsync:  # metric chunks, heartbeats: no wait for the server's WAL flush
                    self._w.execute("SET LOCAL synchronous_commit = off")
                yield self._w

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._rlock, self._errors():
            self._fork_check()
            if self._r is None or self._r.closed:
                self._r = self._connect()
            return self._r.execute(self.dialect(sql), params).fetchall()

    def close(self) -> None:
        with self._wlock, self._rlock:
            for c in (self._w, self._r):
                if c is not None and os.getpid() == self._pid:
                    c.close()
            self._w = self._r = None

    def __repr__(self) -> str:
        return f"PostgresStore({self.display!r})"
