"""Accuracy targets on the glyph benchmark: meta-train one learner within a wall-clock budget,
record it as a run, then evaluate 600 held-out episodes (5-way 1-shot, 5-way 5-shot, 20-way
1-shot where the learner allows) with 95% confidence intervals.

    python benchmarks/fewshot_targets.py --kind protonet --minutes 14
    python benchmarks/fewshot_targets.py --kind maml --minutes 14

Uses 2 threads (the CPU target is "≤ 15 min on 2 cores"); the run lands in the run log of
``$WORKBENCH_HOME`` (``python -m workbench runs`` lists it).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

#: The commands behind the README numbers (time_limit_s is set from --minutes).
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=sorted(COMMANDS), required=True)
    ap.add_argument("--minutes", type=float, default=14.0, help="meta-training wall-clock budget")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=600)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from workbench.data.glyphs import load_glyphs
    from workbench.fewshot import evaluate, train_from_command
    from workbench.runlog import RunLog

    t0 = time.monotonic()
    glyphs = load_glyphs()
    print(f"glyphs: {len(glyphs)} classes in {len(glyphs.alphabet_names)} alphabets ({time.monotonic() - t0:.1f}s)")
    cmd = dict(COMMANDS[args.kind], time_limit_s=args.minutes * 60, test_episodes=args.episodes)
    log = RunLog()
    t0 = time.monotonic()
    rid = train_from_command(cmd, data=glyphs, log=log)
    wall = time.monotonic() - t0
    rec = log.get(rid, metrics=False)
    s = rec["summary"]
    print(f"run {rid}: {s['steps']} meta-iterations in {s['train_seconds']:.0f}s "
          f"(train+test wall {wall:.0f}s), best val {s.get('best_val_accuracy')}")
    print(f"  5-way 1-shot: {100 * s['test_accuracy']:.2f} ± {100 * s['test_ci95']:.2f} % ({args.episodes} episodes)")
    extra = [(5, 5)] + ([(20, 1)] if args.kind == "protonet" else [])
    for n, k in extra:
        r = evaluate(rid, episodes=args.episodes, n_way=n, k_shot=k, q_query=15, log=log, data=glyphs)
        print(f"  {n}-way {k}-shot: {100 * r['mean']:.2f} ± {100 * r['ci95']:.2f} %")
    out = {k: {kk: v[kk] for kk in ("n_way", "k_shot", "mean", "ci95", "episodes")}
           for k, v in log.get(rid, metrics=False)["summary"]["fewshot_eval"].items()}
    print(json.dumps({"run": rid, "kind": args.kind, "train_seconds": s["train_seconds"], "steps": s["steps"],
                      "evals": out}, indent=1))


if __name__ == "__main__":
    main()
