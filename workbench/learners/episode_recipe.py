"""The few-shot recipe: what the one runner (:mod:`workbench.training`) asks a few-shot command.

Data comes from :mod:`.fewshot_data`; meta-training is ``steps`` meta-batches of episodes
(one Lightning "epoch", validated every ``val_every`` steps) — or, for learners that pre-train
on plain images (``trains_on = "images"``, the fine-tune baseline), ``steps`` mini-batches over
as many epochs as that takes; a trained run is tested right away on ``test_episodes`` episodes
(:mod:`.fewshot_eval`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..commands import FewShotCommand
from ..registry import ConfigError
from .fewshot_data import build_source, make_datamodule, make_splits, rotation_policy
from .fewshot_eval import episode_test_plan
from .recipe import Prepared, Recipe, TestPlan


def check_tasks(cmd: FewShotCommand, dm: Any, source: Any) -> None:
    """Every split the command asks tasks of can yield them, and the decoded images fit in memory.

    The samplers check class and image counts; a split asked for episodes (``val_episodes`` /
    ``test_episodes`` > 0) that cannot give an N-way task is an error, not a silently skipped
    validation or test.
    """
    from ..commands.machine import gib, memory_bytes

    e = cmd.episodes
    n_field = {"train": "episodes.train_n_way" if e.train_n_way else "episodes.n_way",
               "val": "episodes.test_n_way" if e.test_n_way else "episodes.n_way"}
    n_field["test"] = n_field["val"]
    k_field = {"train": "episodes.k_shot", "val": "episodes.test_k_shot" if e.test_k_shot else "episodes.k_shot"}
    k_field["test"] = k_field["val"]
    asked = {"train": True, "val": cmd.val_episodes > 0, "test": cmd.test_episodes > 0}
    problems = []
    for split in ("train", "val", "test"):
        if not asked[split]:
            continue
        try:
            dm.sampler(split)
        except ValueError as exc:
            field = n_field[split] if "n_way" in str(exc) else k_field[split]
            hint = "" if split == "train" else f" (or set {split}_episodes 0)"
            problems.append(ConfigError(field, f"{split} split of {len(dm.splits[split])} classes: {exc}{hint}",
                                        e.to_dict()))
    n_images = sum(source.count(c) for c in range(len(source.classes)))
    need = n_images * cmd.channels * cmd.image_size ** 2
    if need > 0.5 * memory_bytes():
        problems.append(ConfigError("image_size", f"{n_images:,} images decoded at {cmd.image_size}×{cmd.image_size}"
                                    f" take {gib(need)}; this machine has {gib(memory_bytes())}", cmd.image_size))
    if problems:
        raise ConfigError.collect(problems)


class EpisodeRecipe(Recipe):
    """How a :class:`~workbench.commands.FewShotCommand` trains and tests."""

    command: FewShotCommand

    def prepare(self, data: Any = None) -> Prepared:
        from ..data.episodes import check_disjoint, splits_fingerprint

        cmd = self.command.model_copy(deep=True)
        cmd.validate()  # memory of a step's tasks, before any image is read
        source, predefined = build_source(cmd, data)
        if isinstance(data, (str, Path)):
            cmd.data = str(data)  # the record says where it really trained
        splits = make_splits(cmd, source, predefined)
        check_disjoint(splits)
        rotation = rotation_policy(cmd, source, splits)
        dm = make_datamodule(cmd, source, splits, rotation, flat=self.learner_class.trains_on == "images")
        check_tasks(cmd, dm, source)
        fp = {**source.fingerprint(), "splits_sha1": splits_fingerprint(splits),
              "split_counts": {k: len(v) for k, v in splits.items()}, "rotation": rotation}
        e = cmd.episodes
        return Prepared(cmd, dm, fp, list(splits["train"]), (cmd.channels, cmd.image_size, cmd.image_size),
                        n_classes=len(splits["train"]), record={"splits": splits}, files={"splits.json": splits},
                        artifacts={"splits": "splits.json"},
                        describe=f"{len(source.classes)} classes (split {fp['split_counts']}), {e.n_way}-way "
                                 f"{e.k_shot}-shot tasks, rotation {rotation['why']}")

    @staticmethod
    def has_val(cmd: FewShotCommand, dm: Any) -> bool:
        return cmd.val_episodes > 0 and len(dm.splits["val"]) >= dm.test_n_way

    def fit_options(self, prepared: Prepared) -> dict[str, Any]:
        cmd, dm = prepared.command, prepared.datamodule
        val = self.has_val(cmd, dm)
        if self.learner_class.trains_on == "images":
            # plain mini-batch pre-training: `steps` optimizer steps over as many epochs as that takes
            opts: dict[str, Any] = {"max_steps": cmd.steps, "max_epochs": -1}
            opts.update({"val_check_interval": None, "check_val_every_n_epoch": 1} if val else {})
        else:
            opts = {"max_steps": cmd.steps, "max_epochs": 1}
            opts.update({"val_check_interval": min(cmd.val_every, cmd.steps)} if val else {})
        return {**opts, "inference_mode": False, "limit_val_batches": 1.0 if val else 0}

    def auto_test(self, prepared: Prepared) -> dict[str, Any] | None:
        cmd, dm = prepared.command, prepared.datamodule
        if cmd.test_episodes > 0 and len(dm.splits["test"]) >= dm.test_n_way:
            return {"episodes": cmd.test_episodes}
        return None

    def test_plan(self, module: Any, record: dict[str, Any], data: Any = None, limit: int | None = None,
                  **options: Any) -> TestPlan:
        return episode_test_plan(module, record, data, limit, **options)
