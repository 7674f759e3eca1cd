"""Runs out to the tools a team already uses: MLflow and TensorBoard.

    export_runs(log, "mlflow", "~/mlflow-store")         # or a tracking URI
    export_runs(log, "tensorboard", "~/tb", runs=["adam-small"])

The CLI is ``python -m workbench runs export --to mlflow DIR|URI`` / ``--to tensorboard DIR``.
:mod:`.loggers` makes the Lightning loggers a command asks for (``"loggers": [...]``).
The run log stays the source: exports are copies, and exporting again adds only new runs.
"""
from __future__ import annotations

from typing import Any, Iterable

__all__ = ["export_runs", "FORMATS"]

#: Export formats.
FORMATS = ("mlflow", "tensorboard")


def export_runs(log: Any, to: str, dest: str | None, runs: Iterable[str] | None = None, **options: Any) -> list[dict]:
    """Export runs of ``log`` (ids, prefixes or names; default every run) as ``to`` into ``dest``.

    ``options``: ``experiment``, ``checkpoints`` (MLflow). Returns one row per run.
    """
    import importlib.util

    if to not in FORMATS:
        raise ValueError(f"export format {to!r}: expected one of {', '.join(FORMATS)}")
    if importlib.util.find_spec(to) is None:
        raise ModuleNotFoundError(f"export to {to} needs the {to} package: pip install 'workbench[ecosystem]'")
    ids = [log.resolve(r) for r in runs] if runs is not None else [r["id"] for r in log.runs()]
    records = (log.get(i) for i in ids)
    if to == "mlflow":
        from .mlflow import to_mlflow

        return to_mlflow(records, dest, **options)
    if options:
        raise ValueError(f"tensorboard export takes no options, got {sorted(options)}")
    if dest is None:
        raise ValueError("tensorboard export needs a folder")
    from .tensorboard import to_tensorboard

    return to_tensorboard(records, dest)
