"""Count how the command corpus fares against a checkout: refused (ConfigError), naming the field, crashed, accepted.

    PYTHONPATH=<checkout> python tests/hostile/measure_corpus.py [--json OUT]

Runs the pre-run check only (``training.prepare``; on checkouts before the runner merge, the old
``jobs.prepare`` for baseline commands and ``learners.fewshot.parse_command`` for few-shot ones):
nothing trains, no run is created. The process caps its address space at 8 GiB first, so a
command that allocates a memory bomb on old code fails in this process instead of paging out
the machine. What the README's reliability table reports as "before" and "after".
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _pre_run_check():
    """``check(command, data)`` of the checkout on the path, and the ConfigError class it raises."""
    try:
        from workbench import RunLog, training
        from workbench.registry import ConfigError

        log = RunLog(Path(tempfile.mkdtemp(prefix="corpus-log-")) / "runs.db")

        def check(command, data, needs_log=False):
            prepared = training.prepare(command, data)
            if needs_log:  # a command naming another run (init_from) is checked when its run is created
                run = training.create_run(log, prepared)
                raise AssertionError(f"run {run.id} was created")
            return prepared

        return check, ConfigError
    except ImportError:
        from workbench import jobs
        from workbench.config import ConfigError
        from workbench.learners import fewshot

        def old(command, data, needs_log=False):
            d = jobs.command_dict(command)
            if isinstance(d, dict) and d.get("kind", "baseline") in jobs.FEWSHOT_KINDS:
                return fewshot.parse_command(d)
            return jobs.prepare(d, data)

        return old, ConfigError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the per-case outcomes here")
    ap.add_argument("--only", help="comma-separated case ids to run (default: all)")
    args = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
    os.environ.setdefault("WORKBENCH_HOME", tempfile.mkdtemp(prefix="workbench-corpus-"))
    import torch

    torch.set_num_threads(1)
    from command_corpus import CASES
    from conftest import SHAPES, draw_folder

    base = Path(tempfile.mkdtemp(prefix="corpus-data-"))
    folders = {"baseline": draw_folder(base / "shapes", SHAPES, 6),
               "fewshot": draw_folder(base / "fewshot", tuple(f"c{i:02d}" for i in range(12)), 4)}
    check, config_error = _pre_run_check()
    from command_corpus import BASELINE, FEWSHOT

    for base, key in ((BASELINE, "baseline"), (FEWSHOT, "fewshot")):  # warm up imports (not timed)
        try:
            check(base, folders[key])
        except Exception as exc:  # noqa: BLE001 - an old checkout may not take a base command
            print(f"warning: the {key} base command is refused here: {str(exc)[:120]}")
    rows, counts = [], {"tried": 0, "refused": 0, "named": 0, "crashed": 0, "accepted": 0}
    only = set(args.only.split(",")) if args.only else None
    for case in CASES:
        if only is not None and case.id not in only:
            continue
        data = None if isinstance(case.command, dict) and "data" in case.command else folders[case.base]
        t0 = time.perf_counter()
        try:
            check(case.command, data, case.needs_log)
            outcome, detail = "accepted", ""
        except config_error as exc:
            paths = [getattr(p, "path", "") for p in getattr(exc, "problems", [exc])]
            outcome, detail = ("named" if case.path in paths else "refused"), str(exc).splitlines()[0][:160]
        except BaseException as exc:  # noqa: BLE001 - a crash is what we count
            outcome, detail = "crashed", f"{type(exc).__name__}: {str(exc)[:140]}"
        seconds = time.perf_counter() - t0
        counts["tried"] += 1
        counts[outcome] += 1
        counts["refused"] += outcome == "named"
        rows.append({"id": case.id, "outcome": outcome, "seconds": round(seconds, 4), "detail": detail})
    slowest = max(rows, key=lambda r: r["seconds"])
    print(f"tried {counts['tried']}: refused with a ConfigError {counts['refused']} (naming the field"
          f" {counts['named']}), other exceptions {counts['crashed']}, accepted {counts['accepted']};"
          f" slowest {slowest['id']} {slowest['seconds']:.2f} s")
    for cid in ("ten-mb-name", "ten-mb-layers", "ten-mb-dict-name", "million-item-list", "deep-json-text", "deep-dict"):
        r = next((r for r in rows if r["id"] == cid), None)
        if r is not None:
            print(f"  {cid}: {r['outcome']} in {r['seconds']:.4f} s")
    for r in rows:
        if r["outcome"] != "named":
            print(f"  {r['outcome']:8} {r['id']:32} {r['detail']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"counts": counts, "cases": rows}, indent=1))


if __name__ == "__main__":
    main()
