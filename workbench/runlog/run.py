"""``Run``: the live handle on one run — buffered per-step metrics, heartbeat, status, finish.

Also :func:`transition`, the one way a run's status moves (``Run`` and ``RunLog`` both call it).
"""
from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
import warnings
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .env import proc_start_time, utcnow
from .errors import RunLogError, TransitionRefused
from .records import ACTIVE, STATUSES, TRANSITIONS, jsonable

if TYPE_CHECKING:
    from .log import RunLog
    from .store import Store

HEARTBEAT_EVERY_S = 5.0
#: Metric lines kept in memory while the store refuses writes (disk full); older ones are dropped.
MAX_BUFFERED_LINES = 200_000


class Run:
    """A live handle on one run: log metrics, move its status, finish it.

    ``heartbeat``: ``False`` makes a handle that never runs a heartbeat thread (the run's work
    happens in another process); ``None`` (default) beats while the run is active through this
    handle (after ``start(status="running")`` or ``set_status("running"/"testing")``).
    """

    def __init__(self, log: "RunLog", run_id: str, flush_every: float = 0.5, heartbeat: bool | None = None) -> None:
        self.log = log
        self.id = run_id
        self.dir = log.run_dir(run_id)
        self.flush_every = flush_every
        self._beats = heartbeat
        self._buf: list[str] = []
        self._lock = threading.Lock()
        self._writer: Any = None
        self._last_flush = time.monotonic()
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}
        self._min: dict[str, float] = {}
        self._max: dict[str, float] = {}
        self._max_step = -1
        self._stop = threading.Event()
        self._hb: threading.Thread | None = None
        self._write_error: str | None = None
        self._dropped = 0

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
                self._flush_quietly()

    def flush(self, fsync: bool = False) -> None:
        """Write buffered metrics to the store (visible to other readers); raises if the store refuses."""
        with self._lock:
            self._flush_locked(fsync)

    def _flush_locked(self, fsync: bool = False) -> None:
        self._last_flush = time.monotonic()
        if self._buf:
            if self._writer is None:
                self._writer = self.log.store.metrics_writer(self.id)
            try:
                self._writer.append(self._buf)
            except Exception as exc:
                self._write_error = f"{type(exc).__name__}: {exc}"
                if len(self._buf) > MAX_BUFFERED_LINES:
                    extra = len(self._buf) - MAX_BUFFERED_LINES
                    self._dropped += extra
                    del self._buf[:extra]
                raise RunLogError(f"run {self.id}: could not write metrics ({self._write_error})") from exc
            self._buf = []
            if not self._dropped:
                self._write_error = None
        if fsync and self._writer is not None:
            self._writer.sync()

    def _flush_quietly(self) -> None:
        """Flush from the logging call or the heartbeat: a failing store must not kill training;
        the reason is kept, warned about once and recorded by ``finish``."""
        first = self._write_error is None
        try:
            self._flush_locked()
        except RunLogError as exc:
            if first:
                warnings.warn(str(exc), RuntimeWarning, stacklevel=3)

    def metrics_summary(self) -> dict[str, dict[str, float]]:
        """Last/min/max/count per metric key logged by this handle."""
        return {k: {"last": self._last[k], "min": self._min.get(k, math.nan),
                    "max": self._max.get(k, math.nan), "count": self._count[k]} for k in self._last}

    # -- heartbeat ---------------------------------------------------------------
    @property
    def beating(self) -> bool:
        """True while this handle runs a heartbeat thread."""
        return self._hb is not None and self._hb.is_alive()

    def start_heartbeat(self) -> None:
        """Beat from a thread while the run is active (``RunLog.start`` and ``set_status`` call it)."""
        if self._beats is False or self.beating:
            return
        self._stop.clear()  # no beat here: writing the active status was one
        self._hb = threading.Thread(target=self._heartbeat_loop, name=f"runlog-heartbeat-{self.id}", daemon=True)
        self._hb.start()

    def _beat(self) -> None:
        try:
            self.log.store.beat(self.id)
        except Exception:  # a missed beat is retried; it must never kill training
            pass

    def _heartbeat_loop(self) -> None:
        n = 0
        while not self._stop.wait(self.flush_every):
            with self._lock:
                self._flush_quietly()
            n += 1
            if n * self.flush_every >= HEARTBEAT_EVERY_S:
                n = 0
                self._beat()

    def stop_heartbeat(self, wait: bool = True) -> None:
        """Stop the heartbeat thread; ``wait=False`` only tells it to stop (``RunLog.close`` does not wait)."""
        self._stop.set()
        if not wait:
            return
        if self._hb is not None and self._hb is not threading.current_thread():
            self._hb.join(timeout=5)
        self._hb = None

    def _close(self) -> None:
        self.stop_heartbeat()
        with self._lock:
            try:
                self._flush_locked(fsync=True)
            finally:
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None

    # -- record ------------------------------------------------------------------
    @property
    def record(self) -> dict[str, Any]:
        """The run's current record, metrics folded in."""
        self.flush()
        return self.log.get(self.id)

    @property
    def status(self) -> str:
        return self.log.get(self.id, metrics=False)["status"]

    def update(self, **fields: Any) -> None:
        """Set record fields (not status: use ``set_status``)."""
        if "status" in fields:
            raise RunLogError("use set_status() to change a run's status")
        if "id" in fields:
            raise RunLogError(f"run {self.id}: id cannot be changed")
        fields = jsonable(fields)
        self.log.store.modify(self.id, lambda doc: {**doc, **fields, "updated_at": utcnow()})

    def set_status(self, status: str, **fields: Any) -> None:
        """Move the run to ``status`` (validated against ``TRANSITIONS``)."""
        transition(self.log.store, self.id, status, fields)
        if status in ACTIVE:
            self.start_heartbeat()

    def log_epoch(self, epoch: int, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record end-of-epoch metrics: in the metrics rows and in the record's ``epochs`` list."""
        self.log_metrics(metrics, step=self._max_step if step is None else step, epoch=epoch)
        self.record_epoch(epoch, metrics)

    def record_epoch(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Set the record's ``epochs`` entry for ``epoch`` (replacing an earlier one); no metrics row."""
        entry = jsonable({"epoch": int(epoch), **{k: float(v) for k, v in metrics.items()}})

        def add(doc: dict[str, Any]) -> dict[str, Any]:
            epochs = [e for e in (doc.get("epochs") or []) if e.get("epoch") != entry["epoch"]]
            return {**doc, "epochs": epochs + [entry], "updated_at": utcnow()}

        self.log.store.modify(self.id, add)

    def finish(self, status: str = "completed", summary: Mapping[str, Any] | None = None,
               error: str | None = None, **fields: Any) -> None:
        """End the run: its last metric rows, the summary and the final status, in one transaction.

        If the store refuses metric rows (disk full), the status is still written, with
        ``metrics truncated: <reason>`` in ``error``.
        """
        self.stop_heartbeat()
        with self._lock:
            lines, self._buf = self._buf, []
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        mine = self.metrics_summary()

        def merge(note: str | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
            def fn(doc: dict[str, Any]) -> dict[str, Any]:
                out = dict(fields)
                out["summary"] = {**(doc.get("summary") or {}), **(summary or {})}
                out["metrics_summary"] = {**(doc.get("metrics_summary") or {}), **mine}
                err = "; ".join(e for e in (error, note) if e)
                if err:
                    out["error"] = err
                return out
            return fn

        def truncated(reason: str | None, lost: int) -> str | None:
            return None if reason is None else f"metrics truncated: {reason} ({lost} rows not stored)"

        try:
            earlier = self._write_error if self._dropped else None  # rows kept in memory get stored now
            transition(self.log.store, self.id, status, merge=merge(truncated(earlier, self._dropped)), metrics=lines)
        except TransitionRefused:
            if lines:  # keep the rows even though the status change is refused
                w = self.log.store.metrics_writer(self.id)
                try:
                    w.append(lines)
                except Exception:
                    pass
                finally:
                    w.close()
            raise
        except RunLogError as exc:
            if not lines:
                raise
            # the store took no rows: record the outcome without them, and why
            reason = self._write_error or str(exc).split(": ", 1)[-1]
            transition(self.log.store, self.id, status, merge=merge(truncated(reason, len(lines) + self._dropped)))

    def __repr__(self) -> str:
        return f"Run(id={self.id!r})"


def transition(store: "Store", run_id: str, status: str, fields: Mapping[str, Any] | None = None,
               merge: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
               metrics: list[str] | None = None) -> None:
    """Move run ``run_id`` (an exact id) to ``status``, validated against ``TRANSITIONS``, in one store write.

    ``merge(current record)``: fields computed from the record inside that write (``finish``'s
    summaries); ``metrics``: metric lines stored with it (a run's last rows land with its status).
    """
    if status not in STATUSES:
        raise TransitionRefused(f"unknown status {status!r}; allowed: {', '.join(STATUSES)}")
    base = jsonable(fields or {})
    store.modify(run_id, lambda doc: _moved(run_id, doc, status, {
        **base, **(jsonable(merge(doc)) if merge else {})}), metrics=metrics)


def _moved(run_id: str, doc: dict[str, Any], status: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The record after a validated status transition (called inside the store's transaction)."""
    old = doc["status"]
    if status != old and status not in TRANSITIONS[old]:
        allowed = ", ".join(TRANSITIONS[old]) or "none (final)"
        raise TransitionRefused(f"run {run_id}: cannot go from {old!r} to {status!r}; allowed: {allowed}")
    now = utcnow()
    upd = {**doc, **fields, "status": status, "updated_at": now}
    if status in ACTIVE:
        upd.update(pid=os.getpid(), pid_start=proc_start_time(os.getpid()), host=socket.gethostname())
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
    upd["durations"] = {**durations, **(fields.get("durations") or {})}
    upd["history"] = list(doc.get("history") or []) + [{"status": status, "at": now}]
    return upd


def _seconds_between(a: str, b: str) -> float:
    try:
        return round((datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds(), 3)
    except (TypeError, ValueError):
        return math.nan
