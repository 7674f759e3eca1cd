"""The baseline recipe: an image folder, a seeded stratified split, an :class:`ImageClassifier`.

Testing uses the run's own held-out split (``split.json``) — or every image of another folder —
and stores accuracy, top-k accuracy, per-class accuracy and the confusion matrix.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..registry import ConfigError
from .loading import RunFileError, run_file
from .recipe import Prepared, Recipe, TestPlan


#: Largest ``split.json`` read back (a split of a million images is ~50 MB).
MAX_SPLIT_BYTES = 64 << 20


def read_split(path: Path, run_id: str) -> dict[str, list[str]]:
    """A run's stored split: ``{"train"|"val"|"test": [relative image path, …]}``, checked as untrusted."""
    if path.stat().st_size > MAX_SPLIT_BYTES:
        raise RunFileError(f"run {run_id}: {path.name} is {path.stat().st_size:,} bytes; a split is at most"
                           f" {MAX_SPLIT_BYTES:,}")
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise RunFileError(f"run {run_id}: {path.name} is not valid JSON ({str(exc)[:100]})") from None
    if not isinstance(split, dict) or not set(split) <= {"train", "val", "test"} or not all(
            isinstance(v, list) and all(isinstance(r, str) for r in v) for v in split.values()):
        raise RunFileError(f"run {run_id}: {path.name} is not a split (an object of train/val/test lists of"
                           " image paths)")
    return split


def _check_cache(cmd: Any, n_images: int) -> None:
    """The decoded-image cache (every image at ``image_size``, uint8) fits in memory."""
    from ..commands.machine import gib, memory_bytes

    h, w = cmd.image_hw
    need = n_images * cmd.channels * h * w
    if cmd.cache and need > 0.5 * memory_bytes():
        raise ConfigError("image_size", f"{n_images:,} images cached at {h}×{w} take {gib(need)}; this machine has"
                          f" {gib(memory_bytes())} (a smaller image_size, or \"cache\": false)", cmd.image_size)


class ImageRecipe(Recipe):
    """How a :class:`~workbench.commands.TrainingCommand` trains and tests."""

    def prepare(self, data: Any = None) -> Prepared:
        from ..data.folders import scan_folder
        from ..data.imagefolder import ImageFolderDataModule

        cmd = self.command.model_copy(deep=True)
        root = data if data is not None else cmd.data
        if root is None:
            raise ConfigError("data", "no dataset: pass data=DIR (or --data) or set 'data' in the command", None)
        classes, samples = scan_folder(root, cmd.labels, cmd.label_map)
        cmd.validate(n_labels=len(classes))  # names, params and shapes, before decoding anything
        _check_cache(cmd, len(samples))
        dm = ImageFolderDataModule(root, cmd)
        cmd.data = str(dm.root)
        has_val = bool(dm.split.get("val"))
        es = cmd.early_stopping
        if es is not None and es.monitor.startswith("val") and not has_val:
            raise ConfigError("early_stopping.monitor", f"{es.monitor} needs validation images (split.val > 0 and"
                              f" classes of 3 or more images); this split has none", es.monitor)
        if cmd.scheduler is not None and cmd.scheduler.name == "ReduceLROnPlateau" and not has_val:
            raise ConfigError("scheduler.name", "ReduceLROnPlateau steps on val_loss, which needs validation images"
                              " (split.val > 0 and classes of 3 or more images); this split has none",
                              cmd.scheduler.name)
        info = dm.info()
        return Prepared(cmd, dm, info, list(dm.classes), dm.in_shape, n_classes=len(dm.classes),
                        files={"split.json": dm.split_files()}, artifacts={"split": "split.json"},
                        monitor="val_loss" if has_val else None,
                        describe=f"{dm.n_labels} classes, {len(dm.samples)} images, split {info['split_counts']}")

    def fit_options(self, prepared: Prepared) -> dict[str, Any]:
        return {"max_epochs": prepared.command.epochs}

    def callbacks(self, prepared: Prepared) -> list[Any]:
        es = prepared.command.early_stopping
        if es is None:
            return []
        from pytorch_lightning.callbacks import EarlyStopping

        return [EarlyStopping(monitor=es.monitor, patience=es.patience, mode=es.mode, min_delta=es.min_delta)]

    def test_plan(self, module: Any, record: dict[str, Any], data: Any = None, limit: int | None = None,
                  **options: Any) -> TestPlan:
        from ..data.folders import scan_folder
        from ..data.imagefolder import ImageFolderDataModule

        if options:
            raise ConfigError(next(iter(options)), "not a test option of baseline runs", None, ["data", "limit"])
        if limit is not None and limit < 1:
            raise ConfigError("limit", f"expected a positive number of images, got {limit}", limit)
        cmd = module.command
        stored_root = (record.get("dataset") or {}).get("root") or cmd.data
        root = Path(data or stored_root).expanduser().resolve()
        split_file = run_file(record, "split.json")
        if stored_root and root == Path(stored_root).resolve() and split_file.is_file():
            split, source = read_split(split_file, record["id"]), "held-out test split"
        else:
            _, samples = scan_folder(root, module.classes, cmd.label_map)
            split, source = {"train": [], "val": [], "test": [r for r, _ in samples]}, "all images of the folder"
        dm = ImageFolderDataModule(root, cmd, split=split, classes=module.classes)
        if not dm.split.get("test"):
            raise ConfigError("split.test", f"run {record['id']} has no test images (split.test = {cmd.split.test})",
                              cmd.split.test)
        dm.test_limit = limit
        config = {"data": str(root), "source": source, "limit": limit, "n_test": len(dm.dataset("test", limit)),
                  "checkpoint": (record.get("artifacts") or {}).get("checkpoint")}

        def finish(m: Any) -> dict[str, Any]:
            res = m.test_results
            k = res["top_k"]
            return {"test_accuracy": res["accuracy"], f"test_top{k}_accuracy": res["top_k_accuracy"],
                    "per_class_accuracy": res["per_class_accuracy"], "confusion_matrix": res["confusion_matrix"],
                    "classes": res["classes"], "n_test": res["n_test"]}

        return TestPlan(config, {"datamodule": dm}, finish, _lines,
                        report=lambda m: {**m.test_results, "test_config": config})


def _lines(s: dict[str, Any]) -> list[str]:
    k = next((key for key in s if key.startswith("test_top")), None)
    head = f"test_accuracy {s['test_accuracy']:.3f}" + (f", {k.removeprefix('test_')} {s[k]:.3f}" if k else "") \
        + f" on {s['n_test']} images"
    width = max(len(c) for c in s["classes"])
    per = [f"  {c:<{width}}  {'-' if a is None else f'{a:.3f}'}"
           for c, a in ((c, s["per_class_accuracy"].get(c)) for c in s["classes"])]
    return [head, *per]
