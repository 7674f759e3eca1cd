"""The run log: one record per run, per-step metrics beside it, on a pluggable store.

``RunLog()`` opens ``$WORKBENCH_DB`` or ``$WORKBENCH_HOME/runs.db`` (SQLite); ``RunLog(path)``
another file, ``RunLog("postgresql://…")`` a server several machines share (see
:mod:`workbench.runlog.store`). Per-step metrics are buffered in the :class:`Run` handle and
flushed at least every ``flush_every`` seconds (by the logging call or the run's heartbeat
thread) as one chunk; ``RunLog.get`` folds them back in, so the record stays the one thing
users query. A reader in another process sees a live run's losses within ~0.5 s.
"""
from __future__ import annotations

import gc
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .env import environment, new_run_id, pid_alive, proc_start_time, utcnow
from .errors import RunLogError
from .jsonl import read_jsonl
from .records import ACTIVE, RUN_ID_RE, STATUSES, TERMINAL, TRANSITIONS, check_run_id, frame_row, jsonable
from .run import HEARTBEAT_EVERY_S, MAX_BUFFERED_LINES, Run, transition
from .backends import open_store
from .store import Filters, Store

__all__ = ["Run", "RunLog", "read_jsonl", "utcnow", "new_run_id", "environment", "STATUSES", "ACTIVE",
           "TERMINAL", "TRANSITIONS", "STALE_AFTER_S", "HEARTBEAT_EVERY_S", "MAX_BUFFERED_LINES"]

#: A run on another host counts as dead after this many seconds without a heartbeat.
STALE_AFTER_S = 120.0
_RESERVED = ("id", "dir", "status", "history", "created_at")


class RunLog:
    """The workbench's run log.

    ``RunLog()`` opens ``$WORKBENCH_DB`` or ``$WORKBENCH_HOME/runs.db`` (see :mod:`workbench.paths`);
    ``RunLog(path_or_url)`` another store. Opening marks runs whose process is gone as ``crashed``.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, check_crashed: bool = True,
                 fsync: bool = True) -> None:
        self.store: Store = open_store(path, fsync=fsync)
        self._handles: dict[str, Run] = {}
        if check_crashed:
            self.mark_crashed()

    # -- paths -------------------------------------------------------------------
    @property
    def path(self) -> str | Path:
        """What ``RunLog(log.path)`` reopens: the SQLite file, or a ``tinydb:``/``postgresql:`` location."""
        return self.store.location

    @property
    def runs_dir(self) -> Path:
        """Folder holding one sub-folder per run (next to the database file)."""
        return self.store.runs_dir

    def run_dir(self, run_id: str) -> Path:
        """The run's folder, always inside :attr:`runs_dir` (the id is checked first)."""
        return self.runs_dir / check_run_id(run_id)

    # -- creating runs ------------------------------------------------------------
    def start(self, name: str, kind: str, config: Mapping[str, Any] | None = None, *,
              tags: Iterable[str] = (), status: str = "running", seed: int | None = None,
              dataset: Mapping[str, Any] | None = None, test_config: Mapping[str, Any] | None = None,
              parent: str | None = None, heartbeat: bool | None = None, **extra: Any) -> Run:
        """Create a run (status ``running`` unless ``status="queued"``) and return its handle.

        ``heartbeat``: see :class:`Run`; by default only a ``running`` run beats from here, so a
        ``queued`` run created for another process to work on leaves no thread behind.
        """
        if status not in ("queued", "running"):
            raise RunLogError(f"a new run starts as 'queued' or 'running', not {status!r}")
        bad = sorted(set(extra) & set(_RESERVED))
        if bad:
            raise RunLogError(f"start(): {', '.join(bad)} cannot be set by the caller")
        run_id = new_run_id()
        now = utcnow()
        cfg = json.loads(json.dumps(dict(config or {}), default=str))
        if seed is None and isinstance(cfg.get("seed"), int):
            seed = cfg["seed"]
        pid = os.getpid()
        record = {
            "id": run_id, "name": str(name), "kind": str(kind), "status": status,
            "config": cfg, "test_config": dict(test_config) if test_config else None,
            "epochs": [], "summary": {}, "metrics_summary": {},
            "dataset": dict(dataset) if dataset else None,
            "tags": sorted({str(t) for t in tags}), "parent": parent,
            "created_at": now, "updated_at": now, "started_at": now if status == "running" else None,
            "ended_at": None, "durations": {},
            "host": socket.gethostname(), "pid": pid, "pid_start": proc_start_time(pid),
            "env": environment(seed), "error": None,
            "dir": str(self.run_dir(run_id)), "artifacts": {},
            "history": [{"status": status, "at": now}],
        }
        record.update(jsonable(extra))
        self.store.insert(record)  # the folder comes after the record: a failed insert leaves nothing
        try:
            self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        except OSError:
            self.store.delete(run_id)
            raise
        run = Run(self, run_id, heartbeat=heartbeat)
        self._handles[run_id] = run
        if status == "running":
            run.start_heartbeat()
        return run

    def handle(self, run_id: str, *, heartbeat: bool | None = None) -> Run:
        """A handle to continue logging into an existing run (e.g. a test phase)."""
        rid = self.resolve(run_id)
        if rid not in self._handles:
            self._handles[rid] = Run(self, rid, heartbeat=heartbeat)
        return self._handles[rid]

    # -- reading -----------------------------------------------------------------
    def _raw(self, run_id: str) -> dict[str, Any]:
        """Deprecated alias of ``get(run_id, metrics=False)`` for an exact id."""
        rec = self.store.get(run_id)
        if rec is None:
            raise RunLogError(f"no run with id {run_id!r} in {self.store.display}")
        return rec

    def resolve(self, ref: str) -> str:
        """Resolve a run id, a unique id prefix or a run name (latest wins) to an id."""
        ref = str(ref)
        if RUN_ID_RE.fullmatch(ref):
            if self.store.get(ref) is not None:
                return ref
            pref = self.store.match_prefix(ref)
            if len(pref) == 1:
                return pref[0]
            if len(pref) > 1:
                raise RunLogError(f"run id prefix {ref!r} is ambiguous: {', '.join(sorted(pref)[:5])}")
        named = self.store.latest_named(ref)
        if named is not None:
            return check_run_id(named)  # a tampered row's id never reaches a path
        raise RunLogError(f"no run with id or name {ref!r} in {self.store.display}")

    def get(self, run_id: str, metrics: bool = True) -> dict[str, Any]:
        """The full record of a run (id, id prefix or name), per-step ``metrics`` folded in.

        ``metrics=False`` is one indexed lookup for an exact id (no metric rows read).
        """
        rec = self.store.get(run_id) if RUN_ID_RE.fullmatch(str(run_id)) else None
        if rec is None:
            rec = self.store.get(self.resolve(run_id))
            if rec is None:
                raise RunLogError(f"no run with id or name {run_id!r} in {self.store.display}")
        rid = rec["id"]
        rec["dir"] = str(self.run_dir(rid))  # never a path the record claims: the folder it belongs in
        if metrics:
            if rid in self._handles:
                self._handles[rid].flush()
            rec["metrics"] = self.store.read_metrics(rid)
        return rec

    def read_metrics(self, run_id: str) -> list[dict[str, Any]]:
        """All flushed metric rows of a run, in logging order."""
        return self.store.read_metrics(check_run_id(run_id))

    def metrics_frame(self, run_id: str):
        """Per-run metrics as a pandas DataFrame: one row per logging call, NaN where absent."""
        import pandas as pd

        rows = self.read_metrics(self.resolve(run_id))
        df = pd.DataFrame(rows)
        if df.empty:
            return pd.DataFrame(columns=["step", "time"])
        keys = [k for k in ("step", "time") if k in df.columns]
        return df.sort_values(keys, kind="stable").reset_index(drop=True) if keys else df

    def _located(self, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Set each record's ``dir`` to its folder in this log (a copied or imported log moved)."""
        base = str(self.runs_dir)
        for d in recs:
            rid = d.get("id")
            if isinstance(rid, str) and RUN_ID_RE.fullmatch(rid):
                d["dir"] = os.path.join(base, rid)
        return recs

    def runs(self) -> list[dict[str, Any]]:
        """All records (without per-step metrics), oldest first."""
        return self._located(self.store.select((None, None, None, None)))

    @staticmethod
    def _filters(name: str | None = None, kind: str | None = None, status: str | Iterable[str] | None = None,
                 tag: str | None = None) -> Filters:
        statuses = (status,) if isinstance(status, str) else (tuple(status) if status is not None else None)
        return name, kind, statuses, tag

    def find(self, name: str | None = None, kind: str | None = None, status: str | Iterable[str] | None = None,
             tag: str | None = None, **where: Any) -> list[dict[str, Any]]:
        """Records matching every given filter (``status`` may be a list), oldest first.

        ``name``/``kind``/``status``/``tag`` are answered by the store's indexes; ``where``
        (other top-level fields, equality) is checked on the records those return.
        """
        recs = self._located(self.store.select(self._filters(name, kind, status, tag)))
        return [d for d in recs if all(d.get(k) == v for k, v in where.items())] if where else recs

    def search(self, cond: Callable[[Mapping[str, Any]], bool]) -> list[dict[str, Any]]:
        """Records for which ``cond`` holds, e.g. a TinyDB query: ``search(Query().config.lr < 0.01)``."""
        return [d for d in self.runs() if cond(d)]

    def to_frame(self, **filters: Any):
        """One row per run; ``config``, ``summary``, ``env`` and ``dataset`` flattened to dotted columns."""
        import pandas as pd

        if not set(filters) - {"name", "kind", "status", "tag"}:
            return self.store.frame(self._filters(**filters))
        rows = [frame_row(r) for r in self.find(**filters)]
        gc_was = gc.isenabled()
        gc.disable()  # many rows of ~40 cells: the cyclic GC would rescan them again and again
        try:
            return pd.DataFrame(rows)
        finally:
            if gc_was:
                gc.enable()

    # -- writing (a Run handle writes its own fields, epochs and status: see run.py) --
    def set_status(self, run_id: str, status: str, **fields: Any) -> None:
        """Move run ``run_id`` to ``status`` (validated)."""
        transition(self.store, self.resolve(run_id), status, fields)

    def delete(self, run_id: str) -> None:
        """Remove a run's record and its folder (only ever a folder inside :attr:`runs_dir`)."""
        rid = self.resolve(run_id)
        folder = self.run_dir(rid)
        self.store.delete(rid)
        self._handles.pop(rid, None)
        if folder.is_symlink():
            folder.unlink()  # the link, never what it points to
        elif folder.is_dir() and folder.resolve().parent == self.runs_dir.resolve():
            shutil.rmtree(folder, ignore_errors=True)

    def mark_crashed(self, stale_after: float = STALE_AFTER_S) -> list[str]:
        """Mark active runs whose process is gone as ``crashed``; return their ids.

        A read-only log is left as it is (nothing can be written), and still opens.
        """
        if self.store.read_only:
            return []
        host = socket.gethostname()
        dead: list[tuple[str, str]] = []
        for d, age in self.store.active():
            if not isinstance(d.get("id"), str) or not RUN_ID_RE.fullmatch(d["id"]):
                continue  # a tampered row: never act on it
            if d.get("host") == host:
                pid = d.get("pid")
                if isinstance(pid, int) and not isinstance(pid, bool) and not pid_alive(pid, d.get("pid_start")):
                    dead.append((d["id"], f"process {d['pid']} on {host} is gone"))
            elif age is None or age > stale_after:
                since = "ever" if age is None else f"{age:.0f} s"
                dead.append((d["id"], f"no heartbeat from {d.get('host')} for {since}"))
        marked = []
        for rid, why in dead:
            try:
                transition(self.store, rid, "crashed", {"error": f"crashed: {why}"})
                marked.append(rid)
            except RunLogError:
                pass  # another process got there first, or the log cannot be written here
        return marked

    # -- moving runs -------------------------------------------------------------
    def export(self, path: str | os.PathLike, runs: Iterable[str] | None = None) -> int:
        """Write runs (default: all) as JSON lines, one ``get(id)`` per line (gzip if ``.gz``); returns the count."""
        from .export import export_runs

        return export_runs(self, path, runs)

    def import_(self, path: str | os.PathLike, *, overwrite: bool = False) -> dict[str, int]:
        """Add the runs of an export file; idempotent by run id. Returns ``{"added", "unchanged", "replaced"}``."""
        from .export import import_runs

        return import_runs(self, path, overwrite=overwrite)

    def close(self) -> None:
        """Stop this process's heartbeats and release the store's connections."""
        for run in list(self._handles.values()):
            run.stop_heartbeat(wait=False)
        self.store.close()

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunLog({str(self.path)!r})"
