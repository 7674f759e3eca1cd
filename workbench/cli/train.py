"""``python -m workbench train --config FILE.json [--data DIR]`` and ``python -m workbench test RUN``."""
from __future__ import annotations

import argparse
import json
import signal


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train from a JSON training command (any kind)",
                       description="Validate the training command, then train synchronously with a progress bar."
                                   " The run, its metrics and checkpoints go to the run log.")
    p.add_argument("--config", required=True, metavar="FILE.json", help="the training command (JSON)")
    p.add_argument("--data", metavar="DIR", help="image folder (root/<class>/<image>); overrides the command's 'data'")
    p.add_argument("--name", help="run name (default: the command's name or model-optimizer)")
    p.add_argument("--tag", action="append", default=[], help="tag for the run (repeatable)")
    p.add_argument("--db", metavar="PATH", help="run-log file (default: $WORKBENCH_HOME/runs.json)")
    p.add_argument("--check", action="store_true", help="validate the command against the data and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    # Used by background jobs and DDP workers: log into this existing run instead of creating one.
    p.add_argument("--run-id", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)

    q = sub.add_parser("test", help="test a trained run on its held-out split",
                       description="Test a trained run (id, id prefix or name); stores accuracy, top-k accuracy,"
                                   " per-class accuracy and the confusion matrix in its record. Few-shot runs"
                                   " are tested on N-way K-shot episodes of their held-out classes.")
    q.add_argument("run", help="run id, unique id prefix or name")
    q.add_argument("--data", metavar="DIR", help="test on every image of this folder instead")
    q.add_argument("--limit", type=int, metavar="N",
                   help="test on at most N images (few-shot runs: N test episodes, default 600)")
    q.add_argument("--db", metavar="PATH", help="run-log file (default: $WORKBENCH_HOME/runs.json)")
    q.add_argument("--json", action="store_true", help="print the summary as JSON")
    q.set_defaults(func=cmd_test)


def cmd_train(args: argparse.Namespace) -> int:
    from .. import jobs

    if args.run_id and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # A job started from a process that ignores SIGINT (anything launched with `&` or
        # nohup) inherits that, and Python then installs no KeyboardInterrupt handler: an
        # interrupt would be lost instead of ending the run `stopped`.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    from ..config import FEWSHOT_KINDS
    from ..runlog import RunLog

    cmd = jobs.command_dict(args.config)
    log = RunLog(args.db) if args.db else None
    if cmd.get("kind", "baseline") in FEWSHOT_KINDS:
        from ..learners.fewshot import train_from_command

        log = log or RunLog()
        run = log.handle(args.run_id) if args.run_id else None
        res = jobs._as_result(train_from_command(cmd, data=args.data, log=log, run=run), log,
                              run.id if run is not None else None)
        print(f"run {res['run_id']} {res['status']}")
        return 0 if res["status"] in ("trained", "completed") else 1
    if args.check:
        c, dm = jobs.prepare(cmd, args.data)
        print(f"ok: {dm.n_labels} classes, {len(dm.samples)} images, split {dm.info()['split_counts']}")
        return 0
    res = jobs.run_training(cmd, args.data, log=log, run=args.run_id, name=args.name, tags=args.tag,
                            progress=not args.no_progress)
    if res.get("run_id") is None:  # a DDP worker (rank > 0): rank zero reports
        return 0
    s = res["summary"]
    acc = s.get("final_val_accuracy")
    print(f"run {res['run_id']} {res['status']}: {s.get('epochs_completed')} epochs"
          + (f", val_accuracy {acc:.3f}" if isinstance(acc, float) else ""))
    return 0 if res["status"] == "trained" else 130


def cmd_test(args: argparse.Namespace) -> int:
    from .. import jobs
    from ..config import FEWSHOT_KINDS
    from ..runlog import RunLog

    log = RunLog(args.db) if args.db else RunLog()
    rec = log.get(args.run, metrics=False)
    if rec.get("kind") in FEWSHOT_KINDS:  # few-shot runs are tested on episodes of their held-out classes
        from ..learners.fewshot import evaluate

        r = evaluate(rec["id"], episodes=args.limit or 600, log=log, data=args.data)
        if args.json:
            print(json.dumps({k: v for k, v in r.items() if k != "accuracies"}))
        else:
            print(f"run {rec['id']} tested: {r['n_way']}-way {r['k_shot']}-shot accuracy {r['mean']:.3f}"
                  f" ± {r['ci95']:.3f} (95% CI) over {r['episodes']} episodes")
        return 0
    res = jobs.run_test(rec["id"], args.data, limit=args.limit, log=log, progress=not args.json)
    s = res["summary"]
    if args.json:
        print(json.dumps(s))
        return 0
    k = next((key for key in s if key.startswith("test_top")), None)
    print(f"run {res['run_id']} completed: test_accuracy {s['test_accuracy']:.3f}"
          + (f", {k.removeprefix('test_')} {s[k]:.3f}" if k else "") + f" on {s['n_test']} images")
    width = max(len(c) for c in s["classes"])
    for c in s["classes"]:
        a = s["per_class_accuracy"].get(c)
        print(f"  {c:<{width}}  {'-' if a is None else f'{a:.3f}'}")
    return 0
