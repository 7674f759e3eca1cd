"""Crafted run folders for the hostile-input tests: a pickle payload, clones of trained runs to attack."""
from __future__ import annotations

import builtins
import shutil
from pathlib import Path

import torch


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appearing means code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def clone(trained, kind: str, home: Path, status: str = "trained"):
    """A copy of the trained ``kind`` run in a new run log under ``home``: ``(log, run id, run folder)``."""
    from workbench import RunLog

    src_log, ids = trained
    rec = src_log.get(ids[kind], metrics=False)
    log = RunLog(home / "runs.json")
    extra = {k: rec[k] for k in ("splits",) if k in rec}
    run = log.start(rec["name"], rec["kind"], rec["config"], dataset=rec.get("dataset"), **extra)
    for item in Path(rec["dir"]).iterdir():
        if item.is_dir():
            shutil.copytree(item, run.dir / item.name)
        elif item.suffix in (".json", ".ckpt", ".pt"):
            shutil.copy2(item, run.dir / item.name)
    run.finish(status, summary=rec.get("summary") or {}, artifacts=rec.get("artifacts") or {})
    return log, run.id, Path(log.get(run.id, metrics=False)["dir"])


def poison(folder: Path, marker: Path) -> int:
    """Overwrite every checkpoint in a run folder with a pickle payload; how many were overwritten."""
    n = 0
    for p in list(folder.rglob("*.ckpt")) + list(folder.rglob("*.pt")):
        torch.save({"state_dict": {}, "hyper_parameters": Payload(marker), "hparams": Payload(marker)}, p)
        n += 1
    return n


def outside_checkpoint(folder: Path, where: Path) -> Path:
    """A *valid* checkpoint of the same run, copied outside its folder."""
    src = next(folder.rglob("*.ckpt"), None) or next(folder.rglob("*.pt"))
    where.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, where)
    return where


def an_image(folders) -> Path:
    return next(Path(folders["baseline"], "circle").iterdir())
