"""Warm start: recommend a training command for a new dataset from the most similar past tasks.

The auto-sklearn idea on the run log:

1. describe every past task (a dataset some finished runs trained on) and the new one
   with meta-features (:func:`workbench.meta.features.task_features`);
2. take the ``k`` nearest past tasks (standardised scalar meta-features + the fixed
   backbone's mean-embedding direction);
3. score each training recipe (a config without its data path and seed, see
   :func:`workbench.meta.common.config_key`) on each neighbour by its z-score among that
   task's runs, average those z-scores weighted by similarity (a recipe not tried on a
   neighbour counts as average there: evidence from more neighbours wins), and return the
   best recipe's command with the evidence: which tasks, how far, their scores.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..runlog import RunLog
from .common import as_records, config_key, hparams, run_score
from .features import SCALAR_KEYS, task_features

__all__ = ["Task", "TaskIndex", "Recommendation", "recommend", "task_key", "task_path", "task_distances",
           "nearest_tasks", "starting_model", "architecture"]

#: Statuses whose score can be trusted.
FINISHED = ("trained", "completed")
#: Record/config fields that may hold the dataset folder, tried in order.
PATH_FIELDS = ("path", "root", "data_dir", "dir", "data")


def task_path(rec: Mapping[str, Any]) -> str | None:
    """The dataset folder a run trained on, from its ``task``/``dataset`` record fields or config."""
    for src in (rec.get("task") or {}, rec.get("dataset") or {}):
        for k in PATH_FIELDS:
            v = src.get(k) if isinstance(src, Mapping) else None
            if isinstance(v, str) and v:
                return v
    cfg = rec.get("config") or {}
    for k in PATH_FIELDS:
        v = cfg.get(k)
        if isinstance(v, str) and v:
            return v
        if isinstance(v, Mapping):
            for kk in PATH_FIELDS:
                if isinstance(v.get(kk), str) and v.get(kk):
                    return v[kk]
    return None


def task_key(rec: Mapping[str, Any]) -> str | None:
    """Which task a run belongs to: its dataset folder (resolved), else its dataset name or fingerprint.

    The folder comes first so that runs started from a sweep, a job or the CLI on the same
    folder count as one task whatever else they recorded.
    """
    p = task_path(rec)
    if p:
        return os.path.normpath(str(Path(p).expanduser().resolve()))
    for src in (rec.get("task") or {}, rec.get("dataset") or {}):
        if isinstance(src, Mapping):
            for k in ("fingerprint", "sha256", "name"):
                if src.get(k):
                    return str(src[k])
    return None


@dataclass
class Task:
    """A past task: its meta-features and the scored runs on it."""

    key: str
    path: str | None
    features: dict
    runs: list[dict] = field(default_factory=list)  # {"id", "config_key", "score", "config", "name"}

    def best(self) -> dict:
        """The best run on this task."""
        return max(self.runs, key=lambda r: r["score"])

    def recipe_z(self) -> dict[str, float]:
        """Per recipe: mean z-score of its runs among this task's runs."""
        scores = [r["score"] for r in self.runs]
        mu = sum(scores) / len(scores)
        sd = math.sqrt(sum((s - mu) ** 2 for s in scores) / len(scores)) or 1.0
        out: dict[str, list[float]] = {}
        for r in self.runs:
            out.setdefault(r["config_key"], []).append((r["score"] - mu) / sd)
        return {k: sum(v) / len(v) for k, v in out.items()}


def _task_name(key: str, path: str | None) -> str:
    return Path(path).name if path else key


class TaskIndex:
    """Past tasks from the run log (finished, scored runs grouped by dataset), with meta-features.

    Args:
        runs: records/ids to index (default: every finished run in ``log``).
        log: the run log.
        kind: only runs of this kind (e.g. ``"baseline"``).
        features: precomputed meta-features per task key (else read from the runs'
            ``task.features`` field, else computed from the dataset folder).
    """

    def __init__(self, runs: Iterable[Any] | None = None, log: RunLog | None = None, kind: str | None = None,
                 features: Mapping[str, Mapping[str, Any]] | None = None, metric: str | None = None) -> None:
        if runs is None:
            log = log or RunLog()
            runs = log.find(status=list(FINISHED), kind=kind)
        recs = as_records(runs, log, metrics=False)
        self.tasks: dict[str, Task] = {}
        self.skipped: dict[str, str] = {}
        for rec in recs:
            if rec.get("status") not in FINISHED or (kind and rec.get("kind") != kind):
                continue
            score = run_score(rec, metric)
            key = task_key(rec)
            if score is None or key is None:
                continue
            t = self.tasks.get(key)
            if t is None:
                feats = (features or {}).get(key) or (rec.get("task") or {}).get("features")
                path = task_path(rec)
                if feats is None:
                    if not path or not Path(path).is_dir():
                        self.skipped[key] = f"dataset folder {path!r} not found and no stored meta-features"
                        continue
                    try:
                        feats = task_features(path)
                    except (OSError, ValueError) as exc:
                        self.skipped[key] = str(exc)
                        continue
                t = self.tasks[key] = Task(key, path, dict(feats))
            t.runs.append({"id": rec["id"], "name": rec.get("name"), "config_key": config_key(rec.get("config") or {}),
                           "score": score, "config": rec.get("config") or {}, "kind": rec.get("kind"),
                           "checkpoint": _checkpoint_of(rec)})

    def __len__(self) -> int:
        return len(self.tasks)

    def without(self, *keys: str) -> "TaskIndex":
        """A copy with some tasks left out (leave-one-task-out evaluation)."""
        new = TaskIndex.__new__(TaskIndex)
        new.tasks = {k: v for k, v in self.tasks.items() if k not in keys}
        new.skipped = dict(self.skipped)
        return new

    def find_path(self, path: str | os.PathLike) -> str | None:
        """Key of the task stored for a dataset folder (``None`` if it is new)."""
        p = os.path.normpath(str(Path(path).expanduser().resolve()))
        for k, t in self.tasks.items():
            if t.path and os.path.normpath(str(Path(t.path).expanduser().resolve())) == p:
                return k
        return None


def feature_vectors(feats: Sequence[Mapping[str, Any]]):
    """Task meta-features as standardised rows (scalars z-scored over ``feats``, plus the embedding)."""
    import numpy as np

    S = np.array([[float(f["scalars"].get(k, 0.0)) for k in SCALAR_KEYS] for f in feats])
    mu = S.mean(0)
    sd = S.std(0)
    sd[sd < 1e-9] = 1.0  # a feature equal on every task tells nothing apart
    Z = (S - mu) / sd / math.sqrt(len(SCALAR_KEYS))
    dims = {len(f.get("embedding") or []) for f in feats}
    if len(dims) == 1 and dims != {0}:
        E = np.array([f["embedding"] for f in feats], dtype=float)
        E = E / (np.linalg.norm(E, axis=1, keepdims=True) + 1e-12)
        # cosine distances between mean-embedding directions are small; scale them so the
        # embedding block weighs about as much as all the scalars together
        spread = np.linalg.norm(E - E.mean(0), axis=1).mean() or 1.0
        return np.hstack([Z, E / spread])
    return Z


def task_distances(new: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]) -> list[float]:
    """Distances from a task's meta-features to each of ``tasks`` (standardised over them all)."""
    import numpy as np

    V = feature_vectors([new, *tasks])
    return [float(d) for d in np.linalg.norm(V[1:] - V[0], axis=1)]


def nearest_tasks(new: Mapping[str, Any], index: TaskIndex, k: int = 3) -> list[tuple[Task, float]]:
    """The ``k`` past tasks nearest to meta-features ``new``, nearest first (scikit-learn ``NearestNeighbors``)."""
    from sklearn.neighbors import NearestNeighbors

    if len(index) == 0:
        raise ValueError("no past tasks with scored, finished runs in the run log "
                         f"(skipped: {index.skipped or 'none'}); run a sweep first")
    tasks = list(index.tasks.values())
    V = feature_vectors([new, *[t.features for t in tasks]])
    nn = NearestNeighbors(n_neighbors=min(max(1, k), len(tasks)), algorithm="brute").fit(V[1:])
    dist, idx = nn.kneighbors(V[:1])
    return [(tasks[int(i)], float(d)) for d, i in zip(dist[0], idx[0])]


def _checkpoint_of(rec: Mapping[str, Any]) -> str | None:
    """The run's checkpoint file when it exists (a run a new one could start from)."""
    rel = (rec.get("artifacts") or {}).get("checkpoint")
    if not rel or not rec.get("dir"):
        return None
    base = Path(rec["dir"]).resolve()
    p = (base / rel).resolve()
    return str(p) if p.is_relative_to(base) and p.is_file() else None


def architecture(config: Mapping[str, Any]) -> dict[str, Any]:
    """What decides whether one run's weights fit another's model: the network and its input.

    Few-shot kinds always use Conv-4 (``model.params.hidden``), as does a baseline with the
    ``conv4`` preset, so the two initialise each other.
    """
    from ..commands import parse

    cmd = parse(config)
    model = cmd.model.to_dict()
    if model.get("preset") == "conv4":
        model = {"preset": "conv4", "params": {"hidden": (model.get("params") or {}).get("hidden", 64)}}
    size = getattr(cmd, "image_hw", None) or (cmd.image_size, cmd.image_size)
    return {"model": model, "channels": cmd.channels, "image_size": list(size)}


def starting_model(near: Sequence[tuple["Task", float]], command: Mapping[str, Any],
                   n_labels: int | None = None) -> dict[str, Any] | None:
    """The most related past run whose network fits ``command``, with the evidence (or None).

    Candidates are the runs with a checkpoint on the nearest tasks, nearest task first, best
    score first; a run fits when its network and input (:func:`architecture`) are the command's.
    """
    try:
        want = architecture(command)
    except ValueError:
        return None
    for task, dist in near:
        for r in sorted(task.runs, key=lambda r: -r["score"]):
            if not r.get("checkpoint"):
                continue
            try:
                if architecture(r["config"]) != want:
                    continue
            except ValueError:
                continue
            n_parent = task.features.get("n_classes")
            head = ("the head is re-initialised" if n_labels is None or n_parent != n_labels
                    else "same number of labels (the head is re-initialised unless the classes are the same)")
            return {"run": r["id"], "name": r.get("name"), "kind": r.get("kind"), "task": _task_name(task.key, task.path),
                    "distance": dist, "score": r["score"],
                    "why": f"best run with a checkpoint on the {'nearest' if task is near[0][0] else 'next'} past"
                           f" task ({_task_name(task.key, task.path)}, distance {dist:.2f}, score {r['score']:.3f});"
                           f" same network and input ({want['channels']}×{want['image_size'][0]}×"
                           f"{want['image_size'][1]}); {head}"}
    return None


@dataclass
class Recommendation:
    """A recommended training command, a starting model, and the evidence behind them."""

    command: dict
    config_key: str
    neighbours: Any  # DataFrame: task, distance, weight, runs, best score, this recipe's score
    candidates: Any  # DataFrame: recipe, weighted z-score, tasks tried, params that differ
    features: dict
    data: str | None = None
    #: The most related past run whose weights fit the command (``init_from``), with its evidence.
    init_from: dict | None = None

    @property
    def params(self) -> dict:
        """The recommended command's hyperparameters (flattened)."""
        return hparams(self.command)

    def explain(self) -> str:
        """A few lines: which past tasks, how similar, what they scored."""
        lines = [f"Recommended recipe {self.config_key} for {self.data or 'the new task'} "
                 f"from {len(self.neighbours)} nearest past task(s):"]
        for _, r in self.neighbours.iterrows():
            got = "-" if r["recipe_score"] is None or r["recipe_score"] != r["recipe_score"] else f"{r['recipe_score']:.3f}"
            lines.append(f"  {r['task']}: distance {r['distance']:.2f}, best {r['best_score']:.3f} "
                         f"({r['runs']} runs), this recipe {got}")
        if self.init_from:
            lines.append(f"Start from run {self.init_from['name']} ({self.init_from['run']}): {self.init_from['why']}")
        return "\n".join(lines)

    def start(self, data: str | os.PathLike | None = None, init_from: bool = False, **kwargs: Any):
        """Start training the recommended command on ``data`` (default: the dataset it was made for).

        ``init_from=True`` starts from the recommended past model (:attr:`init_from`).
        """
        from .. import jobs

        target = data or self.data
        if not target:
            raise ValueError("Recommendation.start: no dataset folder; pass data=DIR")
        command = dict(self.command)
        if init_from:
            if not self.init_from:
                raise ValueError("Recommendation.start: no past run's weights fit this command (init_from is None)")
            command["init_from"] = self.init_from["run"]
        return jobs.start_training(command, data=str(target), **kwargs)


def recommend(data: str | os.PathLike | Mapping[str, Any], log: RunLog | None = None, k: int = 3,
              index: TaskIndex | None = None, kind: str | None = None, exclude_self: bool = True,
              metric: str | None = None) -> Recommendation:
    """Recommend a training command for a dataset folder (or precomputed meta-features).

    Args:
        data: the new dataset folder (``root/<class>/<image>``) or its meta-features dict.
        log: the run log holding past runs (default ``RunLog()``).
        k: how many nearest past tasks vote.
        index: a prebuilt :class:`TaskIndex` (saves re-reading the log).
        kind: only learn from runs of this kind.
        exclude_self: leave out past runs on this very folder (what you want for a *new* task).
        metric: summary key to rank runs by (default: test accuracy, then validation accuracy).
    """
    import pandas as pd

    if isinstance(data, Mapping):
        feats = dict(data)
        data_path = feats.get("path")
    else:
        data_path = str(Path(data).expanduser())
        feats = task_features(data_path)
    index = index if index is not None else TaskIndex(log=log, kind=kind, metric=metric)
    if exclude_self and data_path:
        same = index.find_path(data_path)
        if same:
            index = index.without(same)
    near = nearest_tasks(feats, index, k)
    weights = [1.0 / (d + 1e-3) for _, d in near]
    wsum = sum(weights)
    votes: dict[str, float] = {}
    tried: dict[str, list[str]] = {}
    per_task = []
    for (task, _), w in zip(near, weights):
        z = task.recipe_z()
        per_task.append(z)
        for ck, v in z.items():
            votes[ck] = votes.get(ck, 0.0) + w * v / wsum  # missing on a neighbour = average (0)
            tried.setdefault(ck, []).append(_task_name(task.key, task.path))
    best_key = max(votes, key=lambda c: (votes[c], len(tried[c])))
    # the command: that recipe's best run on the nearest task that tried it
    src_run = None
    for task, _ in near:
        runs = [r for r in task.runs if r["config_key"] == best_key]
        if runs:
            src_run = max(runs, key=lambda r: r["score"])
            break
    assert src_run is not None
    command = _strip_data(src_run["config"])
    rows = []
    for (task, d), w, z in zip(near, weights, per_task):
        mine = [r["score"] for r in task.runs if r["config_key"] == best_key]
        rows.append({"task": _task_name(task.key, task.path), "key": task.key, "distance": d, "weight": w / wsum,
                     "runs": len(task.runs), "best_score": task.best()["score"], "best_run": task.best()["id"],
                     "recipe_score": max(mine) if mine else float("nan")})
    neighbours = pd.DataFrame(rows)
    cand_rows = []
    base = hparams(command)
    for ck in sorted(votes, key=lambda c: -votes[c])[:10]:
        cfg = next(r["config"] for t, _ in near for r in t.runs if r["config_key"] == ck)
        hp = hparams(cfg)
        diff = {kk: hp.get(kk) for kk in sorted(set(hp) | set(base)) if hp.get(kk) != base.get(kk)}
        cand_rows.append({"recipe": ck, "weighted_z": votes[ck], "tasks": ", ".join(tried[ck]),
                          "differs_from_recommended": diff})
    return Recommendation(command, best_key, neighbours, pd.DataFrame(cand_rows), feats,
                          str(data_path) if data_path else None, starting_model(near, command, feats.get("n_classes")))


def _strip_data(config: Mapping[str, Any]) -> dict:
    """A copy of a config without what belongs to the past task: data location, run name, class names."""
    import copy

    cfg = copy.deepcopy(dict(config))
    for k in ("data_dir", "dataset_dir", "name", "labels", "label_map"):
        cfg.pop(k, None)
    if isinstance(cfg.get("data"), str):
        cfg.pop("data")
    elif isinstance(cfg.get("data"), dict):
        for kk in ("root", "path", "data_dir", "dir"):
            cfg["data"].pop(kk, None)
    return cfg
