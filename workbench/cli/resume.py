"""``python -m workbench resume RUN``: continue a stopped or crashed run from its last checkpoint."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resume", help="continue a stopped or crashed run from its last checkpoint",
                       description="Continue a stopped or crashed run (id, id prefix or name) from"
                                   " checkpoints/last.ckpt in the same record: it ends with the steps it planned,"
                                   " and no metric step is logged twice.")
    p.add_argument("run", help="run id, unique id prefix or name")
    p.add_argument("--db", metavar="PATH", help="run log: a file, tinydb:PATH or postgresql://… (default: $WORKBENCH_DB or $WORKBENCH_HOME/runs.db)")
    p.add_argument("--threads", type=int, metavar="N", help="intra-op threads (default: the command's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_resume)


def cmd_resume(args: argparse.Namespace) -> int:
    from .. import training
    from ..runlog import RunLog

    log = RunLog(args.db) if args.db else RunLog()
    res = training.resume_training(log.resolve(args.run), log=log, progress=not args.no_progress,
                                   threads=args.threads)
    s = res["summary"]
    parts = [f"{s.get('epochs_completed')} epochs", f"{s.get('steps')} steps"]
    parts += [f"{k} {s[k]:.3f}" for k in ("final_val_accuracy", "test_accuracy") if isinstance(s.get(k), float)]
    print(f"run {res['run_id']} {res['status']}: " + ", ".join(parts))
    return 0 if res["status"] in ("trained", "completed") else 130
