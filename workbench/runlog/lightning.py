"""``WorkbenchLogger``: a Lightning ``Logger`` that writes into the run log.

Use it like any Lightning logger::

    trainer = pl.Trainer(logger=WorkbenchLogger("my-run", kind="baseline", config=cmd))

The run is created lazily on rank zero (so DDP's re-executed worker processes never
create extra runs); other ranks log nothing. Checkpoints land in the run's folder,
because Lightning puts them under ``save_dir/name/version`` = ``<home>/runs/<run id>``.
"""
from __future__ import annotations

import os
from argparse import Namespace
from typing import Any, Mapping

from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only

from .log import Run, RunLog


def _rank() -> int:
    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if os.environ.get(var):
            try:
                return int(os.environ[var])
            except ValueError:
                pass
    return int(getattr(rank_zero_only, "rank", 0) or 0)


class WorkbenchLogger(Logger):
    """Lightning logger writing hyperparameters, metrics and final status to a :class:`RunLog`.

    Args:
        name: run name (ignored when ``run`` is given).
        kind: run kind (``baseline``, ``maml``, ``protonet`` …).
        config: the training command stored verbatim in the record.
        log: the run log (default: ``RunLog()`` from ``WORKBENCH_HOME``).
        run: an existing run handle or id to log into (e.g. created by a background job).
        tags: tags for a new run.
        finalize_status: status on Lightning's ``finalize("success")``; ``"auto"`` moves
            ``running → trained`` and ``testing → completed``; ``None`` leaves it to the caller.
    """

    def __init__(self, name: str = "run", kind: str = "baseline", config: Mapping[str, Any] | None = None,
                 log: RunLog | None = None, run: Run | str | None = None, tags: tuple[str, ...] = (),
                 finalize_status: str | None = "auto", **start_kwargs: Any) -> None:
        super().__init__()
        self._name = name
        self._kind = kind
        self._config = dict(config or {})
        self._log = log
        self._run: Run | None = None
        self._run_ref = run
        self._tags = tuple(tags)
        self._finalize_status = finalize_status
        self._start_kwargs = start_kwargs
        self._epoch_rows: dict[int, dict[str, float]] = {}

    # -- Lightning's Logger API ----------------------------------------------------
    @property
    def name(self) -> str:
        return "runs"

    @property
    def version(self) -> str:
        return self.experiment.id if _rank() == 0 else "rank-nonzero"

    @property
    def save_dir(self) -> str:
        return str(self.runlog.runs_dir.parent)

    @property
    def log_dir(self) -> str:
        return str(self.runlog.run_dir(self.version))

    @property
    def runlog(self) -> RunLog:
        if self._log is None:
            self._log = RunLog()
        return self._log

    @property
    @rank_zero_experiment
    def experiment(self) -> Run:
        """The :class:`Run` handle (created on first use, rank zero only)."""
        if self._run is None:
            if isinstance(self._run_ref, Run):
                self._run = self._run_ref
            elif isinstance(self._run_ref, str):
                self._run = self.runlog.handle(self._run_ref)
            else:
                self._run = self.runlog.start(self._name, self._kind, self._config, tags=self._tags,
                                              **self._start_kwargs)
        return self._run

    @property
    def run_id(self) -> str | None:
        return self._run.id if self._run is not None else None

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        params = vars(params) if isinstance(params, Namespace) else dict(params or {})
        clean = {k: v if isinstance(v, (int, float, str, bool, type(None), list, dict)) else repr(v)
                 for k, v in params.items()}
        self.experiment.update(hparams=clean)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        epoch = int(epoch) if epoch is not None else None
        if not metrics:
            return
        self.experiment.log_metrics(metrics, step=step, epoch=epoch)
        # End-of-epoch metrics (validation, *_epoch) also go to the record's ``epochs`` list.
        per_epoch = {k: v for k, v in metrics.items() if k.startswith(("val", "test")) or k.endswith("_epoch")}
        if per_epoch and epoch is not None:
            row = self._epoch_rows.setdefault(epoch, {})
            row.update({k: float(v) for k, v in per_epoch.items()})
            self.experiment.record_epoch(epoch, row)

    @rank_zero_only
    def save(self) -> None:
        if self._run is not None:
            self._run.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._run is None:
            return
        self._run.flush(fsync=True)
        if self._finalize_status is None:
            return
        current = self._run.status
        if status == "failed":
            if current in ("running", "testing", "queued"):
                self._run.finish("failed", error="Lightning reported the run as failed")
            return
        if self._finalize_status != "auto":
            target = self._finalize_status
        elif current == "running":
            target = "trained"
        elif current == "testing":
            target = "completed"
        else:
            return
        if target != current:
            self._run.finish(target)
