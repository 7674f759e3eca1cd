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


class EpisodeRecipe(Recipe):
    """How a :class:`~workbench.commands.FewShotCommand` trains and tests."""

    command: FewShotCommand

    def prepare(self, data: Any = None) -> Prepared:
        from ..data.episodes import check_disjoint, splits_fingerprint

        cmd = self.command.model_copy(deep=True)
        source, predefined = build_source(cmd, data)
        if isinstance(data, (str, Path)):
            cmd.data = str(data)  # the record says where it really trained
        splits = make_splits(cmd, source, predefined)
        check_disjoint(splits)
        rotation = rotation_policy(cmd, source, splits)
        dm = make_datamodule(cmd, source, splits, rotation, flat=self.learner_class.trains_on == "images")
        try:  # the samplers check class and image counts: a task that cannot be drawn fails now
            dm.sampler("train")
            if self.has_val(cmd, dm):
                dm.sampler("val")
        except ValueError as exc:
            raise ConfigError("episodes", str(exc), cmd.episodes.to_dict()) from None
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
