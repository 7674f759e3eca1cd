"""``python -m workbench runs export --to mlflow DIR|URI`` / ``--to tensorboard DIR`` (the options and the
action; ``workbench/cli/runs.py`` registers them on ``runs export``, next to ``runs export FILE``)."""
from __future__ import annotations

import argparse
from typing import Any


def add_export_options(q: argparse.ArgumentParser) -> None:
    """The options of ``runs export`` that send runs to another tool."""
    q.add_argument("--to", nargs=2, metavar=("FORMAT", "DEST"),
                   help="mlflow DIR|URI (a folder becomes a SQLite store DIR/mlflow.db) or tensorboard DIR")
    q.add_argument("--run", action="append", metavar="RUN", help="only this run (id, prefix or name; repeatable)")
    q.add_argument("--experiment", default="workbench", help="MLflow experiment (default: workbench)")
    q.add_argument("--no-checkpoints", action="store_true", help="MLflow: leave the checkpoint files out")


def cmd_export_to(args: argparse.Namespace) -> int:
    from ..exporters import FORMATS, export_runs
    from ..runlog import RunLog

    if not args.to:
        raise ValueError("runs export: give --to mlflow DIR|URI or --to tensorboard DIR")
    fmt, dest = args.to
    if fmt not in FORMATS:
        raise ValueError(f"runs export --to {fmt}: expected one of {', '.join(FORMATS)}")
    log = RunLog(args.db)
    runs: Any = args.run
    if runs is None and any(v is not None for v in (args.status, args.kind, args.name, args.tag)):
        runs = [r["id"] for r in log.find(status=args.status, kind=args.kind, name=args.name, tag=args.tag)]
    opts = {"experiment": args.experiment, "checkpoints": not args.no_checkpoints} if fmt == "mlflow" else {}
    rows = export_runs(log, fmt, dest, runs, **opts)
    new = sum(r["exported"] for r in rows)
    print(f"exported {new} run{'s' * (new != 1)} to {fmt} {dest}" + (f" ({len(rows) - new} already there)"
                                                                     if len(rows) > new else ""))
    return 0
