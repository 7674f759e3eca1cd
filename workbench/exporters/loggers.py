"""Lightning loggers a command runs next to the run log's own (``"loggers": ["tensorboard", "csv", "mlflow"]``).

- ``tensorboard``: ``TensorBoardLogger`` writing to ``runs/<id>/tensorboard/`` (``tensorboard --logdir``);
- ``csv``: ``CSVLogger`` writing ``runs/<id>/csv/metrics.csv`` and ``hparams.yaml`` (a resumed run's
  next part in ``csv/resume-1/`` …: Lightning's CSV logger starts its file afresh);
- ``mlflow``: ``MLFlowLogger`` into ``$MLFLOW_TRACKING_URI`` when set, else a SQLite store
  ``$WORKBENCH_HOME/mlflow/mlflow.db`` with artifacts beside it (``mlflow ui --backend-store-uri
  sqlite:///…/mlflow.db``). The MLflow run id goes into the record (``loggers.mlflow``), so a
  resumed run keeps logging into the same MLflow run.

The run log stays the product's memory: these are copies for the tools a team already uses.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import paths

__all__ = ["extra_loggers", "mlflow_target", "logger_records", "EXPERIMENT"]

#: MLflow experiment workbench runs go to.
EXPERIMENT = "workbench"


def mlflow_target(dest: str | os.PathLike | None = None) -> tuple[str, str | None]:
    """``(tracking URI, artifact location)`` for an MLflow destination.

    A URI (``sqlite:///…``, ``file:…``, ``http://…``, ``postgresql://…``) is used as given (its
    server or store decides where artifacts go); a folder becomes a SQLite store ``DIR/mlflow.db``
    with artifacts in ``DIR/artifacts``; ``None`` is ``$MLFLOW_TRACKING_URI`` or
    ``$WORKBENCH_HOME/mlflow``.
    """
    if dest is None:
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env, None
        dest = paths.home() / "mlflow"
    text = str(dest)
    if "://" in text or text.startswith(("file:", "sqlite:", "databricks")):
        return text, None
    root = Path(text).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


def extra_loggers(names: Sequence[str], run_dir: Path, run_name: str, run_id: str,
                  previous: Mapping[str, Any] | None = None, part: int = 0) -> list[Any]:
    """The Lightning loggers ``names`` asks for, writing into ``run_dir`` (MLflow: its store).

    ``previous``: the record's ``loggers`` field of a resumed run (the MLflow run to continue);
    ``part``: how many times the run was resumed — the CSV logger rewrites its file, so each
    resume writes ``csv/resume-<part>/`` next to the first part's ``csv/``.
    """
    out: list[Any] = []
    for name in names:
        if name == "tensorboard":
            from pytorch_lightning.loggers import TensorBoardLogger

            out.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="",
                                         default_hp_metric=False))
        elif name == "csv":
            from pytorch_lightning.loggers import CSVLogger

            out.append(CSVLogger(save_dir=str(run_dir), name="csv", version=f"resume-{part}" if part else ""))
        elif name == "mlflow":
            from pytorch_lightning.loggers import MLFlowLogger

            uri, artifacts = mlflow_target(None)
            prev = (previous or {}).get("mlflow") or {}
            out.append(MLFlowLogger(experiment_name=EXPERIMENT, run_name=run_name, tracking_uri=uri,
                                    artifact_location=artifacts, tags={"workbench.run_id": run_id},
                                    run_id=prev.get("run_id") if prev.get("tracking_uri") == uri else None))
        else:  # the command language only lets the names above through
            raise ValueError(f"loggers: unknown logger {name!r}")
    return out


def logger_records(loggers: Sequence[Any], run_dir: Path, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Where each extra logger wrote (the record's ``loggers`` field; CSV: every part's folder)."""
    out: dict[str, Any] = {}
    for lg in loggers:
        kind = type(lg).__name__
        if kind == "TensorBoardLogger":
            out["tensorboard"] = {"dir": Path(lg.log_dir).relative_to(run_dir).as_posix()}
        elif kind == "CSVLogger":
            before = ((previous or {}).get("csv") or {}).get("dirs") or []
            here = Path(lg.log_dir).relative_to(run_dir).as_posix()
            out["csv"] = {"dirs": [*[d for d in before if d != here], here]}
        elif kind == "MLFlowLogger":
            out["mlflow"] = {"tracking_uri": mlflow_target(None)[0], "run_id": lg.run_id, "experiment": EXPERIMENT}
    return out
