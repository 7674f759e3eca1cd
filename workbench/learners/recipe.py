"""What a command family tells the one runner (:mod:`workbench.training`): a small recipe.

The runner owns everything every kind shares — the run record, seeding, threads, the Trainer,
stop / Ctrl-C / time limit, checkpoints, the summary, crash marking, testing through
``trainer.test``. A recipe only knows its family's data and learner:

- :meth:`Recipe.prepare` — check the command against its data and build the DataModule
  (everything that can be wrong fails here, before a run exists);
- :meth:`Recipe.build` — the LightningModule (the runner calls it inside the job's seeded init);
- :meth:`Recipe.fit_options` / :meth:`Recipe.callbacks` — how long to train, when to validate;
- :meth:`Recipe.auto_test` — whether a finished training run is tested right away;
- :meth:`Recipe.test_plan` — what "testing a run" means for this family.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from ..commands import Command


def resolve(path: str) -> Any:
    """``"workbench.module:Name"`` → the object (only names inside the workbench package)."""
    module, _, name = path.partition(":")
    if not module.startswith("workbench.") or not name:
        raise ValueError(f"{path!r}: expected 'workbench.<module>:<name>'")
    return getattr(importlib.import_module(module), name)


@dataclass
class Prepared:
    """A command checked against its data, ready to train."""

    command: Command                  #: the command as it will be stored (data location resolved)
    datamodule: Any                   #: the LightningDataModule
    dataset: dict[str, Any]           #: the record's ``dataset`` field (where, fingerprint, split)
    classes: list[str]                #: what the learner is built over
    in_shape: tuple[int, ...]         #: one input's shape (C, H, W)
    n_classes: int = 0                #: classes the learner trains on (its head, if any)
    record: dict[str, Any] = field(default_factory=dict)     #: further record fields (few-shot splits)
    files: dict[str, Any] = field(default_factory=dict)      #: JSON files for the run folder
    artifacts: dict[str, str] = field(default_factory=dict)  #: record artifacts for those files
    monitor: str | None = None        #: metric whose best checkpoint is kept (None: the final weights)
    describe: str = ""                #: one line for ``train --check``


@dataclass
class TestPlan:
    """How to test one stored run: what Lightning tests on, and what goes into the record."""

    config: dict[str, Any]                                  #: the record's ``test_config``
    loaders: dict[str, Any]                                 #: ``trainer.test(module, **loaders)``
    finish: Callable[[Any], dict[str, Any]]                 #: module after testing → summary
    lines: Callable[[dict[str, Any]], list[str]]            #: summary → what the CLI prints
    report: Callable[[Any], dict[str, Any]] | None = None   #: module → ``test_report.json`` (optional)
    details: Callable[[Any], dict[str, Any]] | None = None  #: module → extra result for the caller


class Recipe:
    """Base recipe: a command family's data and learner. Subclasses fill in :meth:`prepare` and
    :meth:`test_plan`; the learner class is named by the command (``command.learner``)."""

    def __init__(self, command: Command) -> None:
        self.command = command

    @property
    def learner_class(self) -> Any:
        return resolve(self.command.learner)

    def prepare(self, data: Any = None) -> Prepared:
        raise NotImplementedError

    def build(self, prepared: Prepared) -> Any:
        """The untrained LightningModule (called inside the job's seeded initialisation)."""
        return self.learner_class.from_command(prepared.command, prepared)

    def fit_options(self, prepared: Prepared) -> dict[str, Any]:
        """``pl.Trainer`` keywords for how long to train and when to validate."""
        return {}

    def callbacks(self, prepared: Prepared) -> list[Any]:
        """Lightning callbacks of this family (early stopping …)."""
        return []

    def auto_test(self, prepared: Prepared) -> dict[str, Any] | None:
        """Test options when a trained run is tested at once (None: it is tested on request)."""
        return None

    def test_plan(self, module: Any, record: dict[str, Any], data: Any = None, limit: int | None = None,
                  **options: Any) -> TestPlan:
        raise NotImplementedError
