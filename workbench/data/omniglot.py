"""Loaders for the real few-shot benchmarks from a local folder: Omniglot and mini-ImageNet.

Nothing is downloaded unless the caller passes ``download=True`` (Omniglot only, through
torchvision; mini-ImageNet has no canonical public URL, so it must be placed by hand).

Layouts understood:

- **Omniglot** (torchvision's): ``<root>/omniglot-py/images_background/<Alphabet>/<character>/*.png``
  and ``images_evaluation/…`` (``<root>`` may also point at ``omniglot-py`` or at one of the two
  ``images_*`` folders). Classes are ``"<Alphabet>/<character>"``, grouped by alphabet; strokes
  are inverted to ink = 1 like the glyph benchmark.
- **mini-ImageNet**: either class folders ``<root>/<wnid>/*.jpg`` (optionally inside
  ``train/``, ``val/``, ``test/`` sub-folders, which then give the split), or the common csv
  split: ``<root>/images/*.jpg`` with ``train.csv`` / ``val.csv`` / ``test.csv`` of
  ``filename,label`` rows (Ravi & Larochelle).
"""
from __future__ import annotations

import csv
from pathlib import Path

from .episodes import SPLITS, FolderSource
from .folders import class_folders

OMNIGLOT_PARTS = ("images_background", "images_evaluation")


def _omniglot_parts(root: Path) -> list[Path]:
    for base in (root, root / "omniglot-py"):
        parts = [base / p for p in OMNIGLOT_PARTS if (base / p).is_dir()]
        if parts:
            return parts
    if root.name in OMNIGLOT_PARTS and root.is_dir():
        return [root]
    return []


def omniglot_source(root: str | Path, image_size: int = 28, background: bool | None = None,
                    download: bool = False) -> FolderSource:
    """Omniglot from a local folder (torchvision layout) as a :class:`FolderSource`.

    Args:
        root: folder holding ``omniglot-py`` (or the ``images_*`` folders themselves).
        image_size: side after resizing (28 in the papers).
        background: ``True`` = background set only, ``False`` = evaluation set only,
            ``None`` = both (the 1623 characters used by the usual character-level split).
        download: fetch through ``torchvision.datasets.Omniglot`` if missing (needs internet).
    """
    root = Path(root).expanduser()
    parts = _omniglot_parts(root)
    if not parts and download:
        from torchvision.datasets import Omniglot

        for bg in ((True, False) if background is None else (background,)):
            Omniglot(str(root), background=bg, download=True)
        parts = _omniglot_parts(root)
    if not parts:
        raise FileNotFoundError(
            f"omniglot: no {' or '.join(OMNIGLOT_PARTS)} folder under {str(root)!r}; place torchvision's "
            "omniglot-py there or call omniglot_source(root, download=True) with internet access")
    if background is not None:
        want = OMNIGLOT_PARTS[0] if background else OMNIGLOT_PARTS[1]
        parts = [p for p in parts if p.name == want]
        if not parts:
            raise FileNotFoundError(f"omniglot: {want} not found under {str(root)!r}")
    classes = []
    for p in parts:
        classes.extend(class_folders(p, depth=2))
    return FolderSource(root, image_size=image_size, channels=1, invert=True, name="omniglot", classes=classes)


def miniimagenet_source(root: str | Path, image_size: int = 84) -> tuple[FolderSource, dict[str, str] | None]:
    """mini-ImageNet from a local folder.

    Returns ``(source, predefined)`` where ``predefined`` maps class → split when the folder
    defines one (csv files or ``train/val/test`` sub-folders), else ``None``.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"miniimagenet: {str(root)!r} is not a folder (mini-ImageNet is never downloaded: "
                                "place the images there)")
    csvs = {s: root / f"{s}.csv" for s in SPLITS}
    if all(p.is_file() for p in csvs.values()):
        img_dir = root / "images" if (root / "images").is_dir() else root
        files: dict[str, list[Path]] = {}
        predefined: dict[str, str] = {}
        for split, path in csvs.items():
            with open(path, newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    try:
                        fname, label = row["filename"], row["label"]
                    except KeyError:
                        raise ValueError(f"miniimagenet: {path.name} needs 'filename,label' columns, "
                                         f"got {list(row)}") from None
                    f = img_dir / fname
                    if Path(fname).is_absolute() or not f.resolve().is_relative_to(img_dir.resolve()):
                        raise ValueError(f"miniimagenet: {path.name} lists {fname!r}, which is not a file inside"
                                         f" {str(img_dir)!r}")  # a manifest never names files elsewhere
                    if not f.is_file():
                        raise FileNotFoundError(f"miniimagenet: {path.name} lists {fname!r}, not found in "
                                                f"{str(img_dir)!r}")
                    files.setdefault(label, []).append(f)
                    if predefined.setdefault(label, split) != split:
                        raise ValueError(f"miniimagenet: class {label!r} is in two csv splits")
        classes = [(c, c, sorted(fs)) for c, fs in sorted(files.items())]
        return FolderSource(root, image_size, 3, name="miniimagenet", classes=classes), predefined
    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    if split_dirs:
        classes, predefined = [], {}
        for d in split_dirs:
            for name, _, fs in class_folders(d, depth=1):
                classes.append((name, name, fs))
                predefined[name] = d.name
        return FolderSource(root, image_size, 3, name="miniimagenet", classes=classes), predefined
    classes = class_folders(root, depth=1)
    return FolderSource(root, image_size, 3, name="miniimagenet", classes=classes), None
