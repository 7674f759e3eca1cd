"""Time-to-accuracy targets on the glyph benchmark: meta-train a learner within a wall-clock budget
for several training seeds, each recorded as a run, then evaluate 600 held-out episodes (5-way
1-shot, 5-way 5-shot, 20-way 1-shot where the learner allows) with 95% confidence intervals, and
report the mean and spread over the seeds.

    python benchmarks/fewshot_targets.py --kind maml --minutes 7.2 --seeds 0,1,2
    python benchmarks/fewshot_targets.py --kind protonet --minutes 6.5 --seeds 0,1,2
    # or seed by seed, the two learners interleaved, each adding to its results file:
    python benchmarks/fewshot_targets.py --kind maml --minutes 7.2 --seeds 1 --append

Targets (issue 17): MAML ≥ 95 % and ProtoNet ≥ 98 % 5-way 1-shot in at most half of the
meta-training time they took before (14.4 and 13.1 min on 2 cores). The runs land in the run log
of ``$WORKBENCH_HOME`` (``python -m workbench runs`` lists them, tagged ``fewshot-targets``).
The seed decides the class split (seed 0: 410 meta-train, 63 meta-val, 158 meta-test classes;
other seeds split the same fractions differently), the initial weights and the task stream, so
the spread over seeds covers all three. The results file is rewritten after every seed (a stopped
session keeps the seeds that finished), with the load average sampled every 10 s while each seed
trains (this process's own threads count in it: about 2 on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path

#: The commands behind the README numbers (time_limit_s is set from --minutes, seed from --seeds).
COMMANDS = {
    "protonet": {"kind": "protonet", "name": "target-protonet-5w1s", "seed": 0,
                 "episodes": {"n_way": 5, "k_shot": 1, "q_query": 5, "meta_batch": 2, "rotate": True,
                              "train_n_way": 20, "test_q_query": 15},
                 "model": {"preset": "conv4", "params": {"hidden": 64}},
                 "optimizer": {"name": "Adam", "params": {"lr": 0.001}},
                 "steps": 100000, "val_every": 250, "val_episodes": 100, "test_episodes": 600},
    "maml": {"kind": "maml", "name": "target-maml-5w1s", "seed": 0,
             "episodes": {"n_way": 5, "k_shot": 1, "q_query": 5, "meta_batch": 16, "rotate": True,
                          "test_q_query": 15},
             "model": {"preset": "conv4", "params": {"hidden": 32}},
             "optimizer": {"name": "Adam", "params": {"lr": 0.001}},
             "maml": {"inner_steps": 1, "inner_lr": 0.4, "test_inner_steps": 3, "vectorize": "auto"},
             "steps": 100000, "val_every": 250, "val_episodes": 100, "test_episodes": 600},
}
COMMANDS["fomaml"] = {**COMMANDS["maml"], "kind": "fomaml", "name": "target-fomaml-5w1s"}
#: What each learner must reach 5-way 1-shot, and the meta-training minutes it took before issue 17.
TARGETS = {"maml": (0.95, 14.4), "protonet": (0.98, 13.1), "fomaml": (0.95, 14.4)}


def first_crossing(metrics: list[dict], target: float) -> dict | None:
    """The first validation row at or above ``target`` (step and seconds since the first row)."""
    rows = [m for m in metrics if "val_accuracy" in m]
    t0 = metrics[0].get("time") if metrics else None
    for m in rows:
        if m["val_accuracy"] >= target:
            secs = (m["time"] - t0) if (t0 is not None and m.get("time") is not None) else None
            return {"step": m.get("step"), "seconds": secs, "val_accuracy": m["val_accuracy"]}
    return None


class LoadSampler:
    """The 1-minute load average every ``every`` seconds while the body runs (mean and max)."""

    def __init__(self, every: float = 10.0) -> None:
        self.every, self.samples, self._stop = every, [os.getloadavg()[0]], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> "LoadSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict:
        return {"mean": statistics.mean(self.samples), "max": max(self.samples), "n": len(self.samples)}


def train_one(kind: str, seed: int, minutes: float, episodes: int, glyphs, log) -> dict:
    from workbench.fewshot import evaluate
    from workbench.training import run_training

    cmd = dict(COMMANDS[kind], seed=seed, name=f"{COMMANDS[kind]['name']}-seed{seed}",
               time_limit_s=minutes * 60, test_episodes=episodes)
    load0, t0 = os.getloadavg()[0], time.monotonic()
    with LoadSampler() as load:
        rid = run_training(cmd, glyphs, log=log, tags=["fewshot-targets"])["run_id"]
    rec = log.get(rid)
    s = rec["summary"]
    evals = {"5way1shot": {"mean": s["test_accuracy"], "ci95": s["test_ci95"]}}
    for n, k in [(5, 5)] + ([(20, 1)] if kind == "protonet" else []):
        r = evaluate(rid, episodes=episodes, n_way=n, k_shot=k, q_query=15, log=log, data=glyphs)
        evals[f"{n}way{k}shot"] = {"mean": r["mean"], "ci95": r["ci95"]}
    row = {"run": rid, "seed": seed, "steps": s["steps"], "train_seconds": s["train_seconds"],
           "threads": (rec.get("runtime") or {}).get("threads"), "evals": evals,
           "first_val_at_target": first_crossing(rec["metrics"], TARGETS[kind][0]),
           "split_counts": (rec.get("dataset") or {}).get("split_counts"),
           "loadavg_before": load0, "loadavg_training": load.summary(), "loadavg_after": os.getloadavg()[0],
           "wall_seconds": time.monotonic() - t0, "command": cmd}
    e = evals["5way1shot"]
    print(f"  seed {seed}: run {rid}, {s['steps']} meta-iterations in {s['train_seconds']:.0f} s, "
          f"5-way 1-shot {100 * e['mean']:.2f} ± {100 * e['ci95']:.2f} %, "
          + ", ".join(f"{k} {100 * v['mean']:.2f} ± {100 * v['ci95']:.2f}" for k, v in evals.items() if k != "5way1shot")
          + f"  (load average while training: mean {load.summary()['mean']:.1f}, max {load.summary()['max']:.1f})",
          flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=sorted(COMMANDS), required=True)
    ap.add_argument("--minutes", type=float, default=5.0, help="meta-training wall-clock budget per seed")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--episodes", type=int, default=600)
    ap.add_argument("--json", help="write the results here (default: benchmarks/results/fewshot_targets_<kind>.json)")
    ap.add_argument("--append", action="store_true",
                    help="add these seeds to the results file's seeds (same kind and minutes) instead of starting anew")
    args = ap.parse_args()
    path = Path(args.json or Path(__file__).parent / "results" / f"fewshot_targets_{args.kind}.json")
    rows: list[dict] = previous_rows(path, args.kind, args.minutes) if args.append else []  # before any work
    from workbench.data.glyphs import load_glyphs
    from workbench.runlog import RunLog

    glyphs = load_glyphs()
    target, before = TARGETS[args.kind]
    print(f"{args.kind}: {len(glyphs)} glyph classes; {args.minutes:g} min of meta-training per seed "
          f"(before: {before} min); target {100 * target:.0f} % 5-way 1-shot on held-out classes")
    log = RunLog()
    for seed in args.seeds.split(","):
        rows.append(train_one(args.kind, int(seed), args.minutes, args.episodes, glyphs, log))
        summary = summarise(args.kind, args.minutes, rows)
        path.write_text(json.dumps(summary, indent=1), encoding="utf-8")  # after every seed
    seeds = ",".join(str(r["seed"]) for r in rows)
    print(f"{args.kind} 5-way 1-shot over seeds {seeds}: mean {100 * summary['mean']:.2f} %, "
          f"range {100 * summary['min']:.2f}–{100 * summary['max']:.2f}, sd {100 * summary['stdev']:.2f}; "
          f"every seed ≥ {100 * target:.0f} %: {summary['all_seeds_pass']}; "
          f"load average while training {summary['loadavg_training_mean']:.1f}")


def previous_rows(path: Path, kind: str, minutes: float) -> list[dict]:
    """The seeds already in the results file (``--append``); it must be for the same kind and budget."""
    if not path.exists():
        return []
    old = json.loads(path.read_text(encoding="utf-8"))
    if old.get("kind") != kind or old.get("minutes") != minutes:
        raise SystemExit(f"{path}: holds kind {old.get('kind')!r} at {old.get('minutes')} min, not {kind!r} at "
                         f"{minutes} min; use another --json or leave out --append")
    return list(old.get("seeds", []))


def summarise(kind: str, minutes: float, rows: list[dict]) -> dict:
    """Mean, range and standard deviation of the seeds' 5-way 1-shot accuracies so far."""
    target, before = TARGETS[kind]
    accs = [r["evals"]["5way1shot"]["mean"] for r in rows]
    return {"kind": kind, "minutes": minutes, "target": target, "minutes_before": before,
            "mean": statistics.mean(accs), "min": min(accs), "max": max(accs),
            "stdev": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "all_seeds_pass": all(a >= target for a in accs),
            "loadavg_training_mean": statistics.mean(r["loadavg_training"]["mean"] for r in rows),
            "wall_seconds": sum(r.get("wall_seconds", 0.0) for r in rows), "seeds": rows}

if __name__ == "__main__":
    main()
