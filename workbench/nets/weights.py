"""Reading weights: the one place the workbench calls ``torch.load`` on a file.

``weights_only=True`` always: a checkpoint is tensors and plain containers, never pickled
objects, so a file we did not write cannot run code when it is read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint or state dict from ``path`` (on the CPU), read with ``weights_only=True``."""
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"no weights file {str(p)!r}")
    return torch.load(p, map_location="cpu", weights_only=True)
