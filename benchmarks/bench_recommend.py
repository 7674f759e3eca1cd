"""Leave-one-task-out evaluation of the warm-start recommender.

    python benchmarks/bench_recommend.py [--home DIR] [--quick] [--epochs 6] [--k 3]

1. Tasks: 5 glyph alphabets (10 classes × 40 images, 28×28 grayscale) and 3 sets scraped
   through the offline SerpApi stub (5 classes × 60 images, 64×64 colour) — 8 tasks.
2. On each task, a grid sweep of 20 recipes (optimizer × batch size × width of the small
   CNN) with the *default command* (Adam 1e-3, batch 32, small_cnn width 32 — the
   ``TrainingCommand`` defaults) among them; every variant is trained and then tested on
   its held-out split (score = test accuracy). Resumable: a rerun skips finished variants.
3. Leave one task out: the recommender sees only the *other* tasks' runs, recommends a
   recipe for the held-out task from its meta-features, and we read that recipe's test
   accuracy on the held-out task from the grid (it was trained there with the same seed as
   every other recipe, so no selection happened on the held-out task). Compared with the
   default command, with "the best recipe on average over all other tasks" (no similarity,
   k = all) and with the oracle (best recipe on the held-out task). Because one seed is
   noisy (a 10-class glyph test split has 120 images), the recommended and the default
   command are then trained afresh on the held-out task with ``--seeds`` more seeds (paired:
   the seed also draws the split) and compared on the mean.

(The gone-bad detector's replay that used to close this script is gone with the detector: runs
gone bad are called by the learned pruner's model, measured in ``bench_tune.py``.)

Timings are not the point here; single runs are noisy (one seed each), say so when quoting.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default=str(Path(__file__).resolve().parent / "out" / "meta-home"),
                    help="WORKBENCH_HOME for the benchmark's datasets and run log (kept: reruns resume)")
    ap.add_argument("--quick", action="store_true", help="6 tasks, 8 recipes, 3 epochs (a smoke test)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--k", type=int, default=3, help="nearest tasks that vote")
    ap.add_argument("--seeds", type=int, default=3,
                    help="fresh seeds for the paired recommended-vs-default re-runs on each held-out task")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)

    os.environ["WORKBENCH_HOME"] = args.home
    import torch

    torch.set_num_threads(1)  # the machine is shared
    from workbench import RunLog
    from workbench.meta.common import config_key, run_score
    from workbench.meta.features import task_features
    from workbench.meta.recommend import TaskIndex, recommend
    from workbench.meta.sweep import Sweep
    from workbench.meta.tasks import task_family

    t0 = time.perf_counter()
    n_glyph, n_scraped = (4, 2) if args.quick else (5, 3)
    tasks = task_family(n_glyph=n_glyph, n_scraped=n_scraped, n_classes=10, per_class=40, scraped_per_class=60)
    print(f"{len(tasks)} tasks ready in {time.perf_counter() - t0:.0f} s: {', '.join(tasks)}", flush=True)

    base = {"kind": "baseline", "model": {"preset": "small_cnn", "params": {"hidden": 32}},
            "optimizer": {"name": "Adam", "params": {"lr": 1e-3}}, "batch_size": 32,
            "epochs": 3 if args.quick else args.epochs, "image_size": 32, "channels": 3,
            "split": {"train": 0.6, "val": 0.1, "test": 0.3}, "seed": 0}
    optimizers = [{"name": "Adam", "params": {"lr": 1e-3}}, {"name": "Adam", "params": {"lr": 1e-2}},
                  {"name": "Adam", "params": {"lr": 1e-1}}, {"name": "SGD", "params": {"lr": 0.1, "momentum": 0.9}},
                  {"name": "SGD", "params": {"lr": 0.005}}]
    space = {"optimizer": optimizers[:2] + optimizers[3:4] + optimizers[4:] if args.quick else optimizers,
             "batch_size": [16, 32], "model.params.hidden": [16, 32]}
    if args.quick:
        space["optimizer"] = [optimizers[0], optimizers[1], optimizers[3], optimizers[4]]
        space["model.params.hidden"] = [32]
    from workbench.commands import TrainingCommand

    default_key = config_key(TrainingCommand.from_dict(base).to_dict())  # as stored in the run records
    log = RunLog()
    for name, path in tasks.items():
        t1 = time.perf_counter()
        s = Sweep(base, space, data=str(path), name=f"bench-{name}", log=log, test=True, tags=("bench-recommend",))
        todo = len(s.pending())
        s.run()
        bad = [v for v in s.variants if v.status != "completed"]
        print(f"  {name}: {len(s.variants)} recipes ({todo} run now) in {time.perf_counter() - t1:.0f} s"
              + (f"; {len(bad)} not completed: {[(v.index, v.status, (v.error or '')[:80]) for v in bad]}" if bad else ""),
              flush=True)
        if s.errors:
            print("   errors:", s.errors[:3], flush=True)

    runs = [log.get(r["id"], metrics=False) for r in log.find(tag="bench-recommend", status="completed")]
    index = TaskIndex(runs, log=log)
    path_of = {name: str(Path(p).resolve()) for name, p in tasks.items()}
    key_of = {name: index.find_path(p) for name, p in path_of.items()}
    rows = []
    for name, key in key_of.items():
        if key is None:
            print(f"  {name}: no completed runs, left out")
            continue
        task = index.tasks[key]
        scores: dict[str, list[float]] = {}
        for r in task.runs:
            scores.setdefault(r["config_key"], []).append(r["score"])
        mean = {k: statistics.fmean(v) for k, v in scores.items()}
        rest = index.without(key)
        feats = task_features(path_of[name])
        rec = recommend(feats, index=rest, k=args.k, exclude_self=False)
        glob = recommend(feats, index=rest, k=len(rest), exclude_self=False)  # every other task votes
        if default_key not in mean:
            print(f"  {name}: default recipe has no completed run, left out")
            continue
        rows.append({"task": name, "default": mean[default_key], "recommended": mean.get(rec.config_key),
                     "global_best": mean.get(glob.config_key), "oracle": max(mean.values()),
                     "neighbours": list(rec.neighbours["task"]), "command": rec.command,
                     "recipe": {k: v for k, v in rec.params.items() if k in ("optimizer.name", "optimizer.params.lr",
                                                                           "optimizer.params.momentum", "batch_size",
                                                                           "model.params.hidden")}})
    # Paired re-runs: the recommended and the default command trained afresh on the held-out task
    # with seeds 1..N (the seed also draws the split, so each pair shares its test images).
    for r in rows:
        folder = path_of[r["task"]]
        for label, cmd in (("default", base), ("recommended", r["command"])):
            s = Sweep({**cmd, "epochs": base["epochs"]}, {"seed": list(range(1, args.seeds + 1))}, data=folder,
                      name=f"loto-{r['task']}-{label}", log=log, test=True, tags=("bench-recommend-eval",))
            s.run()
            accs = [run_score(x) for x in s.runs()]
            r[f"{label}_seeds"] = [a for a in accs if a is not None]
    print("\nLeave-one-task-out (test accuracy on the held-out task; grid: one seed per recipe):")
    print(f"{'task':28s} {'default':>8s} {'recommended':>12s} {'global-best':>12s} {'oracle':>7s}  nearest tasks")
    for r in rows:
        print(f"{r['task']:28s} {r['default']:8.3f} {r['recommended']:12.3f} {r['global_best']:12.3f} "
              f"{r['oracle']:7.3f}  {', '.join(r['neighbours'])}")
        print(f"{'':28s} recipe: {r['recipe']}")
    n = len(rows)
    wins = sum(r["recommended"] > r["default"] for r in rows)
    ties = sum(r["recommended"] == r["default"] for r in rows)
    gain = statistics.fmean(r["recommended"] - r["default"] for r in rows) if rows else float("nan")
    gwins = sum(r["recommended"] > r["global_best"] for r in rows)
    gties = sum(r["recommended"] == r["global_best"] for r in rows)
    ggain = statistics.fmean(r["recommended"] - r["global_best"] for r in rows) if rows else float("nan")
    print(f"\nPaired re-runs on each held-out task, seeds 1..{args.seeds} (mean test accuracy):")
    print(f"{'task':28s} {'default':>8s} {'recommended':>12s}  per-seed (default / recommended)")
    for r in rows:
        d, m = r["default_seeds"], r["recommended_seeds"]
        r["default_mean"], r["recommended_mean"] = statistics.fmean(d), statistics.fmean(m)
        print(f"{r['task']:28s} {r['default_mean']:8.3f} {r['recommended_mean']:12.3f}  "
              f"{' '.join(f'{x:.2f}' for x in d)} / {' '.join(f'{x:.2f}' for x in m)}")
    swins = sum(r["recommended_mean"] > r["default_mean"] for r in rows)
    sties = sum(r["recommended_mean"] == r["default_mean"] for r in rows)
    sgain = statistics.fmean(r["recommended_mean"] - r["default_mean"] for r in rows) if rows else float("nan")
    pairs = [(a, b) for r in rows for a, b in zip(r["default_seeds"], r["recommended_seeds"])]
    pwins = sum(b > a for a, b in pairs)
    print(f"re-runs: recommended beats default on {swins}/{n} tasks (ties {sties}), win rate "
          f"{swins / max(n, 1):.2f}, mean gain {100 * sgain:+.1f} points; per seed pair {pwins}/{len(pairs)}")
    print(f"\ngrid lookup: recommended vs default: wins {wins}/{n} (ties {ties}), win rate {wins / max(n, 1):.2f}, "
          f"mean accuracy gain {100 * gain:+.1f} points")
    print(f"recommended vs global-best: wins {gwins}/{n} (ties {gties}), mean gain {100 * ggain:+.1f} points")
    if rows:
        print(f"oracle vs default: mean gain {100 * statistics.fmean(r['oracle'] - r['default'] for r in rows):+.1f} points")

    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "win_rate": wins / max(n, 1), "mean_gain": gain,
                                               "reruns": {"win_rate": swins / max(n, 1), "mean_gain": sgain,
                                                          "pair_wins": pwins, "pairs": len(pairs)},
                                               "vs_global": {"wins": gwins, "mean_gain": ggain}}, indent=1,
                                              default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
