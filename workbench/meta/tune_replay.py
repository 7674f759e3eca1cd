"""Replayed tuning of a held-out task: the same task tuned without and with the memory, in seconds.

Notebook 04 and the tune panel use this in quick mode: a trial is a lookup of a stored curve in
the shipped meta-dataset (:mod:`workbench.meta.replay`), so the comparison is of real runs, not of
chance-level ones trained in a few seconds.
"""
from __future__ import annotations

from typing import Any

from .replay import MetaDataset
from .tune import SHIPPED_METADATASET

__all__ = ["replay_with_and_without_memory", "study_importances", "replay_trials_frame", "replay_trial_curves",
           "import_replayed"]


def replay_with_and_without_memory(task: str, metadataset: Any = None, *, seed: int = 0, budget_epochs: int = 120,
                                   on_study: Any = None) -> dict[str, Any]:
    """Tune one task of a meta-dataset by replaying its stored curves, without and with the memory.

    ``"without memory"`` is TPE + MedianPruner (cold); ``"with memory"`` is what :func:`tune` does:
    warm start from the other tasks' runs (the held-out task never among them) and the learned
    pruner trained on their curves. Returns ``{"without memory": ReplayResult, "with memory":
    ReplayResult, "studies": {label: optuna.Study}, "warm_start": WarmStart, "oracle": float}``;
    seconds, not minutes (a trial is a lookup). ``on_study(label, study)`` sees each study as it starts.
    """
    import optuna

    from .pruning import CurveModel, LearnedPruner
    from .replay import replay
    from .warmstart import warm_start as _ws

    md = metadataset if isinstance(metadataset, MetaDataset) else MetaDataset.load(metadataset or SHIPPED_METADATASET)
    if task not in md.tasks:
        raise ValueError(f"task = {task!r}: not in the meta-dataset; one of {', '.join(sorted(md.tasks))}")
    held, hist = md.tasks[task], md.without(task)
    ws = _ws(held.features, hist)
    model = CurveModel().fit(hist)
    out: dict[str, Any] = {"studies": {}, "warm_start": ws, "oracle": held.oracle}
    parts = {"without memory": (optuna.pruners.MedianPruner(), []),
             # the learned pruner with the held-out task's memory, as tune() gives it (trained with those features)
             "with memory": (LearnedPruner(model, max_epochs=md.epochs, memory=model.memory_for(held.features, exclude=task)),
                             [] if ws.cold else ws.enqueue())}
    for label, (pruner, enqueue) in parts.items():
        def keep(study: Any, label: str = label) -> None:
            out["studies"][label] = study
            if on_study is not None:
                on_study(label, study)
        out[label] = replay(held, optuna.samplers.TPESampler(seed=seed), pruner, budget_epochs=budget_epochs,
                            enqueue=enqueue, space=md.space, on_study=keep)
    return out


def study_importances(study: Any, seed: int = 0) -> dict[str, dict[str, float]]:
    """Optuna's fANOVA and PED-ANOVA importances over a study's own finished trials (priors left out).

    ``{"fANOVA (Optuna)": {param: share}, "PED-ANOVA (Optuna)": {param: share}}``; shares sum to 1
    (PED-ANOVA's raw values are normalised). A method that cannot run on these trials is left out.
    """
    import optuna

    from .study import own_trials

    own = optuna.create_study(direction="maximize")
    own.add_trials(own_trials(study, (optuna.trial.TrialState.COMPLETE,)))
    out: dict[str, dict[str, float]] = {}
    for name, ev in (("fANOVA (Optuna)", optuna.importance.FanovaImportanceEvaluator(seed=seed)),
                     ("PED-ANOVA (Optuna)", optuna.importance.PedAnovaImportanceEvaluator())):
        try:
            imp = optuna.importance.get_param_importances(own, evaluator=ev, normalize=True)
        except (ValueError, RuntimeError):  # e.g. too few trials or a single value per parameter
            continue
        total = sum(imp.values()) or 1.0
        out[name] = {k: float(v) / total for k, v in imp.items()}
    return out


def replay_trials_frame(result: Any):
    """One row per replayed trial (params, value, epochs, pruned): the data of a parallel-coordinates plot."""
    import pandas as pd

    return pd.DataFrame([{**t["params"], "value": None if t["pruned"] else t["value"], "epochs": t["epochs"],
                          "pruned": t["pruned"], "trial": t["number"]} for t in result.trials if t["epochs"]])


def replay_trial_curves(result: Any, task: Any) -> list[dict]:
    """The validation curve each replayed trial was read to (``pruned``: where the pruner stopped it)."""
    return [{"name": f"trial {t['number']}", "curve": list(task.curves[t["key"]].val_accuracy[: t["epochs"]]),
             "pruned": t["pruned"], "params": t["params"]} for t in result.trials if t["epochs"]]


def import_replayed(records: Any, log: Any, tags: Any = ("replayed",)) -> list[str]:
    """Copy stored runs (e.g. meta-dataset records) into ``log`` as finished runs, so what reads the
    run log (the panels, ``runs list``) sees them. Each copy keeps the config, task, dataset,
    per-step metrics, epochs and summary, is tagged ``replayed`` (plus ``tags``) and names the
    original in ``replayed_from``. Returns the new ids, in order."""
    ids = []
    for rec in records:
        run = log.start(rec.get("name") or rec["id"], rec.get("kind") or "baseline", rec.get("config") or {},
                        tags=[*(rec.get("tags") or []), *tags], dataset=rec.get("dataset"), task=rec.get("task"),
                        replayed_from=rec["id"])
        for row in rec.get("metrics") or []:
            row = dict(row)
            step, epoch = row.pop("step", None), row.pop("epoch", None)
            row.pop("time", None)
            run.log_metrics({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=step, epoch=epoch)
        run.update(epochs=list(rec.get("epochs") or []), durations=rec.get("durations") or {})
        run.finish("completed", summary=rec.get("summary") or {})
        ids.append(run.id)
    return ids
