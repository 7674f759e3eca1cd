"""``python -m workbench runs list|show|rm|export|import``: read, tidy and move the run log, and send runs
to MLflow or TensorBoard (``runs export --to FORMAT DEST``)."""
from __future__ import annotations

import argparse
import json
import sys

from ..provenance import lineage_text, lr_find_text, resume_text
from ..runlog.records import RunRecord
from ..runlog import RunLog
from ..exporters.cli import add_export_options, cmd_export_to
from .meta import register_compare


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list, show, remove, export or import runs",
                       description="Read, tidy and move the run log ($WORKBENCH_DB, else $WORKBENCH_HOME/runs.db).")
    rs = p.add_subparsers(dest="runs_command", metavar="ACTION")

    def db_opt(q: argparse.ArgumentParser) -> None:
        q.add_argument("--db", metavar="PATH", help="run-log file or postgresql:// URL"
                       " (default: $WORKBENCH_DB, else $WORKBENCH_HOME/runs.db)")

    q = rs.add_parser("list", help="one line per run")
    db_opt(q)
    q.add_argument("--status", help="only runs with this status")
    q.add_argument("--kind", help="only runs of this kind")
    q.add_argument("--name", help="only runs with this name")
    q.add_argument("--tag", help="only runs with this tag")
    q.add_argument("--json", action="store_true", help="JSON array of records")
    q.set_defaults(func=cmd_list)

    q = rs.add_parser("show", help="one run's record")
    db_opt(q)
    q.add_argument("id", help="run id, unique id prefix, or name")
    q.add_argument("--json", action="store_true", help="the full record as JSON, metrics included")
    q.set_defaults(func=cmd_show)

    q = rs.add_parser("rm", help="delete a run and its folder")
    db_opt(q)
    q.add_argument("id", help="run id, unique id prefix, or name")
    q.set_defaults(func=cmd_rm)
    register_transfer(rs, db_opt)
    register_compare(rs, db_opt)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _summary_text(rec: dict) -> str:
    score = RunRecord.from_dict(rec).score()
    if score is not None:
        return str(score)  # with the matching CI (few-shot runs: test_ci95)
    last = (rec.get("metrics_summary") or {}).get("train_loss", {}).get("last")
    return f"train_loss={last:.4f}" if isinstance(last, (int, float)) else ""


def format_table(recs: list[dict]) -> str:
    """A fixed-width table of runs (used by ``runs list`` and the tour)."""
    if not recs:
        return "(no runs)"
    rows = [("ID", "NAME", "KIND", "STATUS", "CREATED", "RESULT")]
    for r in recs:
        rows.append((r["id"], str(r.get("name", ""))[:28], r.get("kind", ""), r.get("status", ""),
                     str(r.get("created_at", ""))[:19].replace("T", " "), _summary_text(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def cmd_list(args: argparse.Namespace) -> int:
    log = RunLog(args.db)
    recs = log.find(status=args.status, kind=args.kind, name=args.name, tag=args.tag)
    if args.json:
        json.dump(recs, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        print(format_table(recs))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    log = RunLog(args.db)
    rec = log.get(args.id)
    if args.json:
        json.dump(rec, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    metrics = rec.pop("metrics", [])
    for key in ("id", "name", "kind", "status", "created_at", "updated_at", "durations", "tags", "error",
                "dataset", "summary", "env", "dir", "artifacts"):
        if rec.get(key) not in (None, {}, [], ""):
            print(f"{key:>11}: {json.dumps(rec[key], default=str) if isinstance(rec[key], (dict, list)) else rec[key]}")
    for key, text in (("lineage", lineage_text(rec)), ("resumed", resume_text(rec)),
                      ("lr_find", lr_find_text(rec)), ("children", _children(log, rec["id"]))):
        if text:
            print(f"{key:>11}: {text}")
    print(f"{'config':>11}: {json.dumps(rec.get('config'), indent=1, default=str)}")
    if rec.get("epochs"):
        print(f"{'epochs':>11}: {len(rec['epochs'])}; last {json.dumps(rec['epochs'][-1])}")
    print(f"{'metrics':>11}: {len(metrics)} rows; last {json.dumps(metrics[-1]) if metrics else '-'}")
    return 0


def _children(log: RunLog, run_id: str) -> str | None:
    kids = [r for r in log.runs() if (r.get("lineage") or {}).get("parent") == run_id]
    return ", ".join(f"{r.get('name')} ({r['id']})" for r in kids) or None


def cmd_rm(args: argparse.Namespace) -> int:
    log = RunLog(args.db)
    rid = log.resolve(args.id)
    log.delete(rid)
    print(f"removed {rid}")
    return 0


def register_transfer(rs: argparse._SubParsersAction, db_opt) -> None:
    """``runs export FILE`` / ``runs import FILE``: JSON lines of records with their metrics."""
    q = rs.add_parser("export", help="write runs as JSON lines (FILE), or to MLflow / TensorBoard (--to FORMAT DEST)",
                      description="runs export FILE: JSON lines of records with their metrics (gzip if FILE ends"
                                  " in .gz). runs export --to mlflow DIR|URI / --to tensorboard DIR: params, per-step"
                                  " metrics, tags and checkpoints for the tools a team already uses (runs already"
                                  " exported there are skipped).")
    db_opt(q)
    q.add_argument("file", metavar="FILE", nargs="?", help="where to write JSON lines (.jsonl or .jsonl.gz)")
    add_export_options(q)
    q.add_argument("--status", help="only runs with this status")
    q.add_argument("--kind", help="only runs of this kind")
    q.add_argument("--name", help="only runs with this name")
    q.add_argument("--tag", help="only runs with this tag")
    q.set_defaults(func=cmd_export)
    q = rs.add_parser("import", help="add the runs of an export file (idempotent by run id)")
    db_opt(q)
    q.add_argument("file", metavar="FILE", help="a file written by 'runs export'")
    q.add_argument("--overwrite", action="store_true",
                   help="replace stored runs whose content differs (default: refuse and import nothing)")
    q.set_defaults(func=cmd_import)


def cmd_export(args: argparse.Namespace) -> int:
    if args.to:
        if args.file:
            raise ValueError("runs export: give FILE (JSON lines) or --to FORMAT DEST, not both")
        return cmd_export_to(args)
    if not args.file:
        raise ValueError("runs export: give FILE (JSON lines) or --to mlflow DIR|URI / --to tensorboard DIR")
    log = RunLog(args.db)
    ids = None
    if any(v is not None for v in (args.status, args.kind, args.name, args.tag)):
        ids = [r["id"] for r in log.find(status=args.status, kind=args.kind, name=args.name, tag=args.tag)]
    n = log.export(args.file, ids)
    print(f"exported {n} run{'s' * (n != 1)} to {args.file}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    res = RunLog(args.db).import_(args.file, overwrite=args.overwrite)
    print(f"imported {res['added']} new run{'s' * (res['added'] != 1)} from {args.file}"
          f" ({res['unchanged']} already there, {res['replaced']} replaced)")
    return 0
