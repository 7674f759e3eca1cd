"""``python -m workbench train --config FILE.json [--data DIR]`` and ``python -m workbench test RUN``.

Both take any kind of command or run: parsing is :mod:`workbench.commands`, training and testing
are :mod:`workbench.training` (the one runner).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train from a JSON training command (any kind)",
                       description="Check the training command, then train synchronously with a progress bar."
                                   " The run, its metrics and checkpoints go to the run log.")
    p.add_argument("--config", metavar="FILE.json", help="the training command (JSON)")
    p.add_argument("--data", metavar="DIR", help="image folder (root/<class>/<image>); overrides the command's 'data'")
    p.add_argument("--name", help="run name (default: the command's name or one made from it)")
    p.add_argument("--tag", action="append", default=[], help="tag for the run (repeatable)")
    p.add_argument("--db", metavar="PATH", help="run log: a file, tinydb:PATH or postgresql://… (default: $WORKBENCH_DB or $WORKBENCH_HOME/runs.db)")
    p.add_argument("--check", action="store_true", help="check the command against the data and exit (no run)")
    p.add_argument("--schema", action="store_true", help="print the JSON Schema of training commands and exit")
    p.add_argument("--threads", type=int, metavar="N", help="intra-op threads for this run (default: torch's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    # Used by background jobs and DDP workers: log into this existing run instead of creating one.
    p.add_argument("--run-id", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)

    q = sub.add_parser("test", help="test a trained run on its held-out split",
                       description="Test a trained run (id, id prefix or name) and store the result in its"
                                   " record: baseline runs on their held-out images (accuracy, top-k, per-class,"
                                   " confusion matrix), few-shot runs on N-way K-shot episodes of their held-out"
                                   " classes (mean ± 95% CI).")
    q.add_argument("run", help="run id, unique id prefix or name")
    q.add_argument("--data", metavar="DIR", help="test on every image of this folder instead")
    q.add_argument("--limit", type=int, metavar="N",
                   help="test on at most N images (few-shot runs: N test episodes, default 600)")
    q.add_argument("--db", metavar="PATH", help="run log: a file, tinydb:PATH or postgresql://… (default: $WORKBENCH_DB or $WORKBENCH_HOME/runs.db)")
    q.add_argument("--json", action="store_true", help="print the summary as JSON")
    q.set_defaults(func=cmd_test)


def cmd_train(args: argparse.Namespace) -> int:
    if args.schema:
        from ..commands import json_schema

        json.dump(json_schema(), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    if not args.config:
        raise ValueError("train: give --config FILE.json (or --schema)")
    from .. import training
    from ..runlog import RunLog

    if args.run_id and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # A job started from a process that ignores SIGINT (anything launched with `&` or
        # nohup) inherits that, and Python then installs no KeyboardInterrupt handler: an
        # interrupt would be lost instead of ending the run `stopped`.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    from ._progress import progress_bar, to_stderr

    show = not args.no_progress
    prepared = None
    if not args.run_id:  # a background job's pre-created run must record a failed check itself
        if show or args.check:  # the first seconds (imports, data checks, glyph rendering) are not silent
            print("checking the command and its data…", file=sys.stderr, flush=True)
        prepared = training.prepare(args.config, args.data)
        if args.check:
            print(f"ok: {prepared.command.kind} command; {prepared.describe}")
            return 0
        if show:
            print(f"training: {prepared.command.kind} command; {prepared.describe}", file=sys.stderr, flush=True)
    log = RunLog(args.db) if args.db else None
    with to_stderr(show):  # stdout keeps the one result line; the bars go to stderr
        res = training.run_training(prepared.command if prepared else args.config, args.data, log=log,
                                    run=args.run_id, name=args.name, tags=args.tag, progress=show,
                                    threads=args.threads, prepared=prepared,
                                    callbacks=[progress_bar()] if show else [])
    if res.get("run_id") is None:  # a DDP worker (rank > 0): rank zero reports
        return 0
    s = res["summary"]
    parts = [f"{s.get('epochs_completed')} epochs", f"{s.get('steps')} steps"]
    parts += [f"{k} {s[k]:.3f}" for k in ("final_val_accuracy", "test_accuracy") if isinstance(s.get(k), float)]
    print(f"run {res['run_id']} {res['status']}: " + ", ".join(parts))
    return 0 if res["status"] in ("trained", "completed") else 130


def cmd_test(args: argparse.Namespace) -> int:
    from .. import training
    from ._lookup import open_log, resolve
    from ._progress import to_stderr

    log = open_log(args.db, ref=args.run)
    rid = resolve(log, args.run)
    if not args.json:
        print(f"testing run {rid}…", file=sys.stderr, flush=True)
    with to_stderr(not args.json):
        res = training.run_test(rid, args.data, limit=args.limit, log=log, progress=not args.json)
    if args.json:
        print(json.dumps(res["summary"]))
        return 0
    head, *rest = res["lines"]
    print(f"run {res['run_id']} {res['status']}: {head}")
    for line in rest:
        print(line)
    return 0
