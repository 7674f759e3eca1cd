"""The first run-log storage: one TinyDB JSON file, kept for reading old logs (``tinydb:PATH``).

TinyDB's stock ``JSONStorage`` truncates and rewrites its file in place, so a process killed
mid-write leaves a corrupt log, and two processes writing at once lose updates. Here every
write goes to a temp file in the same folder, is fsynced and ``os.replace``-d over the log
(atomic on POSIX), and every read-modify-write runs under a cross-process file lock
(``filelock``) plus a thread lock. Every write still rewrites the whole file, which is why
SQLite is the default now (see ``benchmarks/bench_runlog.py``). Per-step metrics go to
``runs/<id>/metrics.jsonl``, the heartbeat is the mtime of ``runs/<id>/heartbeat``.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from filelock import FileLock, Timeout
from tinydb import Query, TinyDB
from tinydb.storages import Storage

from .errors import RunLogError, RunLogFileError
from .jsonl import JsonlAppender, read_jsonl
from .records import ACTIVE, canonical, dumps_record, frame_row, record_problems
from .store import Filters, Store, runs_dir_for

#: Marker table that tells our file apart from any other JSON/TinyDB file.
META_TABLE = "_workbench"
RUNS_TABLE = "runs"
FORMAT_NAME = "workbench-runlog"
FORMAT_VERSION = 1


def _check_layout(path: Path, data: Any) -> None:
    """Raise RunLogFileError unless ``data`` is a workbench TinyDB document."""
    if not isinstance(data, dict):
        raise RunLogFileError(
            f"{path}: not a workbench run log (top level is {type(data).__name__}, expected an object"
            " of tables); the file was left untouched"
        )
    for table, docs in data.items():
        if not isinstance(docs, dict) or not all(isinstance(d, dict) for d in docs.values()):
            raise RunLogFileError(
                f"{path}: not a workbench run log (table {table!r} is not a TinyDB table);"
                " the file was left untouched"
            )
    if data:
        meta = data.get(META_TABLE, {})
        formats = {d.get("format") for d in meta.values()}
        if FORMAT_NAME not in formats:
            raise RunLogFileError(
                f"{path}: a JSON/TinyDB file that is not a workbench run log (no {META_TABLE!r}"
                f" marker; tables: {sorted(data)}); the file was left untouched"
            )


def parse_file(path: Path, raw: bytes) -> dict | None:
    """Parse a TinyDB run-log file's bytes; every way it can be bad is a RunLogFileError."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: bad JSON, an integer of 5,000 digits
        raise RunLogFileError(f"{path}: corrupt or truncated run log ({exc}); the file was left untouched."
                              " Move it aside to start a new log.") from None
    except RecursionError:
        raise RunLogFileError(f"{path}: corrupt run log (nested too deeply to be a run log); the file was"
                              " left untouched. Move it aside to start a new log.") from None
    _check_layout(path, data)
    return data


def check_not_truncated(path: Path, runs_dir: Path, known: set[str] = frozenset()) -> None:
    """An empty log file next to run folders it does not know looks truncated: refuse it."""
    if not runs_dir.is_dir():
        return
    unknown = sorted(p.name for p in runs_dir.iterdir() if p.is_dir() and p.name not in known)
    if unknown:
        raise RunLogFileError(
            f"{path}: empty (0-byte) run log next to {len(unknown)} run folder(s) in {runs_dir} (e.g."
            f" {unknown[0]}): it looks truncated, so it is not treated as a new log. Restore it from a backup,"
            f" or move {path.name} and {runs_dir.name}/ aside to start afresh; the file was left untouched")


class AtomicJSONStorage(Storage):
    """TinyDB storage writing atomically (temp file + fsync + ``os.replace``).

    The caller must hold the run log's lock around each read-modify-write. Reads are cached
    by the file's (mtime_ns, size, inode): a reader polling a log nobody writes does not re-parse it.
    """

    _cache: dict[Path, tuple[tuple[int, int, int], dict]] = {}
    _cache_lock = threading.Lock()

    def __init__(self, path: str | os.PathLike, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync

    def read(self) -> dict | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._cache_lock:
            hit = self._cache.get(self.path)
        if hit is not None and hit[0] == key:
            return _deep_copy(hit[1])
        with open(self.path, "rb") as fh:
            data = parse_file(self.path, fh.read())
        if data is None:
            return None
        with self._cache_lock:
            self._cache[self.path] = (key, data)
        return _deep_copy(data)

    def write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(data, separators=(",", ":"), allow_nan=True, default=str).encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        if self.fsync:
            _fsync_dir(self.path.parent)
        st = os.stat(self.path)
        with self._cache_lock:
            self._cache[self.path] = ((st.st_mtime_ns, st.st_size, st.st_ino), json.loads(payload))

    def close(self) -> None:  # nothing held open between operations
        pass


def _deep_copy(data: dict) -> dict:
    # Two levels of dict copies are enough for TinyDB (it replaces documents, never
    # mutates nested values in place); a json round-trip would cost far more.
    return {t: {k: dict(v) for k, v in docs.items()} for t, docs in data.items()}


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clean_stale_temps(path: Path) -> list[Path]:
    """Remove ``.runs.json.*.tmp`` left by writers killed mid-rewrite (call under the lock)."""
    gone = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            tmp.unlink()
            gone.append(tmp)
        except OSError:
            pass
    return gone


class LockedDB:
    """Opens the TinyDB file under a thread + process lock for one transaction."""

    def __init__(self, path: str | os.PathLike, timeout: float = 60.0, fsync: bool = True) -> None:
        self.path = Path(path).expanduser().resolve()
        self.timeout = timeout
        self.fsync = fsync
        self._tlock = threading.RLock()
        self._flock = FileLock(str(self.path) + ".lock", thread_local=False)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the thread and file locks (the same lock file older workbench versions take)."""
        with self._tlock:
            try:
                self._flock.acquire(timeout=self.timeout)
            except Timeout:
                raise RunLogError(f"{self.path}: could not lock the run log within {self.timeout:.0f} s"
                                  f" (lock file {self._flock.lock_file})") from None
            except OSError as exc:
                raise RunLogError(f"{self.path}: cannot take the run-log lock ({exc})") from None
            try:
                yield
            finally:
                self._flock.release()

    @contextmanager
    def transaction(self) -> Iterator[TinyDB]:
        """Yield an open TinyDB; everything inside runs under the lock."""
        with self.locked():
            db = TinyDB(self.path, storage=AtomicJSONStorage, fsync=self.fsync)
            db.storage.read()  # validate before anything can write
            try:
                if not db.table(META_TABLE).all():
                    db.table(META_TABLE).insert({"format": FORMAT_NAME, "version": FORMAT_VERSION})
                yield db
            finally:
                db.close()

    def read(self) -> dict:
        """A consistent snapshot of the raw tables (no lock needed: writes are atomic)."""
        data = AtomicJSONStorage(self.path).read()
        return data or {}


class JsonStore(Store):
    """The TinyDB JSON file (``tinydb:PATH``): fine for a few hundred runs, O(all runs) per write."""

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = Path(os.path.abspath(path))
        self.location = f"tinydb:{self.path}"
        self.display = str(self.path)
        self.runs_dir = runs_dir_for(self.path, "runs.json")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = LockedDB(self.path, fsync=fsync)
        self._warned: set[str] = set()
        data = self.db.read()  # a corrupt or foreign file fails here, before anything writes
        if self.path.exists() and self.path.stat().st_size == 0:
            check_not_truncated(self.path, self.runs_dir)
        self.read_only = self.path.exists() and not (os.access(self.path, os.W_OK)
                                                     and os.access(self.path.parent, os.W_OK))
        if not self.read_only and any(self.path.parent.glob(f".{self.path.name}.*.tmp")):
            try:
                with self.db.locked():
                    clean_stale_temps(self.path)
            except RunLogError:
                pass
        del data

    # -- reading ---------------------------------------------------------------------
    def _records(self) -> list[dict[str, Any]]:
        out = []
        for key, doc in self.db.read().get(RUNS_TABLE, {}).items():
            problems = record_problems(doc)
            if problems:
                if key not in self._warned:
                    self._warned.add(key)
                    warnings.warn(f"{self.path}: skipped malformed record #{key} ({'; '.join(problems)})",
                                  stacklevel=3)
                continue
            out.append(doc)
        return out

    def get(self, run_id: str) -> dict[str, Any] | None:
        for d in self._records():
            if d["id"] == run_id:
                return d
        return None

    def match_prefix(self, prefix: str, limit: int = 6) -> list[str]:
        return sorted(d["id"] for d in self._records() if d["id"].startswith(prefix))[:limit]

    def latest_named(self, name: str) -> str | None:
        named = sorted((d for d in self._records() if d["name"] == name), key=lambda d: (d["created_at"], d["id"]))
        return named[-1]["id"] if named else None

    def select(self, filters: Filters) -> list[dict[str, Any]]:
        name, kind, statuses, tag = filters
        out = [d for d in self._records()
               if (name is None or d["name"] == name) and (kind is None or d["kind"] == kind)
               and (statuses is None or d["status"] in statuses) and (tag is None or tag in (d.get("tags") or []))]
        return sorted(out, key=lambda d: (d["created_at"], d["id"]))

    def frame(self, filters: Filters):
        import pandas as pd

        return pd.DataFrame([frame_row(r) for r in self.select(filters)])

    def active(self) -> list[tuple[dict[str, Any], float | None]]:
        out = []
        for d in self._records():
            if d["status"] in ACTIVE:
                try:
                    age = time.time() - (self.runs_dir / d["id"] / "heartbeat").stat().st_mtime
                except OSError:
                    age = None
                out.append((d, age))
        return out

    def read_metrics(self, run_id: str) -> list[dict[str, Any]]:
        return read_jsonl(self.runs_dir / run_id / "metrics.jsonl")

    # -- writing ---------------------------------------------------------------------
    def insert(self, rec: dict[str, Any]) -> None:
        with self.db.transaction() as db:
            t = db.table(RUNS_TABLE)
            if t.get(Query().id == rec["id"]) is not None:
                raise RunLogError(f"a run with id {rec['id']!r} already exists in {self.path}")
            t.insert(rec)
        if rec["status"] in ACTIVE:
            self.beat(rec["id"])

    def modify(self, run_id: str, fn: Callable[[dict[str, Any]], dict[str, Any]],
               metrics: list[str] | None = None) -> dict[str, Any]:
        if metrics:
            w = self.metrics_writer(run_id)
            try:
                w.append(metrics)
                w.sync()
            except OSError as exc:
                raise RunLogError(f"{w.path}: could not write metrics ({exc})") from None
            finally:
                w.close()
        with self.db.transaction() as db:
            t = db.table(RUNS_TABLE)
            doc = t.get(Query().id == run_id)
            if doc is None:
                raise RunLogError(f"no run with id {run_id!r} in {self.path}")
            new = fn(dict(doc))

            def replace(d: dict) -> None:
                d.clear()
                d.update(new)

            t.update(replace, doc_ids=[doc.doc_id])
        if new["status"] in ACTIVE:
            self.beat(run_id)
        return new

    def delete(self, run_id: str) -> None:
        with self.db.transaction() as db:
            db.table(RUNS_TABLE).remove(Query().id == run_id)

    def beat(self, run_id: str, at: float | None = None) -> None:
        hb = self.runs_dir / run_id / "heartbeat"
        try:
            hb.parent.mkdir(parents=True, exist_ok=True)
            hb.touch()
            if at is not None:
                os.utime(hb, (at, at))
        except OSError:
            pass  # retried by the next beat; a missed one only matters after STALE_AFTER_S

    def metrics_writer(self, run_id: str) -> JsonlAppender:
        return JsonlAppender(self.runs_dir / run_id / "metrics.jsonl")

    def import_runs(self, items: Iterable[tuple[dict[str, Any], list[dict[str, Any]]]], *,
                    overwrite: bool = False, where: str = "") -> tuple[int, int, int]:
        with self.db.transaction() as db:
            t = db.table(RUNS_TABLE)
            existing = {d.get("id"): d for d in t.all()}
            new, replace, same = [], [], 0
            for rec, metrics in items:
                old = existing.get(rec["id"])
                if old is not None:
                    if canonical(dict(old), self.read_metrics(rec["id"])) == canonical(rec, metrics):
                        same += 1
                        continue
                    if not overwrite:
                        raise RunLogError(f"{where}run {rec['id']} ({rec.get('name')}) already exists in {self.path}"
                                          " with different content; nothing was imported"
                                          " (overwrite=True / --overwrite replaces it)")
                    replace.append((rec, metrics))
                else:
                    new.append((rec, metrics))
            for rec, metrics in new + replace:
                path = self.runs_dir / rec["id"] / "metrics.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(dumps_record(m) + "\n" for m in metrics), encoding="utf-8")
            if replace:
                t.remove(Query().id.one_of([r["id"] for r, _ in replace]))
            t.insert_multiple([r for r, _ in new + replace])
        return len(new), same, len(replace)

    def __repr__(self) -> str:
        return f"JsonStore({str(self.path)!r})"
