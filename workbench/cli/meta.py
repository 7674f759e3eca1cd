"""``python -m workbench runs compare ID ID…`` and ``python -m workbench recommend --data DIR``.

``runs compare`` is registered under the ``runs`` command (by :mod:`workbench.cli.runs`);
``recommend`` is a command of its own. Both only call :mod:`workbench.meta`.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable


def register_compare(rs: argparse._SubParsersAction, db_opt: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the ``compare`` action to the ``runs`` sub-parsers."""
    q = rs.add_parser("compare", help="compare runs: results table, config keys that differ, curves",
                      description="Final/best metrics, wall time and score of each run, and only the config "
                                  "keys whose values differ between them.")
    db_opt(q)
    q.add_argument("ids", nargs="+", metavar="ID", help="run ids, unique id prefixes or names (two or more)")
    q.add_argument("--metric", action="append", metavar="NAME",
                   help="metric columns to show (repeatable; default: every logged metric)")
    q.add_argument("--plot", metavar="FILE.png", help="also save overlaid curves of --curve to this image")
    q.add_argument("--curve", default="train_loss", help="metric to plot with --plot (default train_loss)")
    q.add_argument("--smooth", type=float, default=0.0, help="EMA weight in [0, 1) for --plot (default 0)")
    q.add_argument("--json", action="store_true", help="table and diff as JSON")
    q.set_defaults(func=cmd_compare)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recommend", help="recommend a command for a dataset from similar tasks",
                       description="Describe DIR with task meta-features, find the k most similar past tasks in "
                                   "the run log and recommend the recipe that did best on them, with the evidence.")
    p.add_argument("--data", required=True, metavar="DIR", help="image folder (DIR/<class>/<image>)")
    p.add_argument("--db", metavar="PATH", help="run-log file (default: $WORKBENCH_HOME/runs.json)")
    p.add_argument("-k", "--k", type=int, default=3, help="nearest past tasks that vote (default 3)")
    p.add_argument("--kind", help="learn only from runs of this kind (e.g. baseline)")
    p.add_argument("--out", metavar="FILE.json", help="write the recommended command here (for `train --config`)")
    p.add_argument("--json", action="store_true", help="command and evidence as JSON")
    p.set_defaults(func=cmd_recommend)


def _log(db: str | None):
    from ..runlog import RunLog

    return RunLog(db)


def cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..meta.compare import compare

    if len(args.ids) < 2:
        raise ValueError("runs compare: give two or more run ids")
    log = _log(args.db)
    c = compare(args.ids, log=log, metrics=args.metric)
    if args.json:
        out = {"table": json.loads(c.table.reset_index().to_json(orient="records")),
               "diff": {k: dict(zip(c.diff.columns, map(str, v))) for k, v in c.diff.iterrows()}}
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        t = c.table.drop(columns=["kind"], errors="ignore")
        with pd.option_context("display.width", 200, "display.max_columns", 50, "display.precision", 4):
            print(t.to_string())
            print()
            if c.diff.empty:
                print("configs: identical")
            else:
                print("config keys that differ:")
                print(c.diff.to_string())
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        ax = c.plot(args.curve, smooth=args.smooth)
        ax.figure.savefig(args.plot, dpi=100, bbox_inches="tight")
        print(f"curves of {args.curve} saved to {args.plot}", file=sys.stderr)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from ..meta.recommend import recommend

    rec = recommend(args.data, log=_log(args.db), k=args.k, kind=args.kind)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(rec.command, fh, indent=1)
    if args.json:
        json.dump({"command": rec.command, "recipe": rec.config_key,
                   "neighbours": json.loads(rec.neighbours.to_json(orient="records"))}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(rec.explain())
    print("\nRecommended command:")
    print(json.dumps(rec.command, indent=1))
    if args.out:
        print(f"\nwritten to {args.out}; train it with: python -m workbench train --config {args.out} "
              f"--data {args.data}")
    return 0
