"""Leave-one-task-out replay of tuning methods on the shipped meta-dataset.

    python benchmarks/bench_tune.py [--seeds 0-9] [--json FILE] [--plot docs/tune_anytime.png]

For every held-out task the memory (warm start, learned pruner, global prior) sees only the
other tasks' runs. Every method runs as an Optuna study against the held-out task's stored
curves (:mod:`workbench.meta.replay`), for each seed. Reported per method:

- **compute to target**: epochs trained until the best finished trial is within 1 accuracy
  point (validation) of the task's oracle (the best grid point), median over seeds
  (``inf`` when not reached within the budget);
- **normalised regret** (oracle − best) / (oracle − worst grid point) at budgets of 1×, 3× and
  10× one full training;
- ratios against TPE + MedianPruner (the baseline measured in the same run) and win counts;
- a fixed-trial comparison of pruners (epochs spent and final quality after N trials).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from multiprocessing import get_context
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DEFAULT_DATA = HERE.parent / "workbench" / "meta" / "data" / "metadataset.jsonl.gz"  # the package data

METHODS = ("default", "random", "grid", "tpe", "tpe+median", "tpe+hyperband", "tpe+learned", "global-prior",
           "warm-start", "warm+priors", "warm+median", "workbench")
#: The default command on the grid: Adam 1e-3, small CNN width 32, no augmentation, batch 16.
DEFAULT_PARAMS = {"optimizer.params.lr": 0.001, "model.params.hidden": 32, "transforms": "none", "batch_size": 16}
BUDGET_MULTIPLES = (1, 3, 10)


def _seeds(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def _study_parts(method: str, seed: int, ctx: dict):
    import optuna

    from workbench.meta.pruning import LearnedPruner

    E = ctx["epochs"]
    tpe = optuna.samplers.TPESampler(seed=seed)
    pruners = {"median": optuna.pruners.MedianPruner(),
               "hyperband": optuna.pruners.HyperbandPruner(min_resource=1, max_resource=E, reduction_factor=3),
               "learned": LearnedPruner(ctx["model"], max_epochs=E, memory=ctx["memory"])}
    ws = ctx["warm"]
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed), None, [], []
    if method == "grid":
        return optuna.samplers.GridSampler(ctx["space"].grid_search_space(), seed=seed), None, [], []
    if method == "tpe":
        return tpe, None, [], []
    if method.startswith("tpe+"):
        return tpe, pruners[method[4:]], [], []
    if method == "global-prior":
        return tpe, None, ctx["global"], []
    if method == "warm-start":  # what tune() does: enqueue the neighbours' best configurations
        return tpe, None, ws.enqueue(), []
    if method == "warm+priors":  # the ablation: also their runs as prior trials (study.add_trials)
        return tpe, None, ws.enqueue(), ws.prior_trials
    if method == "warm+median":
        return tpe, pruners["median"], ws.enqueue(), []
    if method == "workbench":
        return tpe, pruners["learned"], ws.enqueue(), []
    raise ValueError(method)


class _Foresight:
    """Not a method: a pruner that reads the held-out curve's end (how much pruning *could* save)."""

    def __new__(cls, task, space):
        import optuna

        class Foresight(optuna.pruners.BasePruner):
            def prune(self, study, trial):
                done = [t.value for t in study.get_trials(deepcopy=False,
                                                          states=(optuna.trial.TrialState.COMPLETE,))]
                if not done or max(trial.intermediate_values) < 1:
                    return False
                return task.curves[space.key_of(trial.params)].value <= max(done)

        return Foresight()


def _one_task(args: tuple) -> dict:
    """Every method × seed on one held-out task (runs in a worker process)."""
    import optuna
    import torch

    torch.set_num_threads(1)
    name, data_path, seeds, budget, n_fixed = args
    from workbench.meta.pruning import CurveModel
    from workbench.meta.replay import MetaDataset, replay
    from workbench.meta.warmstart import global_prior, warm_start

    md = MetaDataset.load(data_path)
    task = md.tasks[name]
    hist = md.without(name)
    t0 = time.perf_counter()
    model = CurveModel().fit(hist)  # never sees the held-out task's curves
    E = md.epochs
    # the memory tune() gives its pruner: how each configuration went on the nearest other tasks
    ctx = {"epochs": E, "model": model, "memory": model.memory_for(task.features, exclude=name),
           "space": md.space, "warm": warm_start(task.features, hist),
           "global": global_prior(hist)}
    vals = [c.value for c in task.curves.values()]
    oracle, worst = max(vals), min(vals)
    target = oracle - 0.01
    out = {"task": name, "family": task.family, "oracle": oracle, "worst": worst,
           "neighbours": [n["task"] for n in ctx["warm"].neighbours], "ood": ctx["warm"].ood,
           "pruner_threshold": model.threshold, "methods": {}, "fixed": {}}
    for method in METHODS:
        rows = []
        for seed in seeds:
            if method == "default":
                c = task.curves[md.space.key_of(DEFAULT_PARAMS)]
                ep = float(E) if c.value >= target - 1e-9 else math.inf
                regret = [(oracle - c.value) / ((oracle - worst) or 1) if m * E >= E else 1.0
                          for m in BUDGET_MULTIPLES]
                rows.append({"epochs_to_target": ep, "regret": regret, "test": c.test_accuracy})
                continue
            sampler, pruner, enq, priors = _study_parts(method, seed, ctx)
            # once the target is reached and 10× a training is spent, nothing reported can change but
            # the anytime curve's tail (it stays at the reached level: conservative for fast methods)
            r = replay(task, sampler, pruner, budget_epochs=budget, enqueue=enq, prior_trials=priors,
                       space=md.space, stop_at=target, stop_after=max(BUDGET_MULTIPLES) * E)
            regret = []
            for m in BUDGET_MULTIPLES:
                b, _ = r.best_at(m * E)
                regret.append(1.0 if b is None else (oracle - b) / ((oracle - worst) or 1))
            _, test = r.best_at(budget)
            rows.append({"epochs_to_target": r.epochs_to(target), "regret": regret, "test": test,
                         "anytime": r.anytime()})
        out["methods"][method] = rows
    # fixed number of trials: what each pruner costs and what it ends with
    for label, method in (("none", "tpe"), ("median", "tpe+median"), ("hyperband", "tpe+hyperband"),
                          ("learned", "tpe+learned"), ("warm", "warm-start"), ("warm+priors", "warm+priors"),
                          ("warm+median", "warm+median"),
                          ("warm+learned", "workbench")):
        rows = []
        for seed in seeds:
            sampler, pruner, enq, priors = _study_parts(method, seed, ctx)
            r = replay(task, sampler, pruner, budget_epochs=10 ** 9, max_trials=n_fixed, enqueue=enq,
                       prior_trials=priors, space=md.space)
            b, test = r.best_at(math.inf)
            rows.append({"epochs": r.total_epochs, "best": b if b is not None else 0.0, "test": test or 0.0,
                         "hit": b is not None and b >= target - 1e-9})
        out["fixed"][label] = rows
    # the bound: a pruner that knows every run's future stops each losing run after 2 epochs
    rows = []
    for seed in seeds:
        r = replay(task, optuna.samplers.TPESampler(seed=seed), _Foresight(task, md.space), budget_epochs=10 ** 9,
                   max_trials=n_fixed, space=md.space)
        b, test = r.best_at(math.inf)
        rows.append({"epochs": r.total_epochs, "best": b or 0.0, "test": test or 0.0,
                     "hit": b is not None and b >= target - 1e-9})
    out["fixed"]["foresight (bound)"] = rows
    out["seconds"] = time.perf_counter() - t0
    return out


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def summarise(results: list[dict], E: int, budget: int) -> dict:
    """Per-method medians, ratios vs TPE + MedianPruner, wins; the JSON body."""
    per = {m: {} for m in METHODS}
    for r in results:
        for m in METHODS:
            eps = [row["epochs_to_target"] for row in r["methods"][m]]
            per[m][r["task"]] = _median(eps)
    ratio = {}
    for m in METHODS:
        rs = []
        for t, v in per[m].items():
            base = per["tpe+median"][t]
            vv, bb = min(v, budget), min(base, budget)  # censored at the budget
            rs.append(vv / bb if bb else math.inf)
        ratio[m] = _median(rs)
    reg = {m: [statistics.mean(row["regret"][i] for r in results for row in r["methods"][m])
               for i in range(len(BUDGET_MULTIPLES))] for m in METHODS}
    worse_than_tpe = [t for t in per["workbench"] if per["workbench"][t] > per["tpe"][t]]
    ws_wins = [t for t in per["warm-start"] if per["warm-start"][t] < per["global-prior"][t]]
    ws_ties = [t for t in per["warm-start"] if per["warm-start"][t] == per["global-prior"][t]]
    fixed = {}
    for label in results[0]["fixed"]:
        rows = [row for r in results for row in r["fixed"][label]]
        fixed[label] = {"epochs": statistics.mean(x["epochs"] for x in rows),
                        "best": statistics.mean(x["best"] for x in rows),
                        "test": statistics.mean(x["test"] for x in rows),
                        "hit_rate": statistics.mean(float(x["hit"]) for x in rows)}
    return {"per_task_epochs_to_target": per, "median_ratio_vs_tpe_median": ratio["workbench"],
            "ratio_vs_tpe_median": ratio, "mean_regret": reg, "workbench_worse_than_tpe_cold": worse_than_tpe,
            "warm_start_beats_global_prior": ws_wins, "warm_start_ties_global_prior": ws_ties, "fixed_trials": fixed}


def plot(results: list[dict], E: int, budget: int, path: Path) -> None:
    """Mean normalised regret of the best-so-far vs epochs trained, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.arange(1, budget + 1)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for m in METHODS:
        if m == "default":
            continue
        curves = []
        for r in results:
            span = (r["oracle"] - r["worst"]) or 1.0
            for row in r["methods"][m]:
                pts = row["anytime"]
                y = np.ones(len(grid))
                for ep, best in pts:
                    if best > -math.inf:
                        y[grid >= ep] = np.minimum(y[grid >= ep], (r["oracle"] - best) / span)
                curves.append(y)
        mean = np.mean(curves, axis=0)
        style = "-" if m in ("workbench", "warm-start", "tpe+median", "tpe", "global-prior") else "--"
        ax.plot(grid / E, np.maximum(mean, 1e-3), style, label=m, lw=2.2 if m == "workbench" else 1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute (full trainings = epochs / %d)" % E)
    ax.set_ylabel("mean normalised regret of best-so-far")
    ax.set_title(f"Leave-one-task-out replay: {len(results)} tasks × {len(results[0]['methods']['tpe'])} seeds")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, which="both")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def _finite(x):
    """JSON has no infinity: a target never reached is ``null``."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--budget", type=int, default=20, help="budget in full trainings (default 20)")
    ap.add_argument("--fixed-trials", type=int, default=30, help="trials for the pruner comparison")
    ap.add_argument("--tasks", help="comma-separated held-out tasks (default all)")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args(argv)

    from workbench.meta.replay import MetaDataset

    t0 = time.perf_counter()
    md = MetaDataset.load(args.data)
    E = md.epochs
    budget = args.budget * E
    seeds = _seeds(args.seeds)
    names = args.tasks.split(",") if args.tasks else sorted(md.tasks)
    jobs = [(n, str(args.data), seeds, budget, args.fixed_trials) for n in names]
    if args.workers > 1:
        with get_context("spawn").Pool(args.workers) as pool:
            results = pool.map(_one_task, jobs)
    else:
        results = [_one_task(j) for j in jobs]
    wall = time.perf_counter() - t0
    s = summarise(results, E, budget)
    n_configs = statistics.median(len(t.curves) for t in md.tasks.values())

    def fmt(v):
        return "  >cap" if v == math.inf else f"{v:6.0f}"

    print(f"{len(names)} held-out tasks × {len(seeds)} seeds, {int(n_configs)} configs × {E} epochs per task, "
          f"budget {args.budget}× a full training; replay {wall:.0f}s on {args.workers} process(es)")
    print("\nepochs to within 1 point of the oracle (median over seeds):")
    print(f"{'task':18s}" + "".join(f"{m[:12]:>13s}" for m in METHODS))
    for t in names:
        print(f"{t:18s}" + "".join(f"{fmt(s['per_task_epochs_to_target'][m][t]):>13s}" for m in METHODS))
    print(f"\n{'method':16s} {'ratio vs tpe+median':>20s}  regret@1x  regret@3x  regret@10x")
    for m in METHODS:
        r = s["mean_regret"][m]
        print(f"{m:16s} {s['ratio_vs_tpe_median'][m]:20.3f}  {r[0]:9.3f}  {r[1]:9.3f}  {r[2]:10.3f}")
    print(f"\nworkbench ÷ TPE+MedianPruner, median over tasks: {s['median_ratio_vs_tpe_median']:.3f} (goal ≤ 0.333)")
    print(f"tasks where workbench needs more than TPE cold: {len(s['workbench_worse_than_tpe_cold'])} "
          f"{s['workbench_worse_than_tpe_cold']} (goal ≤ 2)")
    print(f"warm start beats the global prior on {len(s['warm_start_beats_global_prior'])}/{len(names)} tasks "
          f"(ties {len(s['warm_start_ties_global_prior'])}; goal ≥ 2/3)")
    print(f"\nfixed {args.fixed_trials} trials (mean over tasks × seeds):")
    print(f"{'pruner':20s} {'epochs':>8s} {'best val':>9s} {'test':>7s} {'hit target':>11s}")
    for label, f in s["fixed_trials"].items():
        print(f"{label:20s} {f['epochs']:8.1f} {f['best']:9.4f} {f['test']:7.4f} {f['hit_rate']:11.2f}")
    fx = s["fixed_trials"]
    print(f"learned vs median pruner (TPE cold): {100 * (1 - fx['learned']['epochs'] / fx['median']['epochs']):.0f}% "
          f"fewer epochs (best val {fx['learned']['best']:.4f} vs {fx['median']['best']:.4f}); with the warm start "
          f"{100 * (1 - fx['warm+learned']['epochs'] / fx['warm+median']['epochs']):.0f}% fewer "
          f"({fx['warm+learned']['best']:.4f} vs {fx['warm+median']['best']:.4f}), "
          f"{100 * (1 - fx['warm+learned']['epochs'] / fx['warm']['epochs']):.0f}% fewer than no pruning "
          f"({fx['warm']['best']:.4f}); perfect foresight after 2 epochs: "
          f"{100 * (1 - fx['foresight (bound)']['epochs'] / fx['median']['epochs']):.0f}% fewer than median")
    if args.json:
        body = {"n_tasks": len(names), "n_configs": int(n_configs), "epochs_per_run": E, "seeds": seeds,
                "budget_epochs": budget, "replay_seconds": wall,
                "median_ratio_vs_tpe_median": s["median_ratio_vs_tpe_median"],
                "compute_to_target": {m: s["per_task_epochs_to_target"][m] for m in METHODS},
                "ratio_vs_tpe_median": s["ratio_vs_tpe_median"], "mean_regret": s["mean_regret"],
                "workbench_worse_than_tpe_cold": s["workbench_worse_than_tpe_cold"],
                "warm_start_beats_global_prior": s["warm_start_beats_global_prior"],
                "warm_start_ties_global_prior": s["warm_start_ties_global_prior"],
                "fixed_trials": s["fixed_trials"],
                "tasks": {r["task"]: {"family": r["family"], "oracle": r["oracle"], "neighbours": r["neighbours"],
                                      "ood": r["ood"], "pruner_threshold": r["pruner_threshold"]} for r in results}}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_finite(body), indent=1))
        print(f"\nJSON written to {args.json}")
    if args.plot:
        plot(results, E, budget, args.plot)
        print(f"anytime plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
