"""Record one full meta-training run's learning curves and 600-episode results as a small JSON file,
so notebook 03 can *replay* a real result in quick mode (seconds cannot train MAML to a meaningful
accuracy; the notebook says that the curve it shows is replayed from this file).

    python benchmarks/fewshot_curves.py --kind maml --minutes 13 --threads 1 \
        --out benchmarks/results/fewshot_curves_maml.json

The command is the one behind the README's targets (``benchmarks/fewshot_targets.py``) with
meta-validation every ``--val-every`` iterations for a readable curve. The run also lands in the
run log of ``$WORKBENCH_HOME``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot_targets import COMMANDS  # noqa: E402  (the README's target commands)


def curve(rows: list[dict], key: str, bucket: int) -> list[list[float]]:
    """``[[step, mean of key over the bucket]]``: a loss curve thinned to a few hundred points."""
    out, acc, first = [], [], None
    for r in rows:
        if key not in r or r.get("step") is None:
            continue
        first = r["step"] if first is None else first
        acc.append(float(r[key]))
        if len(acc) == bucket:
            out.append([int(r["step"]), round(sum(acc) / len(acc), 5)])
            acc = []
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=sorted(COMMANDS), required=True)
    ap.add_argument("--minutes", type=float, default=13.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from workbench.data.glyphs import load_glyphs
    from workbench.fewshot import evaluate, train_from_command
    from workbench.runlog import RunLog

    glyphs = load_glyphs()
    cmd = dict(COMMANDS[args.kind], name=f"curves-{args.kind}-5w1s", time_limit_s=args.minutes * 60,
               val_every=args.val_every)
    log = RunLog()
    t0 = time.monotonic()
    rid = train_from_command(cmd, data=glyphs, log=log)
    evaluate(rid, episodes=600, n_way=5, k_shot=5, q_query=15, log=log, data=glyphs)
    rec = log.get(rid)
    s = rec["summary"]
    val = [[int(r["step"]), round(float(r["val_accuracy"]), 4)] for r in rec["metrics"] if "val_accuracy" in r]
    out = {"source": "benchmarks/fewshot_curves.py", "run": rid, "kind": args.kind, "command": cmd,
           "machine": f"{platform.machine()} CPU, {args.threads} thread(s), shared with other work",
           "torch": torch.__version__, "steps": s["steps"], "train_seconds": s["train_seconds"],
           "wall_seconds": round(time.monotonic() - t0, 1), "n_way": cmd["episodes"]["n_way"],
           "val_accuracy": val, "train_loss": curve(rec["metrics"], "train_loss", max(1, s["steps"] // 200)),
           "evals": {k: {kk: v[kk] for kk in ("n_way", "k_shot", "mean", "ci95", "episodes")}
                     for k, v in s["fewshot_eval"].items()}}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: out[k] for k in ("run", "steps", "train_seconds", "evals")}, indent=1))


if __name__ == "__main__":
    main()
