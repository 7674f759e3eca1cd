"""``python -m workbench tune --data DIR`` and ``python -m workbench sweep --data DIR --space FILE``.

Both run an Optuna study through :func:`workbench.meta.tune.tune`: ``tune`` with the warm
start and the learned pruner, ``sweep`` as a plain grid or random search (Optuna's
``GridSampler`` / ``RandomSampler``, no memory, no pruning). A rerun with the same arguments
resumes the same study (its journal file keeps the trials).
"""
from __future__ import annotations

import argparse
import json
import sys


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="image folder (DIR/<class>/<image>)")
    p.add_argument("--space", metavar="FILE", help="search space JSON (dotted key → range; default: the shipped one)")
    p.add_argument("--base", metavar="FILE", help="training command JSON the trials start from")
    p.add_argument("--epochs", type=int, help="epochs per trial (overrides the base command)")
    p.add_argument("--workers", type=int, default=1, help="processes running trials at once (default 1)")
    p.add_argument("--storage", metavar="URL|FILE", help="Optuna storage: an RDB URL or a journal file")
    p.add_argument("--name", help="study name (default: derived from data, space and base; a rerun resumes)")
    p.add_argument("--db", metavar="PATH", help="run log: a file, tinydb:PATH or postgresql://… (default: $WORKBENCH_DB or $WORKBENCH_HOME/runs.db)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--no-test", action="store_true", help="do not test each trial on its held-out split")
    p.add_argument("--json", action="store_true", help="best trial and study summary as JSON")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="tune a command for a dataset (warm start, learned pruner)",
                       description="Search training commands for DIR with Optuna TPE, warm-started from the most "
                                   "similar past tasks and pruned by a model learned from stored curves.")
    _common(p)
    p.add_argument("--budget", default="20 trials", help="'20 trials', '240 epochs' or '10 min' (default 20 trials)")
    p.add_argument("--pruner", default="learned", choices=["learned", "median", "hyperband", "none"],
                   help="early stopping of trials (default learned: trained on stored curves)")
    p.add_argument("--no-warm-start", action="store_true", help="cold search (no memory)")
    p.add_argument("--history", metavar="FILE", help="past runs to learn from (export .jsonl[.gz]; default: "
                                                      "the run log plus the shipped meta-dataset)")
    p.set_defaults(func=cmd_tune)
    q = sub.add_parser("sweep", help="grid or random search of a space (Optuna, no memory)",
                       description="Run every point of a categorical space (grid) or N random points as trials.")
    _common(q)
    q.add_argument("--strategy", default="grid", choices=["grid", "random"], help="GridSampler or RandomSampler")
    q.add_argument("--n", type=int, help="trials (random: required; grid: default the whole grid)")
    q.set_defaults(func=cmd_sweep)


def _report(res, as_json: bool) -> int:
    best = res.best
    if as_json:
        json.dump({"study": res.name, "best": best, "epochs": res.epochs, "notes": res.notes,
                   "trials": json.loads(res.trials().to_json(orient="records"))}, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    for n in res.notes:
        print(n)
    t = res.trials()
    print(f"study {res.name}: {len(t)} trials, {res.epochs} epochs trained")
    if best is None:
        print("no trial finished")
        return 1
    print(f"best: trial {best['trial']} value {best['value']:.4f} (test accuracy {best['test_accuracy']}) "
          f"run {best['run_id']}")
    print(json.dumps(best["params"], indent=1, default=str))
    return 0


def _base(path: str | None):
    if not path:
        return None
    from ..jobs import command_dict

    return command_dict(path)


def _log(db: str | None):
    from ..runlog import RunLog

    return RunLog(db)


def cmd_tune(args: argparse.Namespace) -> int:
    from ..meta.tune import tune

    res = tune(args.data, space=args.space, budget=args.budget, base=_base(args.base), name=args.name,
               log=_log(args.db), history=args.history or "auto", warm_start=not args.no_warm_start,
               pruner=args.pruner, workers=args.workers, storage=args.storage, seed=args.seed,
               test=not args.no_test, epochs=args.epochs, progress=True)
    return _report(res, args.json)


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..meta.space import grid_size, load_space
    from ..meta.tune import tune

    if not args.space:
        raise ValueError("sweep: --space FILE is required (a JSON object of dotted key → list of values)")
    space = load_space(args.space)
    if args.strategy == "random" and not args.n:
        raise ValueError("sweep --strategy random: --n N (how many trials) is required")
    n = args.n or grid_size(space)
    res = tune(args.data, space=space, budget=f"{n} trials", base=_base(args.base), name=args.name,
               log=_log(args.db), history=None, warm_start=False, pruner="none", sampler=args.strategy,
               workers=args.workers, storage=args.storage, seed=args.seed, test=not args.no_test,
               epochs=args.epochs, progress=True)
    return _report(res, args.json)
