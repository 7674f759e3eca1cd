"""The run log: one TinyDB record per run, per-step metrics in append-only side files.

Why two files per run: TinyDB rewrites its whole JSON file on every write, so an
``update`` per optimizer step costs O(all stored runs). Per-step metrics therefore go
to ``runs/<id>/metrics.jsonl`` (buffered, flushed at least every ``flush_every``
seconds by the logging call or by the run's heartbeat thread) and the record holds
everything else; ``RunLog.get`` folds the metrics back in, so the record stays the
one thing users query. A reader in another process sees a live run's losses as soon
as they are flushed (≤ ~0.5 s by default).
"""
from __future__ import annotations

import json
import math
import os
import platform
import secrets
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from tinydb import Query

from .. import paths
from .store import LockedDB, RunLogError

RUNS_TABLE = "runs"

#: Every status a run can have.
STATUSES = ("queued", "running", "trained", "testing", "completed", "failed", "stopped", "crashed")
#: Statuses of a run whose process should be alive.
ACTIVE = ("queued", "running", "testing")
#: Statuses a run never leaves (a ``crashed`` or ``stopped`` run may be resumed: back to ``running``).
TERMINAL = ("failed",)
#: Allowed status transitions (from -> to).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "queued": ("running", "failed", "stopped", "crashed"),
    "running": ("trained", "completed", "failed", "stopped", "crashed"),
    "trained": ("testing", "completed", "failed", "crashed"),
    "testing": ("completed", "trained", "failed", "stopped", "crashed"),
    "completed": ("testing",),
    "stopped": ("testing", "running"),
    "failed": (),
    "crashed": ("running",),
}

#: A run on another host counts as dead after this many seconds without a heartbeat.
STALE_AFTER_S = 120.0
HEARTBEAT_EVERY_S = 5.0


def utcnow() -> str:
    """ISO-8601 UTC timestamp with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    """A sortable id that stays unique across processes and hosts: UTC time + 40 random bits."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(5)


def _proc_start_time(pid: int) -> str | None:
    """Start time of a process from /proc (tells a live pid from a reused one)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start is not None and os.path.exists("/proc"):
        return _proc_start_time(pid) == start
    return True


_ENV_CACHE: dict[str, Any] | None = None


def environment(seed: int | None = None) -> dict[str, Any]:
    """Versions and provenance stored with every run."""
    global _ENV_CACHE
    if _ENV_CACHE is None:
        from .. import __version__

        env: dict[str, Any] = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "workbench": __version__,
        }
        for mod, key in (("torch", "torch"), ("lightning", "lightning"), ("pytorch_lightning", "lightning"),
                         ("torchvision", "torchvision")):
            if key in env:
                continue
            m = sys.modules.get(mod)
            if m is None:
                try:
                    from importlib.metadata import version

                    env[key] = version(mod.replace("_", "-"))
                except Exception:
                    continue
            else:
                env[key] = getattr(m, "__version__", None)
        env["git_commit"] = _git_commit()
        _ENV_CACHE = env
    out = dict(_ENV_CACHE)
    out["seed"] = seed
    return out


def _git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                           cwd=os.getcwd())
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


class Run:
    """A live handle on one run: log metrics, move its status, finish it.

    Per-step metrics are buffered and appended to ``metrics.jsonl``; the run's record
    in the TinyDB file changes only on status changes, epochs and ``finish``.
    """

    def __init__(self, log: "RunLog", run_id: str, flush_every: float = 0.5) -> None:
        self.log = log
        self.id = run_id
        self.dir = log.run_dir(run_id)
        self.flush_every = flush_every
        self._buf: list[str] = []
        self._lock = threading.Lock()
        self._fh = None
        self._last_flush = time.monotonic()
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}
        self._min: dict[str, float] = {}
        self._max: dict[str, float] = {}
        self._max_step = -1
        self._stop = threading.Event()
        self._hb: threading.Thread | None = None

    # -- metrics -----------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None,
                    epoch: int | None = None) -> None:
        """Record scalar metrics at ``step`` (defaults to the next step). Cheap: buffered."""
        if step is None:
            step = self._max_step + 1
        row: dict[str, Any] = {"step": int(step), "time": round(time.time(), 3)}
        if epoch is not None:
            row["epoch"] = int(epoch)
        for k, v in metrics.items():
            v = float(v)  # tensors, numpy scalars
            row[k] = v
            self._last[k] = v
            self._count[k] = self._count.get(k, 0) + 1
            if v == v:  # not NaN
                if v < self._min.get(k, math.inf):
                    self._min[k] = v
                if v > self._max.get(k, -math.inf):
                    self._max[k] = v
        if step > self._max_step:
            self._max_step = step
        line = json.dumps(row, allow_nan=True)
        with self._lock:
            self._buf.append(line)
            if time.monotonic() - self._last_flush >= self.flush_every:
                self._flush_locked()

    def flush(self, fsync: bool = False) -> None:
        """Write buffered metrics to ``metrics.jsonl`` (visible to other readers)."""
        with self._lock:
            self._flush_locked(fsync)

    def _flush_locked(self, fsync: bool = False) -> None:
        self._last_flush = time.monotonic()
        if self._buf:
            if self._fh is None:
                self.dir.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.dir / "metrics.jsonl", "a", encoding="utf-8")
            self._fh.write("\n".join(self._buf) + "\n")
            self._buf.clear()
            self._fh.flush()  # into the kernel: survives SIGKILL of this process
        if fsync and self._fh is not None:
            os.fsync(self._fh.fileno())

    def metrics_summary(self) -> dict[str, dict[str, float]]:
        """Last/min/max/count per metric key logged by this handle."""
        return {k: {"last": self._last[k], "min": self._min.get(k, math.nan),
                    "max": self._max.get(k, math.nan), "count": self._count[k]} for k in self._last}

    # -- heartbeat ---------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        if self._hb is not None and self._hb.is_alive():
            return
        self._stop.clear()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._beat()
        self._hb = threading.Thread(target=self._heartbeat_loop, name=f"runlog-heartbeat-{self.id}",
                                    daemon=True)
        self._hb.start()

    def _beat(self) -> None:
        hb = self.dir / "heartbeat"
        try:
            hb.touch()
        except OSError:
            pass

    def _heartbeat_loop(self) -> None:
        n = 0
        while not self._stop.wait(self.flush_every):
            try:
                self.flush()
                n += 1
                if n * self.flush_every >= HEARTBEAT_EVERY_S:
                    n = 0
                    self._beat()
            except Exception:  # the heartbeat must never kill training
                pass

    def _close(self) -> None:
        self._stop.set()
        if self._hb is not None and self._hb is not threading.current_thread():
            self._hb.join(timeout=5)
        self._hb = None
        with self._lock:
            self._flush_locked(fsync=True)
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    # -- record ------------------------------------------------------------------
    @property
    def record(self) -> dict[str, Any]:
        """The run's current record, metrics folded in."""
        self.flush()
        return self.log.get(self.id)

    @property
    def status(self) -> str:
        return self.log._raw(self.id)["status"]

    def update(self, **fields: Any) -> None:
        """Set record fields (not status: use ``set_status``)."""
        if "status" in fields:
            raise RunLogError("use set_status() to change a run's status")
        self.log._update(self.id, fields)

    def set_status(self, status: str, **fields: Any) -> None:
        """Move the run to ``status`` (validated against ``TRANSITIONS``)."""
        self.log._transition(self.id, status, fields)
        if status in ACTIVE:
            self._start_heartbeat()

    def log_epoch(self, epoch: int, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record end-of-epoch metrics: in the metrics file and in the record's ``epochs`` list."""
        self.log_metrics(metrics, step=self._max_step if step is None else step, epoch=epoch)
        self.record_epoch(epoch, metrics)

    def record_epoch(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Set the record's ``epochs`` entry for ``epoch`` (replacing an earlier one); no metrics row."""
        self.log._append_epoch(self.id, {"epoch": int(epoch), **{k: float(v) for k, v in metrics.items()}})

    def finish(self, status: str = "completed", summary: Mapping[str, Any] | None = None,
               error: str | None = None, **fields: Any) -> None:
        """End the run: fsync its metrics, store the summary and the final status."""
        self._close()
        rec = self.log._raw(self.id)
        merged_summary = dict(rec.get("summary") or {})
        merged_summary.update(summary or {})
        fields = dict(fields)
        fields["summary"] = merged_summary
        ms = dict(rec.get("metrics_summary") or {})
        ms.update(self.metrics_summary())
        fields["metrics_summary"] = ms
        if error is not None:
            fields["error"] = error
        self.log._transition(self.id, status, fields)

    def __repr__(self) -> str:
        return f"Run(id={self.id!r})"


class RunLog:
    """The workbench's run log (a TinyDB file plus per-run folders).

    ``RunLog()`` opens ``$WORKBENCH_HOME/runs.json`` (see :mod:`workbench.paths`).
    Opening marks runs whose process is gone as ``crashed``.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, check_crashed: bool = True,
                 fsync: bool = True) -> None:
        self.path = Path(path).expanduser() if path is not None else paths.runlog_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = LockedDB(self.path, fsync=fsync)
        self._handles: dict[str, Run] = {}
        self.db.read()  # a corrupt or foreign file fails here, before anything writes
        if check_crashed:
            self.mark_crashed()

    # -- paths -------------------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        """Folder holding one sub-folder per run (next to the TinyDB file)."""
        return self.path.parent / (self.path.stem + "_runs" if self.path.name != "runs.json" else "runs")

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    # -- creating runs ------------------------------------------------------------
    def start(self, name: str, kind: str, config: Mapping[str, Any] | None = None, *,
              tags: Iterable[str] = (), status: str = "running", seed: int | None = None,
              dataset: Mapping[str, Any] | None = None, test_config: Mapping[str, Any] | None = None,
              parent: str | None = None, **extra: Any) -> Run:
        """Create a run (status ``running`` unless ``status="queued"``) and return its handle."""
        if status not in ("queued", "running"):
            raise RunLogError(f"a new run starts as 'queued' or 'running', not {status!r}")
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
            "host": socket.gethostname(), "pid": pid, "pid_start": _proc_start_time(pid),
            "env": environment(seed), "error": None,
            "dir": str(self.run_dir(run_id)), "artifacts": {},
            "history": [{"status": status, "at": now}],
        }
        record.update(extra)
        self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        with self.db.transaction() as db:
            db.table(RUNS_TABLE).insert(record)
        run = Run(self, run_id)
        self._handles[run_id] = run
        run._start_heartbeat()
        return run

    def handle(self, run_id: str) -> Run:
        """A handle to continue logging into an existing run (e.g. a test phase)."""
        rid = self.resolve(run_id)
        if rid not in self._handles:
            self._handles[rid] = Run(self, rid)
        return self._handles[rid]

    # -- reading -----------------------------------------------------------------
    def _table(self) -> dict[str, dict]:
        return self.db.read().get(RUNS_TABLE, {})

    def _raw(self, run_id: str) -> dict[str, Any]:
        for doc in self._table().values():
            if doc.get("id") == run_id:
                return doc
        raise RunLogError(f"no run with id {run_id!r} in {self.path}")

    def resolve(self, ref: str) -> str:
        """Resolve a run id, a unique id prefix or a run name (latest wins) to an id."""
        docs = list(self._table().values())
        ids = [d["id"] for d in docs if d.get("id") == ref]
        if ids:
            return ids[0]
        pref = [d["id"] for d in docs if str(d.get("id", "")).startswith(ref)]
        if len(pref) == 1:
            return pref[0]
        if len(pref) > 1:
            raise RunLogError(f"run id prefix {ref!r} is ambiguous: {', '.join(sorted(pref)[:5])}")
        named = sorted((d for d in docs if d.get("name") == ref), key=lambda d: d.get("created_at", ""))
        if named:
            return named[-1]["id"]
        raise RunLogError(f"no run with id or name {ref!r} in {self.path}")

    def get(self, run_id: str, metrics: bool = True) -> dict[str, Any]:
        """The full record of a run (id, id prefix or name), per-step ``metrics`` folded in."""
        rid = self.resolve(run_id)
        rec = self._raw(rid)
        if rid in self._handles:
            self._handles[rid].flush()
        if metrics:
            rec["metrics"] = self.read_metrics(rid)
        return rec

    def read_metrics(self, run_id: str) -> list[dict[str, Any]]:
        """All flushed metric rows of a run (a torn last line from a crash is skipped)."""
        return read_jsonl(self.run_dir(run_id) / "metrics.jsonl")

    def metrics_frame(self, run_id: str):
        """Per-run metrics as a pandas DataFrame: one row per logging call, NaN where absent."""
        import pandas as pd

        rid = self.resolve(run_id)
        rows = self.read_metrics(rid)
        df = pd.DataFrame(rows)
        if df.empty:
            return pd.DataFrame(columns=["step", "time"])
        return df.sort_values(["step", "time"], kind="stable").reset_index(drop=True)

    def runs(self) -> list[dict[str, Any]]:
        """All records (without per-step metrics), oldest first."""
        return sorted(self._table().values(), key=lambda d: (d.get("created_at", ""), d.get("id", "")))

    def find(self, name: str | None = None, kind: str | None = None, status: str | Iterable[str] | None = None,
             tag: str | None = None, **where: Any) -> list[dict[str, Any]]:
        """Records matching every given filter (``status`` may be a list), oldest first."""
        statuses = {status} if isinstance(status, str) else (set(status) if status is not None else None)
        out = []
        for d in self.runs():
            if name is not None and d.get("name") != name:
                continue
            if kind is not None and d.get("kind") != kind:
                continue
            if statuses is not None and d.get("status") not in statuses:
                continue
            if tag is not None and tag not in (d.get("tags") or []):
                continue
            if any(d.get(k) != v for k, v in where.items()):
                continue
            out.append(d)
        return out

    def to_frame(self, **filters: Any):
        """One row per run; ``config``, ``summary``, ``env`` and ``dataset`` flattened to dotted columns."""
        import pandas as pd

        recs = self.find(**filters) if filters else self.runs()
        flat = []
        for r in recs:
            row = {k: v for k, v in r.items() if k not in ("config", "summary", "env", "dataset",
                                                            "epochs", "history", "metrics_summary",
                                                            "test_config", "artifacts", "durations")}
            row["tags"] = ",".join(r.get("tags") or [])
            for group in ("config", "summary", "durations", "dataset", "env"):
                for k, v in _flatten(r.get(group) or {}, group).items():
                    row[k] = v
            for k, s in (r.get("metrics_summary") or {}).items():
                row[f"last.{k}"] = s.get("last")
            flat.append(row)
        df = pd.DataFrame(flat)
        return df

    # -- writing -----------------------------------------------------------------
    def _update(self, run_id: str, fields: Mapping[str, Any]) -> None:
        fields = json.loads(json.dumps(dict(fields), default=str, allow_nan=True))
        with self.db.transaction() as db:
            t = db.table(RUNS_TABLE)
            doc = t.get(Query().id == run_id)
            if doc is None:
                raise RunLogError(f"no run with id {run_id!r} in {self.path}")
            fields["updated_at"] = utcnow()
            t.update(fields, doc_ids=[doc.doc_id])

    def _append_epoch(self, run_id: str, entry: Mapping[str, Any]) -> None:
        with self.db.transaction() as db:
            t = db.table(RUNS_TABLE)
            doc = t.get(Query().id == run_id)
            if doc is None:
                raise RunLogError(f"no run with id {run_id!r} in {self.path}")
            epochs = [e for e in (doc.get("epochs") or []) if e.get("epoch") != entry["epoch"]]
            epochs.append(json.loads(json.dumps(dict(entry), allow_nan=True)))
            t.update({"epochs": epochs, "updated_at": utcnow()}, doc_ids=[doc.doc_id])

    def _transition(self, run_id: str, status: str, fields: Mapping[str, Any] | None = None) -> None:
        if status not in STATUSES:
            raise RunLogError(f"unknown status {status!r}; allowed: {', '.join(STATUSES)}")
        fields = json.loads(json.dumps(dict(fields or {}), default=str, allow_nan=True))
        with self.db.transaction() as db:
            t = db.table(RUNS_TABLE)
            doc = t.get(Query().id == run_id)
            if doc is None:
                raise RunLogError(f"no run with id {run_id!r} in {self.path}")
            old = doc["status"]
            if status != old and status not in TRANSITIONS[old]:
                allowed = ", ".join(TRANSITIONS[old]) or "none (final)"
                raise RunLogError(f"run {run_id}: cannot go from {old!r} to {status!r}; allowed: {allowed}")
            now = utcnow()
            upd = dict(fields)
            upd["status"] = status
            upd["updated_at"] = now
            if status in ACTIVE:
                upd["pid"] = os.getpid()
                upd["pid_start"] = _proc_start_time(os.getpid())
                upd["host"] = socket.gethostname()
            if status == "running" and not doc.get("started_at"):
                upd["started_at"] = now
            if status == "testing":
                upd["test_started_at"] = now
            durations = dict(doc.get("durations") or {})
            if old == "running" and status != "running" and doc.get("started_at"):
                durations["train_s"] = _seconds_between(doc["started_at"], now)
            if old == "testing" and status != "testing" and doc.get("test_started_at"):
                durations["test_s"] = _seconds_between(doc["test_started_at"], now)
            if status not in ACTIVE:
                upd["ended_at"] = now
                durations["total_s"] = _seconds_between(doc["created_at"], now)
            upd["durations"] = {**durations, **(upd.get("durations") or {})}
            upd["history"] = list(doc.get("history") or []) + [{"status": status, "at": now}]
            t.update(upd, doc_ids=[doc.doc_id])

    def set_status(self, run_id: str, status: str, **fields: Any) -> None:
        """Move run ``run_id`` to ``status`` (validated)."""
        self._transition(self.resolve(run_id), status, fields)

    def delete(self, run_id: str) -> None:
        """Remove a run's record and its folder."""
        import shutil

        rid = self.resolve(run_id)
        with self.db.transaction() as db:
            db.table(RUNS_TABLE).remove(Query().id == rid)
        shutil.rmtree(self.run_dir(rid), ignore_errors=True)
        self._handles.pop(rid, None)

    def mark_crashed(self, stale_after: float = STALE_AFTER_S) -> list[str]:
        """Mark active runs whose process is gone as ``crashed``; return their ids."""
        host = socket.gethostname()
        dead: list[tuple[str, str]] = []
        for d in self._table().values():
            if d.get("status") not in ACTIVE:
                continue
            if d.get("host") == host:
                if d.get("pid") is not None and not _pid_alive(int(d["pid"]), d.get("pid_start")):
                    dead.append((d["id"], f"process {d['pid']} on {host} is gone"))
            else:
                hb = self.run_dir(d["id"]) / "heartbeat"
                try:
                    age = time.time() - hb.stat().st_mtime
                except OSError:
                    age = math.inf
                if age > stale_after:
                    dead.append((d["id"], f"no heartbeat from {d.get('host')} for {age:.0f} s"))
        for rid, why in dead:
            try:
                self._transition(rid, "crashed", {"error": f"crashed: {why}"})
            except RunLogError:
                pass  # another process got there first
        return [rid for rid, _ in dead]

    def __repr__(self) -> str:
        return f"RunLog({str(self.path)!r})"


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of an append-only JSON-lines file; a missing file is empty, a torn last line is skipped."""
    rows: list[dict[str, Any]] = []
    try:
        with open(path, "r", encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break  # partially written by a writer that is mid-flush or died
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        pass
    return rows


def _seconds_between(a: str, b: str) -> float:
    return round((datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds(), 3)


def _flatten(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key))
        elif isinstance(v, list) and len(v) > 20:
            continue  # long series (per-episode accuracies) do not belong in a run table
        elif isinstance(v, list):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out
