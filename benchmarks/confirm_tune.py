"""Confirm the replayed result with real training: ``tune()`` on held-out tasks, memory vs cold.

    nice -n 10 python benchmarks/confirm_tune.py [--tasks gratings-b,objects-c] [--budget 120] [--json FILE]

For each held-out task (its image folder regenerated from the shipped task spec), two real
studies with the same epoch budget: the workbench (warm start from the *other* tasks of the
shipped meta-dataset + the learned pruner trained on them) and cold Optuna TPE + MedianPruner.
Every trial is a real training run in the run log. Printed: epochs until the best-so-far came
within 1 point of the task's oracle (from the meta-dataset), best validation value and its test
accuracy, trials and wall time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="gratings-b,objects-c")
    ap.add_argument("--budget", type=int, default=120, help="epochs per study (default 120 = 10 full trainings)")
    ap.add_argument("--home", type=Path, help="folder for task images, runs and studies (default $WORKBENCH_HOME)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from workbench import paths
    from workbench.meta import synthetic
    from workbench.meta.replay import MetaDataset
    from workbench.meta.space import metadataset_space
    from workbench.meta.tune import SHIPPED_METADATASET, tune
    from workbench.runlog import RunLog

    from make_metadataset import base_command  # the very command the stored runs started from

    home = (args.home or paths.home() / "tune-confirm").expanduser()
    md = MetaDataset.load(SHIPPED_METADATASET)
    log = RunLog(home / "runs.json")
    out = {}
    for name in args.tasks.split(","):
        folder = synthetic.write_task(synthetic.task_spec(name), home / "datasets")
        target = md.tasks[name].oracle - 0.01
        hist = md.without(name)  # the memory never holds the held-out task
        out[name] = {"oracle": md.tasks[name].oracle}
        for label, kw in (("workbench", {"history": hist, "warm_start": True, "pruner": "learned"}),
                          ("tpe+median", {"history": None, "warm_start": False, "pruner": "median"})):
            t0 = time.perf_counter()
            res = tune(folder, space=metadataset_space(), budget=f"{args.budget} epochs",
                       base=base_command(synthetic.task_spec(name).size, md.epochs), log=log,
                       name=f"confirm-{name}-{label}", **kw)
            wall = time.perf_counter() - t0
            curve = res.anytime()
            hit = curve[curve["best"].fillna(0) >= target - 1e-9]
            best = res.best or {}
            out[name][label] = {"epochs_to_target": int(hit["epochs"].iloc[0]) if len(hit) else None,
                                "epochs": res.epochs, "trials": len(res.trials()),
                                "pruned": int((res.trials()["state"] == "PRUNED").sum()),
                                "best_value": best.get("value"), "best_test_accuracy": best.get("test_accuracy"),
                                "best_params": best.get("params"), "seconds": round(wall, 1), "notes": res.notes}
            print(f"{name} {label}: to target {out[name][label]['epochs_to_target']} epochs; best "
                  f"{best.get('value', float('nan')):.3f} (test {best.get('test_accuracy')}) after {res.epochs} "
                  f"epochs, {len(res.trials())} trials, {wall:.0f}s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
