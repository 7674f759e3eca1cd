"""One prepared GPU session for the few-shot numbers (run through the device tool, ≤ 6 minutes):

1. ``bench_maml.py`` on CUDA: vmap vs per-task loop, second vs first order;
2. meta-train MAML (second order), FOMAML and ProtoNet on the glyph benchmark for a fixed
   wall-clock budget each, then evaluate 600 held-out episodes per setting with 95% CI.

Every phase checks the remaining budget and writes its results at once, so a cut-off run
still returns what it finished. Results: ``$OUT/results.json``, the run log ``$OUT/runs.json``
and each run's ``metrics-<kind>.jsonl``.

    python benchmarks/fewshot_device.py --budget 330            # on the GPU machine
    python benchmarks/fewshot_device.py --device cpu --quick    # rehearsal here
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

T0 = time.monotonic()


def left(budget: float) -> float:
    return budget - (time.monotonic() - T0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget", type=float, default=330.0, help="seconds for the whole script")
    ap.add_argument("--quick", action="store_true", help="tiny rehearsal (CPU)")
    args = ap.parse_args()
    out = Path(os.environ.get("OUT") or "/tmp/fewshot-device-out")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WORKBENCH_HOME", "/tmp/wbh-device")
    results: dict = {"device": args.device, "phases": {}}

    def save() -> None:
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))

    import torch

    if args.device == "cuda":
        results["gpu"] = torch.cuda.get_device_name(0)
        torch.backends.cudnn.benchmark = True
    results["torch"] = torch.__version__
    # 1. speed
    reps = "3" if args.quick else "20"
    for mb in (["4"] if args.quick else ["16", "32"]):
        t = time.monotonic()
        try:
            r = subprocess.run([sys.executable, "benchmarks/bench_maml.py", "--device", args.device, "--reps", reps,
                                "--meta-batch", mb, "--threads", "2", "--json", str(out / f"bench-mb{mb}.json")],
                               capture_output=True, text=True, timeout=max(10, left(args.budget) - 220))
            print(r.stdout, r.stderr[-2000:] if r.returncode else "", flush=True)
            res = {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr[-1500:] if r.returncode else ""}
        except subprocess.TimeoutExpired:
            res = {"rc": "timeout"}
        results["phases"][f"bench_mb{mb}"] = {"seconds": round(time.monotonic() - t, 1), **res}
        save()

    from workbench.data.glyphs import load_glyphs
    from workbench.fewshot import evaluate, train_from_command
    from workbench.runlog import RunLog

    sys.path.insert(0, str(Path(__file__).parent))
    from fewshot_targets import COMMANDS

    t = time.monotonic()
    glyphs = load_glyphs()
    results["glyphs_seconds"] = round(time.monotonic() - t, 1)
    log = RunLog()
    accel = {"accelerator": "gpu" if args.device == "cuda" else "cpu", "devices": 1}
    plan = [  # kind, training seconds, extra (n, k) evaluations
        ("maml", 8 if args.quick else 80, [(5, 5)]),
        ("protonet", 8 if args.quick else 40, [(5, 5), (20, 1)]),
        ("fomaml", 8 if args.quick else 40, []),
    ]
    episodes = 20 if args.quick else 600
    for kind, secs, extra in plan:
        need = secs + (15 if args.quick else 25) * (1 + len(extra))
        if left(args.budget) < need:
            results["phases"][kind] = {"skipped": f"{left(args.budget):.0f}s left, needed {need}s"}
            save()
            continue
        cmd = json.loads(json.dumps(COMMANDS[kind]))
        cmd.update(time_limit_s=secs, test_episodes=episodes, trainer=accel, name=f"{cmd['name']}-{args.device}")
        if kind != "protonet":
            cmd["episodes"]["meta_batch"] = 32 if args.device == "cuda" else 16
            cmd["maml"]["vectorize"] = "auto"
        if args.quick:
            cmd["val_every"], cmd["val_episodes"] = 5, 5
        t = time.monotonic()
        try:
            rid = train_from_command(cmd, data=glyphs, log=log)
        except Exception as exc:  # keep going: the other learners' numbers still count
            results["phases"][kind] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            save()
            continue
        rec = log.get(rid, metrics=False)
        s = rec["summary"]
        ph = {"run": rid, "command": cmd, "steps": s.get("steps"), "train_seconds": s.get("train_seconds"),
              "best_val_accuracy": s.get("best_val_accuracy"), "evals": {}}
        for n, k in extra:
            evaluate(rid, episodes=episodes, n_way=n, k_shot=k, q_query=15, log=log, data=glyphs, device=args.device)
        for key, v in log.get(rid, metrics=False)["summary"].get("fewshot_eval", {}).items():
            ph["evals"][key] = {kk: v[kk] for kk in ("mean", "ci95", "episodes", "seconds")}
        ph["wall_seconds"] = round(time.monotonic() - t, 1)
        results["phases"][kind] = ph
        print(kind, json.dumps({k: v for k, v in ph.items() if k != "command"}), flush=True)
        try:
            shutil.copy(log.run_dir(rid) / "metrics.jsonl", out / f"metrics-{kind}.jsonl")
        except OSError:
            pass
        save()
    try:
        shutil.copy(log.path, out / "runs.json")
    except OSError:
        pass
    results["total_seconds"] = round(time.monotonic() - T0, 1)
    save()
    print("done in", results["total_seconds"], "s")


if __name__ == "__main__":
    main()
