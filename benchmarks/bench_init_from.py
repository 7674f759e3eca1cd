"""Does starting from a related past model help on a small new task? (issue 15's Goals experiment)

    nice -n 10 python benchmarks/bench_init_from.py [--ways 20] [--per-class 10] [--epochs 20] [--seeds 3]

Model-based meta-learning on the run log: "if you have dogs to classify and have classified
other dogs, use the model you used before". Everything is offline and recorded as runs (tag
``bench:init_from``) in ``$WORKBENCH_HOME`` (a fresh temporary home unless ``--home``):

- **related parent**: a baseline Conv-4 (1×28×28, 32 filters) trained on 20 instances of each
  character of four glyph alphabets (Latin, Greek, Cyrillic, Georgian; ``workbench.data.glyphs``);
- **unrelated parent**: the same network trained for the same epochs on the scrape stub's photos
  (coloured shapes and patterns, ``workbench.meta.tasks.scraped_task``), as 28 px grayscale;
- **held-out tasks**: three tasks of ``--ways`` characters of alphabets neither parent saw
  (Armenian, Lao, Hebrew), ``--per-class`` images per character, split 60 % train / 40 % test (no
  validation: the final weights are tested);
- **children**: the same command for every arm — only ``init_from`` differs — trained for the
  same ``--epochs``: random init (the baseline, measured in the same run), ``init_from`` the
  related parent, the related parent with the loaded layers frozen for the first half, and the
  unrelated parent. Each arm × task × seed is one run; the table gives the mean test accuracy
  over tasks and seeds and the difference to random init with a 95 % interval over the
  (task, seed) pairs.

One intra-op thread (2 shared cores). Writes ``benchmarks/results/init_from.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARENT_ALPHABETS = ("Latin", "Greek", "Cyrillic", "Georgian")
HELD_OUT = ("Armenian", "Hebrew", "Lao")
#: The stub renders any "<colour> <shape>" query: 12 photo classes for the unrelated parent.
PHOTO_QUERIES = tuple(f"{c} {s}" for c in ("red", "blue", "green") for s in ("circles", "squares", "stripes", "dots"))
ARMS = ("random", "related", "related+freeze", "unrelated")


def command(name: str, epochs: int, seed: int, **over) -> dict:
    """The one command every run of the experiment shares (a baseline Conv-4 on 1×28×28)."""
    cmd = {"name": name, "image_size": 28, "channels": 1, "model": {"preset": "conv4", "params": {"hidden": 32}},
           "optimizer": {"name": "Adam", "params": {"lr": 0.003}}, "batch_size": 32, "epochs": epochs, "seed": seed,
           "trainer": {"accelerator": "cpu"}, "threads": 1, "checkpoint_every_s": None}
    cmd.update(over)
    return cmd


def write_glyph_folder(glyphs, classes: list[int], root: Path, per_class: int | None = None) -> Path:
    """``root/<class>/<i>.png`` for the given class indices of a :class:`~workbench.data.glyphs.Glyphs`."""
    from PIL import Image

    for ci in classes:
        d = root / glyphs.classes[ci].replace("/", "_").replace("+", "")
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class or glyphs.images.shape[1]):
            Image.fromarray(glyphs.images[ci, i]).save(d / f"{i:02d}.png")
    return root


def build_tasks(root: Path, per_class: int, ways: int = 10, n_tasks: int = 3) -> tuple[Path, dict[str, Path], dict]:
    """The related parent's folder and ``n_tasks`` held-out ``ways``-way task folders (classes disjoint
    from the parent's and from each other: consecutive characters of the held-out alphabets)."""
    from workbench.data.glyphs import load_glyphs

    g = load_glyphs(alphabets=[*PARENT_ALPHABETS, *HELD_OUT])
    by = {a: [i for i, x in enumerate(g.alphabets) if x == a] for a in g.alphabet_names}
    parent_classes = [i for a in PARENT_ALPHABETS for i in by[a]]
    parent = write_glyph_folder(g, parent_classes, root / "parent-glyphs")
    chunks = [(a, k) for k in range(4) for a in HELD_OUT if len(by[a]) >= (k + 1) * ways][:n_tasks]
    if len(chunks) < n_tasks:
        raise SystemExit(f"--ways {ways}: the held-out alphabets have {len(chunks)} tasks of that size, need {n_tasks}")
    picked = {f"{a}{k}": by[a][k * ways:(k + 1) * ways] for a, k in chunks}
    tasks = {t: write_glyph_folder(g, cls, root / f"task-{t}-{ways}w{per_class}", per_class) for t, cls in picked.items()}
    info = {"parent_classes": len(parent_classes), "task_classes": {t: [g.classes[i] for i in c] for t, c in picked.items()}}
    assert not set(parent_classes) & {i for c in picked.values() for i in c}, "a held-out class leaked"
    return parent, tasks, info


def ci95(xs: list[float]) -> float:
    """Half-width of a t-based 95 % interval of the mean."""
    from scipy import stats

    if len(xs) < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs)))


def train_and_test(cmd: dict, data: Path, log, tags: list[str]) -> dict:
    from workbench import training

    res = training.run_training(cmd, data, log=log, tags=tags)
    tested = training.run_test(res["run_id"], log=log)
    return {"run": res["run_id"], "test_accuracy": tested["summary"]["test_accuracy"],
            "seconds": res["summary"]["train_seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20, help="epochs of every child run (equal across arms)")
    ap.add_argument("--parent-epochs", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=10, help="images per class of the held-out tasks (10-20)")
    ap.add_argument("--ways", type=int, default=20, help="classes per held-out task")
    ap.add_argument("--home", help="WORKBENCH_HOME to record the runs in (default: a fresh temporary one)")
    ap.add_argument("--out", default=str(HERE / "results" / "init_from.json"))
    args = ap.parse_args()
    os.environ["WORKBENCH_HOME"] = args.home or tempfile.mkdtemp(prefix="bench-init-from-")
    import torch

    torch.set_num_threads(1)
    from workbench.meta.tasks import scraped_task
    from workbench.runlog import RunLog

    log = RunLog()
    root = Path(os.environ["WORKBENCH_HOME"]) / "bench-init-from"
    t0 = time.monotonic()
    parent_dir, tasks, info = build_tasks(root, args.per_class, args.ways)
    photos = scraped_task("bench-photos", PHOTO_QUERIES, per_class=40, root=root / "parent-photos")
    tags = ["bench:init_from"]
    split = {"train": 0.6, "val": 0.0, "test": 0.4}
    parents = {}
    for name, folder in (("related", parent_dir), ("unrelated", photos)):
        cmd = command(f"parent-{name}", args.parent_epochs, 0, split={"train": 0.85, "val": 0.0, "test": 0.15})
        parents[name] = train_and_test(cmd, folder, log, tags + ["parent"])
        print(f"parent {name}: {folder.name}, test accuracy {parents[name]['test_accuracy']:.3f}"
              f" ({parents[name]['seconds']:.0f} s)", flush=True)
    init = {"random": None, "related": parents["related"]["run"], "unrelated": parents["unrelated"]["run"],
            "related+freeze": {"run": parents["related"]["run"], "freeze_epochs": args.epochs // 2}}
    rows = []
    for task, folder in tasks.items():
        for seed in range(args.seeds):
            for arm in ARMS:
                over = {"split": split} if init[arm] is None else {"split": split, "init_from": init[arm]}
                cmd = command(f"{arm}/{task}/s{seed}", args.epochs, seed, **over)
                r = train_and_test(cmd, folder, log, tags + [f"arm:{arm}", f"task:{task}"])
                rows.append({"arm": arm, "task": task, "seed": seed, **r})
                print(f"  {task} seed {seed} {arm:<15} {r['test_accuracy']:.3f}", flush=True)
    table = summarise(rows)
    print(f"\n{len(tasks)} held-out {args.ways}-way tasks × {args.seeds} seeds, {args.per_class} images per class"
          f" ({int(args.per_class * 0.6)} to train), {args.epochs} epochs each:")
    print(f"{'arm':<16}{'test accuracy':>14}{'vs random init':>22}")
    for arm in ARMS:
        t = table[arm]
        diff = "" if arm == "random" else f"{100 * t['diff']:+.1f} ± {100 * t['diff_ci95']:.1f} pts"
        print(f"{arm:<16}{t['mean']:>14.3f}{diff:>22}")
    out = {"args": vars(args), "info": info, "parents": parents, "rows": rows, "table": table,
           "minutes": round((time.monotonic() - t0) / 60, 1), "home": os.environ["WORKBENCH_HOME"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"\nruns recorded in {log}; results in {args.out} ({out['minutes']} min)")


def summarise(rows: list[dict]) -> dict:
    """Per arm: mean test accuracy, and the paired difference to random init (same task and seed)."""
    base = {(r["task"], r["seed"]): r["test_accuracy"] for r in rows if r["arm"] == "random"}
    out = {}
    for arm in ARMS:
        mine = [r for r in rows if r["arm"] == arm]
        diffs = [r["test_accuracy"] - base[(r["task"], r["seed"])] for r in mine]
        out[arm] = {"mean": statistics.fmean(r["test_accuracy"] for r in mine), "diff": statistics.fmean(diffs),
                    "diff_ci95": ci95(diffs), "n": len(mine)}
    return out


if __name__ == "__main__":
    main()
