"""Crash-safe TinyDB storage for the run log.

TinyDB's stock ``JSONStorage`` truncates and rewrites its file in place, so a process
killed mid-write leaves a corrupt log, and two processes writing at once lose updates.
Here every write goes to a temp file in the same folder, is fsynced and then
``os.replace``-d over the log (atomic on POSIX), and every read-modify-write runs
under a cross-process file lock (``filelock``) plus a thread lock.

Reads are cached by the file's (mtime_ns, size, inode): a reader that polls a log
nobody is writing does not re-parse it.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout
from tinydb import TinyDB
from tinydb.storages import Storage

#: Marker table that tells our file apart from any other JSON/TinyDB file.
META_TABLE = "_workbench"
FORMAT_NAME = "workbench-runlog"
FORMAT_VERSION = 1


class RunLogError(Exception):
    """A run-log problem a user can act on (bad file, unknown run, bad transition)."""


class RunLogFileError(RunLogError):
    """The run-log file is corrupt, truncated or not a workbench run log."""


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


class AtomicJSONStorage(Storage):
    """TinyDB storage writing atomically (temp file + fsync + ``os.replace``).

    The caller must hold the run log's lock around each read-modify-write.
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
        if st.st_size == 0:
            return None
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read()
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunLogFileError(
                f"{self.path}: corrupt or truncated run log ({exc}); the file was left untouched."
                " Move it aside to start a new log."
            ) from None
        _check_layout(self.path, data)
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


class LockedDB:
    """Opens the TinyDB file under a thread + process lock for one transaction."""

    def __init__(self, path: str | os.PathLike, timeout: float = 60.0, fsync: bool = True) -> None:
        self.path = Path(path).expanduser().resolve()
        self.timeout = timeout
        self.fsync = fsync
        self._tlock = threading.RLock()
        self._flock = FileLock(str(self.path) + ".lock", thread_local=False)

    @contextmanager
    def transaction(self) -> Iterator[TinyDB]:
        """Yield an open TinyDB; everything inside runs under the lock."""
        with self._tlock:
            try:
                self._flock.acquire(timeout=self.timeout)
            except Timeout:
                raise RunLogError(
                    f"{self.path}: could not lock the run log within {self.timeout:.0f} s"
                    f" (lock file {self._flock.lock_file})"
                ) from None
            try:
                db = TinyDB(self.path, storage=AtomicJSONStorage, fsync=self.fsync)
                db.storage.read()  # validate before anything can write
                try:
                    if not db.table(META_TABLE).all():
                        db.table(META_TABLE).insert({"format": FORMAT_NAME, "version": FORMAT_VERSION})
                    yield db
                finally:
                    db.close()
            finally:
                self._flock.release()

    def read(self) -> dict:
        """A consistent snapshot of the raw tables (no lock needed: writes are atomic)."""
        data = AtomicJSONStorage(self.path).read()
        return data or {}
