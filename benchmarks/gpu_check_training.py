"""GPU smoke check for baseline training: the same command on ``accelerator: gpu`` (fp32 and
16-mixed), tested and used for ``predict``, and the CPU time of the same command as the
baseline measured in the same run.

    python benchmarks/gpu_check_training.py

Prints one line per configuration; exits non-zero if a GPU run does not end ``completed``
above chance. Skips (exit 0) when no CUDA device is present.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    os.environ["WORKBENCH_HOME"] = tempfile.mkdtemp(prefix="gpu-check-")
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return 0
    sys.path.insert(0, str(HERE.parent / "tests" / "training"))
    from training_support import fast_command, make_shapes

    from workbench import jobs
    from workbench.learners.classifier import predict
    from workbench.runlog import RunLog

    data = make_shapes(Path(os.environ["WORKBENCH_HOME"]) / "shapes", per_class=60, size=32)
    log = RunLog()
    ok = True
    for label, trainer in (("cpu fp32 (baseline)", {"accelerator": "cpu"}),
                           ("gpu fp32", {"accelerator": "gpu", "devices": 1}),
                           ("gpu 16-mixed", {"accelerator": "gpu", "devices": 1, "precision": "16-mixed"})):
        cmd = fast_command(name=label, epochs=8, image_size=32, trainer=trainer)
        t0 = time.perf_counter()
        res = jobs.train(cmd, data=data, log=log, progress=False)
        t_train = time.perf_counter() - t0
        out = jobs.test(res["run_id"], log=log)
        rec = log.get(res["run_id"])
        files = sorted(data.glob("*/0000.png"))
        preds = predict(res["run_id"], files, log=log)
        hits = sum(p["label"] == f.parent.name for p, f in zip(preds, files))
        acc = out["summary"]["test_accuracy"]
        print(f"{label:>20}: {rec['status']}, train {t_train:.1f} s, test accuracy {acc:.3f}"
              f" on {out['summary']['n_test']}, predict {hits}/{len(files)}, device "
              f"{'cuda' if trainer['accelerator'] == 'gpu' else 'cpu'}", flush=True)
        if trainer["accelerator"] == "gpu":
            ok &= rec["status"] == "completed" and acc > 0.5
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
