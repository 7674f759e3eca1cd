"""Build the replayable meta-dataset: every shipped task × every grid configuration, real runs.

    nice -n 10 python benchmarks/make_metadataset.py                 # the shipped one: 16 tasks × 48 configs × 12 epochs
    nice -n 10 python benchmarks/make_metadataset.py --epochs 24     # the 24-epoch variant (benchmarks/data/)
    python benchmarks/make_metadataset.py --quick --out /tmp/md.jsonl.gz   # smoke: 2 tasks × 2 configs

Each run is a workbench training run (``workbench.jobs.run_training``, kind ``baseline``,
tags ``metadataset``, ``mdtask:<task>``, ``mdconfig:<key>``), tested on its held-out split
(``run_test``: the split is drawn by the seed and never used for selection), with the task's
meta-features stored in the record's ``task`` field. Runs already stored (completed, same
task and configuration) are skipped, so an interrupted build resumes.

The export (``--out``, JSON lines, gzip for ``.gz``) holds one ``RunLog.get(run_id)`` record
per run — config, seed, per-epoch val accuracy/loss, per-step train loss, test accuracy, wall
time and the task's meta-features — enough to replay searches and to warm-start without the
images.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "workbench" / "meta" / "data" / "metadataset.jsonl.gz"  # the package data (12 epochs)
EPOCHS = 12


def default_out(epochs: int) -> Path:
    """The package data for the shipped 12-epoch build; ``benchmarks/data/metadataset<E>.jsonl.gz`` otherwise."""
    return DEFAULT_OUT if epochs == EPOCHS else HERE / "data" / f"metadataset{epochs}.jsonl.gz"
SPLIT = {"train": 0.5, "val": 0.25, "test": 0.25}


def base_command(size: int, epochs: int = EPOCHS) -> dict:
    """The command every grid point starts from (image size is the task's own)."""
    return {"kind": "baseline", "image_size": size, "channels": 3,
            "model": {"preset": "small_cnn", "params": {"hidden": 32}},
            "optimizer": {"name": "Adam", "params": {"lr": 1e-3}}, "batch_size": 32, "epochs": epochs,
            "seed": 0, "split": dict(SPLIT), "transforms": [],
            "trainer": {"accelerator": "cpu", "devices": 1, "log_every_n_steps": 5}}


def _open(path: Path, mode: str, gz: bool):
    return gzip.open(path, mode + "t", encoding="utf-8") if gz else open(path, mode, encoding="utf-8")


def export(logs: list, out: Path) -> int:
    """Write every completed meta-dataset run of ``logs`` as one JSON line (``RunLog.get``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    n = 0
    with _open(tmp, "w", out.suffix == ".gz") as fh:
        for log in logs:
            for r in log.find(tag="metadataset", status="completed"):
                fh.write(json.dumps(log.get(r["id"]), sort_keys=True) + "\n")
                n += 1
    os.replace(tmp, out)
    return n


def build_task(spec, home: Path, grid: list, space, epochs: int, log_fn=print) -> "RunLog":
    """Train and test every grid point on one task (skipping those already done); return its log."""
    from workbench import jobs
    from workbench.meta import synthetic
    from workbench.meta.features import task_features
    from workbench.runlog import RunLog

    folder = synthetic.write_task(spec, home / "datasets")
    log = RunLog(home / "logs" / f"{spec.name}.db")
    feats = task_features(folder)
    task = {"path": str(folder.resolve()), "name": spec.name, "family": spec.family,
            "fingerprint": feats["fingerprint"], "features": feats, "spec": spec.to_dict()}
    done = {t for r in log.find(tag="metadataset", status="completed") for t in r.get("tags") or []
            if t.startswith("mdconfig:")}
    base = base_command(spec.size, epochs)
    for i, params in enumerate(grid):
        key = space.key_of(params)
        if f"mdconfig:{key}" in done:
            continue
        cmd = space.apply(base, params)
        label = ",".join(f"{k.split('.')[-1]}={v}" for k, v in params.items())
        t0 = time.perf_counter()
        res = jobs.run_training(cmd, folder, log=log, name=f"md/{spec.name}/{i:02d} {label}",
                                tags=["metadataset", f"mdtask:{spec.name}", f"mdconfig:{key}",
                                      f"family:{spec.family}"])
        jobs.run_test(res["run_id"], log=log)
        log.handle(res["run_id"]).update(task=task, metadataset={"task": spec.name, "family": spec.family,
                                                                  "config": key, "params": params, "index": i})
        rec = log.get(res["run_id"], metrics=False)
        va = max((e.get("val_accuracy", 0) for e in rec["epochs"]), default=0)
        log_fn(f"{spec.name} {i:02d} {label}: val {va:.3f} test {rec['summary'].get('test_accuracy', 0):.3f} "
               f"({time.perf_counter() - t0:.1f}s)")
    return log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, help="where the runs and task folders go (default $WORKBENCH_HOME/metadataset)")
    ap.add_argument("--out", type=Path, help=f"export file (default {DEFAULT_OUT} for {EPOCHS} epochs, "
                                              "else benchmarks/data/metadataset<E>.jsonl.gz)")
    ap.add_argument("--tasks", help="comma-separated task names (default: all shipped tasks)")
    ap.add_argument("--configs", help="comma-separated grid indices (a pilot); default all")
    ap.add_argument("--shard", default="0/1", help="I/N: build every N-th task starting at I (parallel builders)")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--quick", action="store_true", help="2 small tasks × 2 configs × 2 epochs (smoke test)")
    ap.add_argument("--no-export", action="store_true", help="only build runs")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # 2 shared cores: more intra-op threads collapse under load
    from workbench import paths
    from workbench.meta import synthetic
    from workbench.meta.space import metadataset_space

    home = (args.home or paths.home() / "metadataset").expanduser().resolve()
    space = metadataset_space()
    grid = space.grid()
    specs = list(synthetic.TASKS)
    epochs = args.epochs
    if args.quick:
        specs = [synthetic.TaskSpec("quick-gratings", "gratings", size=16, n_classes=3, per_class=12, seed=9),
                 synthetic.TaskSpec("quick-dots", "dots", size=16, n_classes=4, per_class=10, seed=9)]
        grid = [grid[26], grid[47]]
        epochs = 2
    if args.tasks:
        names = args.tasks.split(",")
        specs = [s for s in specs if s.name in names] + [synthetic.task_spec(n) for n in names
                                                         if n not in {s.name for s in specs}]
    if args.configs:
        grid = [grid[int(i)] for i in args.configs.split(",")]
    i, n = (int(x) for x in args.shard.split("/"))
    specs = specs[i::n]
    t0 = time.perf_counter()
    logs = [build_task(s, home, grid, space, epochs, log_fn=lambda m: print(m, flush=True)) for s in specs]
    print(f"built {len(specs)} task(s) × {len(grid)} configs in {time.perf_counter() - t0:.0f}s", flush=True)
    if not args.no_export:
        from workbench.runlog import RunLog

        all_logs = logs if (args.quick or args.tasks or n > 1) else \
            [RunLog(p) for p in sorted((home / "logs").glob("*.db"))]
        out = args.out or default_out(epochs)
        k = export(all_logs, out)
        print(f"exported {k} runs to {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
