"""``python -m workbench runs list|show|rm|export|import``: read, tidy and move the run log, and send runs
to MLflow or TensorBoard (``runs export --to FORMAT DEST``).

Runs are named on the command line by id, a unique id prefix (the timestamp) or suffix (the
random tail), or a name; an ambiguous reference is an error listing the candidates. Reads never
create anything: a missing run log is reported, not made.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..exporters.cli import add_export_options, cmd_export_to
from ..provenance import lineage_text, lr_find_text, resume_text
from ..runlog import STATUSES, RunLog
from ..runlog.records import RunRecord
from ._lookup import check_choice, confirm, describe, open_log, resolve
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
    q.add_argument("--status", help=f"only runs with this status ({', '.join(STATUSES)})")
    q.add_argument("--kind", help="only runs of this kind (baseline, maml, …, scrape)")
    q.add_argument("--name", help="only runs whose name contains this (case-insensitive)")
    q.add_argument("--tag", help="only runs with this tag")
    q.add_argument("--json", action="store_true", help="JSON array of records")
    q.set_defaults(func=cmd_list)

    q = rs.add_parser("show", help="one run's record")
    db_opt(q)
    q.add_argument("id", help="run id, unique id prefix or suffix, or name")
    q.add_argument("--json", action="store_true", help="the full record as JSON, metrics included")
    q.set_defaults(func=cmd_show)

    q = rs.add_parser("rm", help="delete a run and its folder (asks first)")
    db_opt(q)
    q.add_argument("id", help="run id, unique id prefix or suffix, or name")
    q.add_argument("-y", "--yes", action="store_true", help="delete without asking")
    q.set_defaults(func=cmd_rm)
    register_transfer(rs, db_opt)
    register_compare(rs, db_opt)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def known_kinds(recs: list[dict]) -> set[str]:
    """Every kind a run can have: the command language's, scraping, and any already in the log."""
    from ..commands import KINDS

    return set(KINDS) | {"scrape"} | {str(r.get("kind")) for r in recs if r.get("kind")}


def _summary_text(rec: dict) -> str:
    score = RunRecord.from_dict(rec).score()
    if score is not None:
        return str(score)  # with the matching CI (few-shot runs: test_ci95)
    last = (rec.get("metrics_summary") or {}).get("train_loss", {}).get("last")
    return f"train_loss={last:.4f}" if isinstance(last, (int, float)) else ""


def _short_name(name: str, width: int = 36) -> str:
    """A name cut in its middle, so the end that tells variants apart stays (``nb04-…/003 lr=0.01``)."""
    if len(name) <= width:
        return name
    keep = width - 1
    return name[: keep // 3] + "…" + name[-(keep - keep // 3):]


def format_table(recs: list[dict]) -> str:
    """A fixed-width table of runs (used by ``runs list`` and the tour)."""
    if not recs:
        return "(no runs)"
    rows = [("ID", "NAME", "KIND", "STATUS", "CREATED", "RESULT")]
    for r in recs:
        rows.append((r["id"], _short_name(str(r.get("name", ""))), r.get("kind", ""), r.get("status", ""),
                     str(r.get("created_at", ""))[:19].replace("T", " "), _summary_text(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def cmd_list(args: argparse.Namespace) -> int:
    check_choice(args.status, STATUSES, "--status")
    log = open_log(args.db, must_exist=False)
    recs = log.runs() if log is not None else []
    check_choice(args.kind, known_kinds(recs), "--kind")
    needle = (args.name or "").lower()
    recs = [r for r in recs if (args.status is None or r.get("status") == args.status)
            and (args.kind is None or r.get("kind") == args.kind)
            and (not needle or needle in str(r.get("name", "")).lower())
            and (args.tag is None or args.tag in (r.get("tags") or []))]
    if args.json:
        json.dump(recs, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    elif log is None:
        print(f"(no runs: no run log at {args.db or 'the default location'} yet)")
    else:
        print(format_table(recs))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    log = open_log(args.db, ref=args.id)
    rec = log.get(resolve(log, args.id))
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
    log = open_log(args.db, ref=args.id)
    rid = resolve(log, args.id)
    rec = log.get(rid, metrics=False)
    if not args.yes and not confirm(f"delete run {describe(rec)} and its folder?"):
        print("not removed", file=sys.stderr)
        return 1
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
