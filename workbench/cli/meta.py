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
    p.add_argument("--db", metavar="PATH", help="run log: a file, tinydb:PATH or postgresql://… (default: $WORKBENCH_DB or $WORKBENCH_HOME/runs.db)")
    p.add_argument("-k", "--k", type=int, default=3, help="nearest past tasks that vote (default 3)")
    p.add_argument("--kind", help="learn only from runs of this kind (e.g. baseline)")
    p.add_argument("--out", metavar="FILE.json", help="write the recommended command here (for `train --config`)")
    p.add_argument("--json", action="store_true", help="command and evidence as JSON")
    p.set_defaults(func=cmd_recommend)


def _log(db: str | None):
    from ..runlog import RunLog

    return RunLog(db)


def grid(header: list[str], rows: list[list[str]], width: int, key_width: int = 30) -> list[str]:
    """A text table no wider than ``width``: the first column up to ``key_width``, the others
    sharing the rest; long cells wrap onto at most three lines (then "…")."""
    import textwrap

    n = len(header) - 1
    kw = min(key_width, max(len(r[0]) for r in [header, *rows]))
    cw = max(10, (width - kw - 2 * n) // max(n, 1))
    widths = [kw] + [min(cw, max(len(r[i]) for r in [header, *rows])) for i in range(1, n + 1)]

    def cell(text: str, w: int) -> list[str]:
        lines = textwrap.wrap(text, w, break_long_words=True, break_on_hyphens=True) or [""]
        return lines[:2] + [lines[2][: w - 1] + "…"] if len(lines) > 3 else lines

    out = []
    for r in [header, *rows]:
        cells = [cell(c, w) for c, w in zip(r, widths)]
        for i in range(max(len(c) for c in cells)):
            out.append("  ".join((c[i] if i < len(c) else "").ljust(w) for c, w in zip(cells, widths)).rstrip())
        if r is header:
            out.append("  ".join("-" * w for w in widths))
    return out


def _num(v) -> str:
    import math

    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def compare_text(c, width: int) -> str:
    """``runs compare`` for a terminal: runs as columns, results and the differing config keys as
    rows, every line within ``width`` characters."""
    t = c.table
    labels = [str(x) for x in t["label"]]
    rows = [["status", *[str(x) for x in t["status"]]], ["score", *map(_num, t["score"])],
            ["wall s", *map(_num, t["wall_s"])], ["steps", *map(_num, t["steps"])]]
    for m in [col[len("final."):] for col in t.columns if col.startswith("final.")]:
        rows.append([f"{m} final", *map(_num, t[f"final.{m}"])])
        if f"best.{m}" in t and list(t[f"best.{m}"]) != list(t[f"final.{m}"]):
            rows.append([f"{m} best", *map(_num, t[f"best.{m}"])])
    out = ["Results", *grid(["run", *labels], rows, width), ""]
    if c.diff.empty:
        out.append("configs: identical")
    else:
        diff_rows = [[str(k), *[("-" if str(v) == "<missing>" else str(v)) for v in row]] for k, row in c.diff.iterrows()]
        out += ["config keys that differ", *grid(["key", *labels], diff_rows, width)]
    return "\n".join(out)


def cmd_compare(args: argparse.Namespace) -> int:
    import shutil

    from ..meta.compare import compare
    from ._lookup import open_log, resolve_all

    if len(args.ids) < 2:
        raise ValueError("runs compare: give two or more run ids")
    log = open_log(args.db, ref=args.ids[0])
    c = compare(resolve_all(log, args.ids), log=log, metrics=args.metric)
    if args.json:
        out = {"table": json.loads(c.table.reset_index().to_json(orient="records")),
               "diff": {k: dict(zip(c.diff.columns, map(str, v))) for k, v in c.diff.iterrows()}}
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        width = max(60, min(160, shutil.get_terminal_size((100, 24)).columns))
        print(compare_text(c, width))
    if args.plot:
        from ..widgets.charts import png
        from ..widgets.plots import curves_chart

        chart = curves_chart(c.records, args.curve, smooth=args.smooth, title=f"{args.curve} of {len(c.records)} runs")
        with open(args.plot, "wb") as fh:
            fh.write(png(chart, dpi=100))
        print(f"curves of {args.curve} saved to {args.plot}", file=sys.stderr)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from ..meta.recommend import recommend

    try:
        rec = recommend(args.data, log=_log(args.db), k=args.k, kind=args.kind)
    except ValueError as exc:
        if "run a sweep first" not in str(exc):
            raise
        # say which commands fill the run log with scored past tasks
        raise ValueError(f"{exc}: python -m workbench sweep --data DIR --space FILE, or python -m workbench tune"
                         " --data DIR, on a few past datasets") from None
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
