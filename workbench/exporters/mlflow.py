"""Runs → MLflow: ``python -m workbench runs export --to mlflow DIR|URI``.

One MLflow run per workbench run, in experiment ``workbench`` (``--experiment``):

- **params**: every leaf of the stored command, flattened with dots (``optimizer.params.lr``);
  lists of scalars as JSON; values over MLflow's length limit are cut (the full command is an
  artifact);
- **metrics**: every per-step row of the record (its ``step`` and wall time), and the summary's
  numbers as ``summary.<key>``;
- **tags**: ``mlflow.runName``, ``workbench.run_id``, ``workbench.kind``, ``workbench.status``,
  ``workbench.tags``, the dataset fingerprint, the git commit, the parent run (``init_from``);
- **artifacts**: ``workbench/record.json``, ``workbench/command.json``, the run folder's JSON
  files (split, test report) and its checkpoints under ``checkpoints/`` (``checkpoints=False``: none);
- **status and times**: ``completed``/``trained`` → FINISHED, ``stopped`` → KILLED,
  ``failed``/``crashed`` → FAILED; start and end times from the record.

Exporting is idempotent: a run already in the experiment (tag ``workbench.run_id``) is skipped.
A folder becomes a SQLite store (``DIR/mlflow.db``, artifacts in ``DIR/artifacts``; MLflow's file
store is deprecated): ``mlflow ui --backend-store-uri sqlite:///DIR/mlflow.db``.
"""
from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

from .loggers import EXPERIMENT, mlflow_target

__all__ = ["to_mlflow", "flat_params", "MAX_PARAM_LENGTH"]

#: MLflow's limit on a param value's length (characters).
MAX_PARAM_LENGTH = 6000
_BATCH = 900  # MLflow takes at most 1,000 metrics per log_batch call
_STATUS = {"completed": "FINISHED", "trained": "FINISHED", "stopped": "KILLED", "failed": "FAILED",
           "crashed": "FAILED"}
_BAD_KEY = re.compile(r"[^\w./\- :]")


def _key(k: str) -> str:
    return _BAD_KEY.sub("_", k)[:250]


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A command as MLflow params: dotted keys, string values (``None`` → ``"null"``)."""
    out: dict[str, str] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flat_params(v, key + "."))
        elif isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v):
            for i, x in enumerate(v):
                out.update(flat_params(x, f"{key}.{i}."))
        else:
            text = v if isinstance(v, str) else json.dumps(v)
            out[_key(key)] = text if len(text) <= MAX_PARAM_LENGTH else text[:MAX_PARAM_LENGTH - 1] + "…"
    return out


def _ms(ts: str | None) -> int | None:
    return int(datetime.fromisoformat(ts).timestamp() * 1000) if ts else None


def _metrics(rec: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import Metric

    out = []
    last_step, last_ms = 0, _ms(rec.get("ended_at") or rec.get("created_at")) or 0
    for row in rec.get("metrics") or []:
        step, ms = int(row.get("step", 0)), int(float(row.get("time", 0)) * 1000)
        last_step, last_ms = max(last_step, step), max(last_ms, ms)
        for k, v in row.items():
            if k not in ("step", "time", "epoch") and isinstance(v, (int, float)):
                out.append(Metric(_key(k), float(v), ms, step))
    for k, v in (rec.get("summary") or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out.append(Metric(_key(f"summary.{k}"), float(v), last_ms, last_step))
    return out


def _tags(rec: Mapping[str, Any], exported: Mapping[str, str]) -> dict[str, str]:
    tags = {"mlflow.runName": str(rec.get("name") or rec["id"]), "workbench.run_id": rec["id"],
            "workbench.kind": str(rec.get("kind")), "workbench.status": str(rec.get("status")),
            "workbench.tags": ",".join(rec.get("tags") or [])}
    fp = (rec.get("dataset") or {}).get("fingerprint")
    if fp:
        tags["workbench.dataset.fingerprint"] = str(fp)
    commit = (rec.get("env") or {}).get("git_commit")
    if commit:
        tags["mlflow.source.git.commit"] = str(commit)
    parent = (rec.get("lineage") or {}).get("parent")
    if parent:
        tags["workbench.parent"] = parent
        if parent in exported:
            tags["workbench.parent_mlflow_run"] = exported[parent]
    if rec.get("error"):
        tags["mlflow.note.content"] = str(rec["error"])
    return tags


def _artifacts(client: Any, mlflow_id: str, rec: Mapping[str, Any], checkpoints: bool) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        body = {k: v for k, v in rec.items() if k != "metrics"}
        (Path(tmp) / "record.json").write_text(json.dumps(body, indent=1, default=str), encoding="utf-8")
        (Path(tmp) / "command.json").write_text(json.dumps(rec.get("config") or {}, indent=1), encoding="utf-8")
        client.log_artifacts(mlflow_id, tmp, artifact_path="workbench")
    run_dir = Path(rec.get("dir") or "")
    if not run_dir.is_dir():
        return
    base = run_dir.resolve()
    for p in sorted(base.glob("*.json")):
        client.log_artifact(mlflow_id, str(p))
    if checkpoints:
        for p in sorted((base / "checkpoints").glob("*.ckpt")):
            if p.resolve().is_relative_to(base):  # never follow a link out of the run folder
                client.log_artifact(mlflow_id, str(p), artifact_path="checkpoints")


def to_mlflow(records: Iterable[Mapping[str, Any]], dest: str | None = None, *, experiment: str = EXPERIMENT,
              checkpoints: bool = True) -> list[dict[str, Any]]:
    """Export full records (metrics folded in: ``RunLog.get``) to MLflow; one row per record.

    ``dest``: a folder (SQLite store inside), a tracking URI, or None (``$MLFLOW_TRACKING_URI``,
    else ``$WORKBENCH_HOME/mlflow``). Rows: ``{"run_id", "mlflow_run_id", "exported"}``
    (``exported`` False: it was already there).
    """
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    uri, artifacts = mlflow_target(dest)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    eid = exp.experiment_id if exp is not None else client.create_experiment(experiment, artifact_location=artifacts)
    out: list[dict[str, Any]] = []
    exported: dict[str, str] = {}
    for rec in records:
        found = client.search_runs([eid], filter_string=f"tags.`workbench.run_id` = '{rec['id']}'", max_results=1)
        if found:
            exported[rec["id"]] = found[0].info.run_id
            out.append({"run_id": rec["id"], "mlflow_run_id": found[0].info.run_id, "exported": False})
            continue
        run = client.create_run(eid, start_time=_ms(rec.get("started_at") or rec.get("created_at")),
                                tags=_tags(rec, exported))
        mid = run.info.run_id
        params = [Param(k, v) for k, v in flat_params(rec.get("config") or {}).items()]
        for i in range(0, len(params), 100):
            client.log_batch(mid, params=params[i:i + 100])
        metrics = _metrics(rec)
        for i in range(0, len(metrics), _BATCH):
            client.log_batch(mid, metrics=metrics[i:i + _BATCH])
        _artifacts(client, mid, rec, checkpoints)
        status = _STATUS.get(str(rec.get("status")))
        if status is not None:
            client.set_terminated(mid, status, end_time=_ms(rec.get("ended_at")))
        exported[rec["id"]] = mid
        out.append({"run_id": rec["id"], "mlflow_run_id": mid, "exported": True})
    return out
