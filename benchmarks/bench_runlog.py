"""Per-step logging cost of the run log at 0, 100 and 1,000 stored runs of 5,000 steps.

    python benchmarks/bench_runlog.py [--stored 0 100 1000] [--steps 5000]

For each store size it fills a fresh run log with that many *finished* runs (5,000 logged
steps each, through the public API), then times one new run logging one metric per step
for 5,000 steps (amortised: buffering, periodic flushes and the heartbeat included), plus
``start`` and ``finish``. The baseline, measured in the same run, is the naive design the
issue warns about: a TinyDB ``update`` of the run record per step with the losses stored
in the records (stock ``JSONStorage``); it is timed over a few steps only because it is slow.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tinydb import Query, TinyDB

from workbench import RunLog


def fill(log: RunLog, n_runs: int, steps: int) -> None:
    for i in range(n_runs):
        run = log.start(f"stored-{i}", "baseline", {"i": i, "optimizer": {"name": "Adam", "lr": 1e-3}})
        for s in range(steps):
            run.log_metrics({"train_loss": 1.0 / (s + 1)}, step=s)
        run.finish("completed", summary={"accuracy": 0.5})


def time_ours(log: RunLog, steps: int) -> dict[str, float]:
    t0 = time.perf_counter()
    run = log.start("timed", "baseline", {"optimizer": {"name": "SGD"}})
    t1 = time.perf_counter()
    for s in range(steps):
        run.log_metrics({"train_loss": 1.0 / (s + 1)}, step=s)
    t2 = time.perf_counter()
    run.finish("completed", summary={"accuracy": 0.5})
    t3 = time.perf_counter()
    return {"step_us": (t2 - t1) / steps * 1e6, "start_ms": (t1 - t0) * 1e3, "finish_ms": (t3 - t2) * 1e3}


def time_naive(folder: Path, n_runs: int, steps: int, probe_steps: int = 5) -> float:
    """µs per step for a TinyDB update per step, the stored runs holding their losses inline."""
    db = TinyDB(folder / "naive.json")
    losses = [1.0 / (s + 1) for s in range(steps)]
    db.insert_multiple({"id": f"r{i}", "metrics": {"train_loss": losses}} for i in range(n_runs))
    db.insert({"id": "timed", "metrics": {"train_loss": []}})
    q = Query()
    series: list[float] = []
    t0 = time.perf_counter()
    for s in range(probe_steps):
        series.append(1.0 / (s + 1))
        db.update({"metrics": {"train_loss": list(series)}}, q.id == "timed")
    dt = time.perf_counter() - t0
    db.close()
    return dt / probe_steps * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stored", type=int, nargs="+", default=[0, 100, 1000])
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive-max", type=int, default=100, help="largest store size for the slow naive baseline")
    args = ap.parse_args()
    print(f"{'stored runs':>11} | {'ours µs/step':>12} | {'start ms':>8} | {'finish ms':>9} | "
          f"{'naive µs/step':>13} | {'naive/ours':>10}")
    for n in args.stored:
        with tempfile.TemporaryDirectory() as tmp:
            log = RunLog(Path(tmp) / "runs.json")
            fill(log, n, args.steps)
            res = [time_ours(log, args.steps) for _ in range(args.repeats)]
            step = statistics.median(r["step_us"] for r in res)
            start = statistics.median(r["start_ms"] for r in res)
            fin = statistics.median(r["finish_ms"] for r in res)
            naive = time_naive(Path(tmp), n, args.steps) if n <= args.naive_max else float("nan")
            ratio = naive / step if naive == naive else float("nan")
            print(f"{n:>11} | {step:>12.1f} | {start:>8.1f} | {fin:>9.1f} | {naive:>13.0f} | {ratio:>9.0f}×",
                  flush=True)


if __name__ == "__main__":
    main()
