"""Does a scraped task's text help the warm start retrieve the right past tasks?

    python benchmarks/bench_retrieval.py [--per-query 8] [--json FILE]

Builds scraped tasks offline through the loopback SerpApi stub in three families — animals,
vehicles, textures — four tasks a family, three queries a task (each query one class). Tasks of
a family photograph the same kinds of subject (another fox / wolf / bear set), the way a team's
datasets repeat; the stub draws every query its own look (colour and shape words set hue and
motif, any other query a look hashed from its words), and its related searches and chips are
the ones every scrape stores. For every task, leave-one-out over the other 11, the neighbour
search of the warm start (:func:`workbench.meta.warmstart.neighbour_distances`) ranks the past
tasks by

- image meta-features alone (``text_weight=0``; what the search was before), the baseline;
- text alone (1 − :func:`workbench.scrape.text_similarity`);
- both (the default ``text_weight`` and two others, to show how sensitive it is).

Printed, all measured in this run: how often the nearest past task is of the same family
(top-1), the share of the 3 nearest that are (precision@3; 3 same-family tasks exist), the mean
rank of the first same-family task, and the ratios against the image-only baseline.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

FAMILIES = {
    "animals": [["red fox", "grey wolf", "brown bear"], ["arctic fox", "timber wolf", "black bear"],
                ["fennec fox", "wolf pup", "polar bear"], ["fox cub", "wolf pack", "bear cub"]],
    "vehicles": [["red car", "city bus", "fire truck"], ["sports car", "school bus", "pickup truck"],
                 ["police car", "double decker bus", "dump truck"], ["vintage car", "bus stop", "tow truck"]],
    "textures": [["striped fabric", "dotted paper", "checkered tiles"],
                 ["striped wallpaper", "polka dots fabric", "checkerboard floor"],
                 ["pinstripe cloth", "dotted fabric", "chess board tiles"],
                 ["zebra stripes", "spots texture", "checker pattern"]],
}


def build(root: Path, per_query: int) -> dict[str, dict]:
    """Scrape every task through one stub; return {task: {"family", "features"}}."""
    from workbench.meta.features import task_features
    from workbench.runlog import RunLog
    from workbench.scrape import SerpApiStub, scrape

    out = {}
    log = RunLog(root / "runs.db")
    with SerpApiStub() as stub:
        for fam, tasks in FAMILIES.items():
            for i, queries in enumerate(tasks):
                name = f"{fam}-{i}"
                folder = root / "datasets" / name
                scrape(queries, folder, limit=per_query, base_url=stub.base_url, api_key="", runlog=log,
                       log=lambda m: None, near_duplicates="off", workers=4)
                out[name] = {"family": fam, "features": task_features(folder)}
    log.close()
    return out


def retrieval(tasks: dict[str, dict], text_weight: float | None) -> dict:
    """Leave-one-out: rank the other tasks; ``None`` = text only."""
    from workbench.meta.warmstart import neighbour_distances
    from workbench.scrape import text_similarity

    top1, p3, first = [], [], []
    for name, t in tasks.items():
        others = [o for o in tasks if o != name]
        feats = [tasks[o]["features"] for o in others]
        if text_weight is None:
            d = [1 - text_similarity(t["features"]["text"], f["text"]) for f in feats]
        else:
            d = neighbour_distances(t["features"], feats, text_weight=text_weight)
        order = [others[i] for i in sorted(range(len(others)), key=lambda i: d[i])]
        same = [tasks[o]["family"] == t["family"] for o in order]
        top1.append(float(same[0]))
        p3.append(sum(same[:3]) / 3)
        first.append(same.index(True) + 1)
    return {"top1": statistics.mean(top1), "precision_at_3": statistics.mean(p3),
            "mean_first_rank": statistics.mean(first)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-query", type=int, default=8, help="images per query (default 8)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from workbench.meta.warmstart import TEXT_WEIGHT

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tasks = build(Path(tmp), args.per_query)
    built = time.perf_counter() - t0
    n, n_fam = len(tasks), len(FAMILIES)
    chance = (n // n_fam - 1) / (n - 1)
    variants = {"image only (before)": 0.0, "text only": None, f"image + text (w={TEXT_WEIGHT:g}, default)": TEXT_WEIGHT,
                "image + text (w=0.5)": 0.5, "image + text (w=2)": 2.0}
    res = {label: retrieval(tasks, w) for label, w in variants.items()}
    base = res["image only (before)"]
    print(f"{n} scraped tasks ({n_fam} families × {n // n_fam}, {args.per_query} images × 3 queries each) "
          f"built in {built:.0f}s; leave-one-out retrieval of the other {n - 1} (chance top-1 = {chance:.2f})")
    print(f"{'neighbour search':34s} {'top-1 same family':>18s} {'precision@3':>12s} {'first same rank':>16s}"
          f" {'top-1 ÷ image':>14s}")
    for label, r in res.items():
        print(f"{label:34s} {r['top1']:18.2f} {r['precision_at_3']:12.2f} {r['mean_first_rank']:16.2f}"
              f" {r['top1'] / (base['top1'] or 1e-9):14.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"n_tasks": n, "families": list(FAMILIES), "per_query": args.per_query,
                                         "chance_top1": chance, "results": res, "build_seconds": built}, indent=1))
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
