"""The command language: one way to write, check and store any training command.

A training command is plain JSON — a dict, JSON text, a ``.json`` file or the train panel's
editor. :func:`parse` is the **one** place that looks at ``kind``: it picks the command family
(:mod:`.baseline` for ``baseline``, :mod:`.fewshot` for ``maml``, ``fomaml``, ``metasgd``,
``protonet``, ``finetune``) and returns a typed command. Everything after that — the runner,
jobs, the CLI, sweeps, panels — asks the command object, never its kind.

Every problem of a command is reported at once, in one :class:`ConfigError` (a ``ValueError``)
naming the field path, the value, the allowed values and close matches::

    model.layers[4].params.kernal_size: Conv2d has no parameter 'kernal_size'; did you mean 'kernel_size'?

:func:`json_schema` describes every field of every kind (``python -m workbench train --schema``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..registry import ConfigError, close_matches, show
from .baseline import MONITORS, EarlyStopping, TrainingCommand
from .fewshot import TRAITS, FewShotCommand
from .fields import Command, Split, TrainerOptions
from .limits import MAX_STRING, plain, read_command_file, read_json

#: kind → command family. The one dispatch on ``kind``.
FAMILIES: dict[str, type[Command]] = {"baseline": TrainingCommand, **{k: FewShotCommand for k in TRAITS}}
KINDS = tuple(FAMILIES)

__all__ = ["parse", "command_dict", "json_schema", "Command", "TrainingCommand", "FewShotCommand", "ConfigError",
           "Split", "TrainerOptions", "EarlyStopping", "KINDS", "FAMILIES", "MONITORS"]


def command_dict(command: Command | Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A command as a plain dict: from a parsed command, a dict, JSON text or a JSON file path.

    Untrusted input is checked before anything else looks at it (:mod:`.limits`): size, nesting,
    finite numbers — so a hostile command is refused fast, with the field named.
    """
    if isinstance(command, Command):
        return command.to_dict()
    if isinstance(command, Mapping):
        return plain(command)
    if isinstance(command, (str, Path)):
        text = str(command).strip()
        if text.startswith(("{", "[")) or len(text) > MAX_STRING:  # JSON text (an editor's), not a file name
            return _object(read_json(text))
        p = Path(command).expanduser()
        if not p.exists() and isinstance(command, str) and _json_scalar(text):
            return _object(read_json(text))
        return _object(read_command_file(p))
    raise ConfigError("", f"a training command is a dict, a command or a JSON file, got {type(command).__name__}",
                      type(command).__name__)


def _json_scalar(text: str) -> bool:
    """Text that is a JSON value but not an object (``null``, ``42``, ``"x"``): a wrong command, not a path."""
    try:
        read_json(text)
    except ConfigError:
        return False
    return True


def _object(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ConfigError("", f"a training command is a JSON object, got {show(v)}", v)
    return v


def parse(command: Command | Mapping[str, Any] | str | Path) -> Command:
    """The typed command of any kind (field names and types checked; see :meth:`Command.validate`)."""
    if isinstance(command, Command):
        return command.model_copy(deep=True)
    d = command_dict(command)
    kind = d.get("kind", "baseline")
    family = FAMILIES.get(kind) if isinstance(kind, str) else None
    if family is None:
        raise ConfigError("kind", f"unknown kind {kind!r}", kind, KINDS, close_matches(str(kind), list(KINDS)))
    return family.from_dict(d)


def json_schema() -> dict[str, Any]:
    """JSON Schema of a training command: one alternative per family, discriminated by ``kind``."""
    from pydantic.json_schema import models_json_schema

    families = list(dict.fromkeys(FAMILIES.values()))
    refs, defs = models_json_schema([(f, "validation") for f in families], title="workbench training command")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "workbench training command",
            "oneOf": [refs[(f, "validation")] for f in families], **defs}
