"""Sweeps that feed the run log: variants of a training command, resumable and stoppable.

    from workbench.meta import sweep
    s = sweep(base, {"optimizer.params.lr": [1e-3, 1e-2], "batch_size": [16, 64]}, data=folder)
    s.wait(); s.status()                  # one row per variant: params, run id, status, score

- ``space`` maps dotted command keys to a list of values (grid or random choice), or for
  ``strategy="random"`` to ``{"low": a, "high": b, "log": bool, "int": bool}``.
- Every variant is a run tagged ``sweep:<name>`` and ``variant:<hash>``, where the hash is
  taken over the variant's command as given (base + its parameters) and data folder. A restarted sweep (same name,
  same variants) skips every variant that already has a finished run (``trained`` or
  ``completed``) — so a sweep interrupted by a crash, a kernel restart or ``stop()`` resumes
  where it stopped; a variant whose run was stopped or crashed continues from its last
  checkpoint in the same run (``workbench.jobs.resume``) rather than training from scratch.
- Runs go one at a time by default (``pool=1``): the machines this targets have 2 cores.
- The runner is ``workbench.jobs.start_training`` unless you inject one with the same
  signature (``runner(command, data, name=…, tags=…, log=…)`` returning a handle with
  ``run_id``, ``wait()`` and ``stop()``). With ``test=True`` each trained variant is then
  tested on its held-out split (``workbench.jobs.start_test``, or an injected ``tester``)
  so its score is a test accuracy; a resumed sweep tests trained-but-untested variants
  without training them again.
"""
from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..runlog import RunLog
from .common import flatten, run_score, stable_hash, unflatten_set
from .variants import STRATEGIES, Variant, expand_space, short

__all__ = ["Sweep", "Variant", "sweep", "expand_space", "STRATEGIES"]

#: Statuses that count as "this variant is done" when a sweep resumes.
DONE = ("trained", "completed")
#: Statuses of a variant's run that continues from its checkpoint (``workbench.training.RESUMABLE``).
RESUMABLE = ("stopped", "crashed")


def _command_dict(base: Any) -> dict[str, Any]:
    if hasattr(base, "to_dict"):
        return base.to_dict()
    if isinstance(base, Mapping):
        return copy.deepcopy(dict(base))
    raise TypeError(f"base_command: expected a training command or a dict, got {type(base).__name__}")


def _check_command(cmd: dict[str, Any]) -> dict[str, Any]:
    """Parse through the command language (any kind): bad keys and types fail before anything runs."""
    from ..commands import parse

    return parse(cmd).to_dict()


class Sweep:
    """A set of command variants run into the run log; see the module docstring.

    Args:
        base_command: a ``TrainingCommand`` or its dict.
        space: dotted key → values (see :func:`expand_space`).
        n: how many variants (random: required; grid: a seeded subset when smaller).
        strategy: ``"grid"`` or ``"random"``.
        data: the dataset folder every variant trains on (else the command's ``data``).
        name: the sweep's name (default: derived from everything above, so re-creating the
            same sweep finds its earlier runs).
        seed: seed for random draws / grid subsets.
        log: the run log.
        runner: ``workbench.jobs.start_training`` or a stand-in with its signature.
        pool: variants run at once.
        tags: extra tags for every run.
        retry_failed: re-run variants whose earlier run failed (default: skip them too).
        describe_task: store the dataset's meta-features in each run (for recommendations).
        test: test every trained variant on its held-out split (score = test accuracy).
        tester: ``workbench.jobs.start_test`` or a stand-in (``tester(run_id, log=…)`` → handle).
        resume: a variant whose run was stopped or crashed continues from its checkpoint
            (``workbench.jobs.resume``, or an injected ``resumer(run_id, log=…)`` → handle)
            instead of training again; without a checkpoint it trains afresh.
    """

    def __init__(self, base_command: Any, space: Mapping[str, Any], n: int | None = None,
                 strategy: str = "grid", *, data: str | None = None, name: str | None = None, seed: int = 0,
                 log: RunLog | None = None, runner: Callable[..., Any] | None = None, pool: int = 1,
                 tags: Iterable[str] = (), retry_failed: bool = False, describe_task: bool = True,
                 test: bool = False, tester: Callable[..., Any] | None = None, resume: bool = True,
                 resumer: Callable[..., Any] | None = None) -> None:
        base = _command_dict(base_command)
        full = _check_command(base)  # every field, defaults included: a space may vary any of them
        flat = flatten(full)
        for k in space:
            top = k.split(".")[0]
            if top not in full and k not in flat:
                from ..registry import close_matches

                near = close_matches(top, list(full))
                raise ValueError(f"space key {k!r}: {top!r} is not a field of the command"
                                 + (f"; did you mean {near[0]!r}?" if near else "")
                                 + f" (fields: {', '.join(sorted(full))})")
        if pool < 1:
            raise ValueError(f"pool = {pool!r}: expected ≥ 1")
        self.base = base
        self.space = dict(space)
        self.strategy = strategy
        self.n = n
        self.seed = seed
        self.data = str(data) if data is not None else base.get("data")
        self.log = log or RunLog()
        self.runner = runner
        self.pool = pool
        self.extra_tags = tuple(tags)
        self.retry_failed = retry_failed
        self.describe_task = describe_task
        self.test = test
        self.tester = tester
        self.resume = resume
        self.resumer = resumer
        ident = {"base": base, "space": self.space, "n": n, "strategy": strategy, "seed": seed, "data": self.data}
        self.name = name or f"sweep-{stable_hash(ident, 8)}"
        self.tag = f"sweep:{self.name}"
        self.variants: list[Variant] = []
        for i, params in enumerate(expand_space(self.space, strategy, n, seed)):
            given, cmd = copy.deepcopy(base), copy.deepcopy(full)
            for k, v in params.items():
                unflatten_set(given, k, copy.deepcopy(v))
                unflatten_set(cmd, k, copy.deepcopy(v))
            if self.data is not None:
                given["data"] = cmd["data"] = self.data
            # identity = what was asked for, not the normalised command: a field added to the
            # command language later must not make a resumed sweep re-run everything
            ident_hash = stable_hash({"command": given, "data": self.data})
            try:
                cmd = _check_command(cmd)
            except ValueError as exc:
                raise ValueError(f"sweep variant {i} {params}: {exc}") from None
            self.variants.append(Variant(i, params, cmd, ident_hash))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._handles: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._queue: list[Variant] = []
        self._task_info: dict | None = None
        self.errors: list[str] = []
        self.refresh()

    # -- state from the run log -----------------------------------------------------
    def refresh(self) -> None:
        """Match variants with their runs in the log (latest run per variant wins)."""
        by_hash: dict[str, dict] = {}
        for rec in self.log.find(tag=self.tag):
            for t in rec.get("tags") or []:
                if str(t).startswith("variant:"):
                    h = str(t)[8:]
                    old = by_hash.get(h)
                    # a finished run beats a newer unfinished one
                    if old is None or (rec["status"] in DONE) >= (old["status"] in DONE):
                        by_hash[h] = rec
        for v in self.variants:
            rec = by_hash.get(v.hash)
            if rec is not None and v.status not in ("starting",):
                v.run_id = rec["id"]
                v.status = rec["status"]
                v.error = rec.get("error")

    def _is_done(self, v: Variant) -> bool:
        if v.status == "failed" and not self.retry_failed:
            return True
        return v.status == "completed" if self.test else v.status in DONE

    def pending(self) -> list[Variant]:
        """Variants with no finished run yet (what a (re)start will run)."""
        self.refresh()
        return [v for v in self.variants if not self._is_done(v)]

    # -- running --------------------------------------------------------------------
    def _get_runner(self) -> Callable[..., Any]:
        if self.runner is not None:
            return self.runner
        try:
            from ..jobs import start_training  # type: ignore[attr-defined]
        except ImportError as exc:
            raise RuntimeError(f"sweep: no runner given and workbench.jobs is unavailable ({exc})") from None
        return start_training

    def _task(self) -> dict | None:
        if not self.describe_task or not self.data or not Path(self.data).is_dir():
            return None
        if self._task_info is None:
            from .features import task_features

            try:
                f = task_features(self.data)
            except (OSError, ValueError):
                return None
            self._task_info = {"path": str(Path(self.data).expanduser().resolve()), "name": Path(self.data).name,
                               "fingerprint": f["fingerprint"], "features": f}
        return self._task_info

    def _test_one(self, v: Variant) -> None:
        tester = self.tester
        if tester is None:
            from ..jobs import start_test  # type: ignore[attr-defined]

            tester = start_test
        try:
            h = tester(v.run_id, log=self.log)
            with self._lock:
                self._handles[v.index] = h
            h.wait()
        except Exception as exc:  # an untestable run stays "trained"; the sweep goes on
            with self._lock:
                self.errors.append(f"variant {v.index} test: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._handles.pop(v.index, None)
                try:
                    rec = self.log.get(v.run_id, metrics=False)
                    v.status, v.error = rec["status"], rec.get("error")
                except Exception:
                    pass

    def _run_one(self, v: Variant) -> None:
        if v.status == "trained" and v.run_id and self.test:
            self._test_one(v)  # resumed: trained before, test only
            return
        handle = self._resumed(v)
        if handle is None:
            runner = self._get_runner()
            tags = sorted({self.tag, f"variant:{v.hash}", "sweep", *self.extra_tags})
            name = f"{self.name}/{v.index:03d} {v.label()}"
            with self._lock:
                v.status = "starting"
            try:
                handle = runner(copy.deepcopy(v.command), self.data, name=name, tags=tags, log=self.log)
            except Exception as exc:  # a variant that cannot start must not kill the sweep
                with self._lock:
                    v.status, v.error = "failed", f"{type(exc).__name__}: {exc}"
                    self.errors.append(f"variant {v.index}: {v.error}")
                return
        with self._lock:
            self._handles[v.index] = handle
            v.run_id = getattr(handle, "run_id", None)
            v.status = "running"
            stop_now = self._stop.is_set()  # stop() came while the runner was starting this one
        if stop_now:
            try:
                handle.stop()
            except Exception:
                pass
        if v.run_id:
            info = {"sweep": {"name": self.name, "variant": v.hash, "index": v.index, "params": v.params}}
            task = self._task()
            if task is not None:
                info["task"] = task
            try:
                self.log.handle(v.run_id).update(**info)
            except Exception:
                pass  # the record may be owned by a process that already ended it; tags suffice
        try:
            handle.wait()
        except Exception as exc:
            with self._lock:
                self.errors.append(f"variant {v.index}: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._handles.pop(v.index, None)
                if v.run_id:
                    try:
                        rec = self.log.get(v.run_id, metrics=False)
                        v.status, v.error = rec["status"], rec.get("error")
                    except Exception:
                        pass
        if self.test and v.status == "trained" and not self._stop.is_set():
            self._test_one(v)

    def _resumed(self, v: Variant) -> Any:
        """A stopped or crashed variant continues from its checkpoint (None: it trains afresh)."""
        if not self.resume or v.status not in RESUMABLE or not v.run_id:
            return None
        resumer = self.resumer
        if resumer is None:
            from ..jobs import resume as resumer  # type: ignore[assignment]
        try:
            return resumer(v.run_id, log=self.log)
        except Exception as exc:  # no checkpoint, data changed …: train the variant again
            with self._lock:
                self.errors.append(f"variant {v.index} resume: {type(exc).__name__}: {exc}; training it again")
            return None

    def _worker(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if not self._queue:
                    return
                v = self._queue.pop(0)
            self._run_one(v)

    def start(self) -> "Sweep":
        """Run the pending variants in background threads; returns at once."""
        if self.running:
            raise RuntimeError(f"sweep {self.name!r} is already running")
        self._stop.clear()
        self._queue = self.pending()
        self._threads = [threading.Thread(target=self._worker, name=f"{self.name}-{i}", daemon=True)
                         for i in range(min(self.pool, max(1, len(self._queue))))]
        for t in self._threads:
            t.start()
        return self

    def run(self) -> "Sweep":
        """Run the pending variants here, blocking until done (or ``stop()`` from another thread)."""
        self.start()
        return self.wait()

    def wait(self, timeout: float | None = None) -> "Sweep":
        """Block until the workers are done (or ``timeout`` seconds passed)."""
        for t in self._threads:
            t.join(timeout)
        self.refresh()
        return self

    def stop(self, wait: bool = True) -> "Sweep":
        """Stop: no new variant starts; the running ones are asked to stop (they end ``stopped``)."""
        self._stop.set()
        with self._lock:
            self._queue.clear()
            handles = list(self._handles.values())
        for h in handles:
            try:
                h.stop()
            except Exception as exc:
                self.errors.append(f"stop: {type(exc).__name__}: {exc}")
        if wait:
            self.wait()
        return self

    @property
    def running(self) -> bool:
        """True while a worker thread is alive."""
        return any(t.is_alive() for t in self._threads)

    @property
    def done(self) -> bool:
        """True when every variant has a finished (or, unless retried, failed) run."""
        return not self.running and not self.pending()

    # -- results --------------------------------------------------------------------
    def status(self):
        """One row per variant: index, params, hash, run id, status, score."""
        import pandas as pd

        self.refresh()
        rows = []
        for v in self.variants:
            score = None
            if v.run_id and v.status in DONE:
                try:
                    score = run_score(self.log.get(v.run_id, metrics=False))
                except Exception:
                    score = None
            rows.append({"variant": v.index, **{k: short(x) if isinstance(x, (dict, list)) else x
                                                for k, x in v.params.items()},
                         "hash": v.hash, "run": v.run_id, "status": v.status, "score": score})
        return pd.DataFrame(rows).set_index("variant")

    def runs(self, finished: bool = True) -> list[dict]:
        """Records of this sweep's runs (only finished ones unless ``finished=False``)."""
        self.refresh()
        ids = [v.run_id for v in self.variants if v.run_id and (not finished or v.status in DONE)]
        return [self.log.get(i) for i in ids]

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for v in self.variants:
            counts[v.status] = counts.get(v.status, 0) + 1
        return f"Sweep({self.name!r}, {len(self.variants)} variants: {counts})"


def sweep(base_command: Any, space: Mapping[str, Any], n: int | None = None, strategy: str = "grid", *,
          background: bool = True, **kwargs: Any) -> Sweep:
    """Create a :class:`Sweep` and start it (in the background unless ``background=False``)."""
    s = Sweep(base_command, space, n, strategy, **kwargs)
    return s.start() if background else s.run()
