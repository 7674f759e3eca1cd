"""Few-shot learning in a few calls: meta-train, evaluate (600 episodes, 95% CI) and adapt.

    rid = train_from_command({"kind": "maml", "episodes": {"n_way": 5, "k_shot": 1}, "steps": 2000})
    evaluate(rid, episodes=600, n_way=5, k_shot=5)     # mean ± 95% CI + per-episode accuracies → run summary
    clf = adapt(rid, support_images, ["cat", "dog", ...])  # a classifier for new classes; clf.predict(images)

These are conveniences over the one runner (:mod:`workbench.training`), which trains and tests
every kind of command the same way: the command language is :mod:`workbench.commands.fewshot`,
the data :mod:`workbench.learners.fewshot_data`, the recipe :mod:`workbench.learners.episode_recipe`,
testing :mod:`workbench.learners.fewshot_eval`, adaptation :mod:`workbench.learners.adapt`.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

from .commands import FewShotCommand, command_dict, parse
from .commands.fewshot import KINDS
from .learners.adapt import FewShotClassifier, adapt, to_tensor_batch
from .learners.fewshot_data import build_source, make_splits
from .learners.fewshot_eval import mean_ci95
from .registry import ConfigError
from .training import StopFlag, run_test, run_training

__all__ = ["FewShotCommand", "parse_command", "train_from_command", "evaluate", "adapt", "FewShotClassifier",
           "to_tensor_batch", "mean_ci95", "build_source", "make_splits", "KINDS"]


def parse_command(command: Mapping[str, Any] | FewShotCommand | str | Path) -> FewShotCommand:
    """A :class:`FewShotCommand` from a dict, a command, JSON text or a JSON file path."""
    cmd = parse(command if isinstance(command, FewShotCommand) else {"kind": "maml", **command_dict(command)})
    if not isinstance(cmd, FewShotCommand):
        raise ConfigError("kind", f"{cmd.kind!r} is not a few-shot kind", cmd.kind, list(KINDS))
    return cmd


def train_from_command(command: Mapping[str, Any] | FewShotCommand | str | Path, data: Any = None, log: Any = None,
                       run: Any = None, stop_event: threading.Event | None = None, callbacks: Sequence[Any] = (),
                       progress: bool = False) -> str:
    """Meta-train a few-shot learner from a command, record it as a run, return the run id.

    ``data`` overrides ``command.data`` (folder path, source or :class:`~workbench.data.glyphs.Glyphs`);
    ``run`` is an existing (e.g. ``queued``) run to train into; setting ``stop_event`` stops at
    the next step (the run ends ``stopped`` with its weights saved). With ``test_episodes > 0``
    the run is tested right after training and ends ``completed``.
    """
    stop = StopFlag(event=stop_event) if stop_event is not None else None
    return run_training(parse_command(command), data, log=log, run=run, stop=stop, callbacks=callbacks,
                        progress=progress)["run_id"]


def evaluate(run_ref: str, episodes: int = 600, n_way: int | None = None, k_shot: int | None = None,
             q_query: int | None = None, split: str = "test", seed: int | None = None, log: Any = None,
             data: Any = None, store: bool = True, device: str | None = None) -> dict[str, Any]:
    """Mean accuracy ± 95% CI over ``episodes`` tasks of a trained run's held-out split.

    Tasks come from the split stored in the run and are reproducible from ``(seed, index)``
    (default: the run's seed). With ``store`` the result goes into the run summary under
    ``fewshot_eval["<split>_<N>way<K>shot"]`` (see :mod:`.fewshot_eval`). ``device``: the
    accelerator to test on (default: the command's).
    """
    res = run_test(run_ref, data, log=log, record=store, episodes=episodes, n_way=n_way, k_shot=k_shot,
                   q_query=q_query, split=split, seed=seed, accelerator=device)
    return res["details"]
