"""Reading weights: the one place the workbench calls ``torch.load`` on a file.

``weights_only=True`` always: a checkpoint is tensors and plain containers, never pickled
objects, so a file we did not write cannot run code when it is read. A file that holds anything
else — a ``__reduce__`` payload, a custom class — is refused with :class:`CheckpointError`
naming the file and the object it tried to load, before any of it runs. A zip checkpoint with a
compressed record is refused before it is read: ``torch.save`` never compresses, and a deflated
record is a decompression bomb (1 MB of file, 1 GB of tensor).
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any


class CheckpointError(ValueError):
    """A weights file that is not a plain, weights-only checkpoint (or cannot be read at all)."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint or state dict from ``path`` (on the CPU), read with ``weights_only=True``.

    Raises ``FileNotFoundError`` when there is no such regular file, :class:`CheckpointError`
    when it is not a weights-only checkpoint (pickled objects are refused, never executed), is
    torn, or is not a dict.
    """
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"no weights file {str(p)!r}")
    try:
        with open(p, "rb") as fh:  # one open file for the check and the load: no swap in between
            _refuse_compressed_records(p, fh)
            obj = torch.load(fh, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc)) or re.search(r"(GLOBAL \S+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(f"{p}: refused: it holds pickled objects{what}, not only weights; a weights-only"
                              " load never runs them (was this file written by the workbench?)") from None
    except Exception as exc:  # torn zip, wrong magic number, truncated tensor data …
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{p}: not a readable checkpoint: {first[:200]}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p}: expected a checkpoint (a dict of weights), got {type(obj).__name__}")
    return obj


def _refuse_compressed_records(p: Path, fh: Any) -> None:
    """Refuse a zip checkpoint holding a compressed record (``torch.save`` stores them raw)."""
    if not zipfile.is_zipfile(fh):
        fh.seek(0)
        return  # the legacy (pre-1.6) format: torch checks each storage's size against the file
    with zipfile.ZipFile(fh) as z:
        packed = [i for i in z.infolist() if i.compress_type != zipfile.ZIP_STORED]
    fh.seek(0)
    if packed:
        big = max(packed, key=lambda i: i.file_size)
        raise CheckpointError(f"{p}: refused: record {big.filename!r} is compressed ({big.compress_size:,} bytes"
                              f" that inflate to {big.file_size:,}); torch.save never compresses, so this file"
                              " was not written by it")
