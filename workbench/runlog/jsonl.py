"""Append-only JSON-lines files (per-run metrics of the TinyDB store, scrape manifests).

A writer killed mid-line leaves a torn last line. Readers skip it; the next writer first
ends it with a newline so its own rows are never glued onto the fragment.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, IO


def parse_lines(data: bytes, *, torn_tail: bool = True) -> list[dict[str, Any]]:
    """JSON objects of a JSON-lines blob; undecodable, non-JSON and non-object lines are skipped.

    ``torn_tail``: drop a last line without its newline (a writer mid-flush or killed).
    """
    lines = data.split(b"\n")
    if torn_tail or not lines[-1].strip():
        lines = lines[:-1]
    rows: list[dict[str, Any]] = []
    for raw in lines:
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of an append-only JSON-lines file; a missing file is empty, a torn last line is skipped."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return []
    return parse_lines(data)


class JsonlAppender:
    """Appends lines to a JSON-lines file, repairing a torn last line before the first write."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fh: IO[bytes] | None = None

    def _open(self) -> IO[bytes]:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "ab")
            try:
                if fh.tell() > 0:
                    with open(self.path, "rb") as rd:
                        rd.seek(-1, os.SEEK_END)
                        if rd.read(1) != b"\n":
                            fh.write(b"\n")  # end the fragment: it becomes one bad line, skipped on read
            except OSError:
                fh.close()
                raise
            self._fh = fh
        return self._fh

    def append(self, lines: list[str]) -> None:
        """Write ``lines`` (no newlines inside) and hand them to the kernel (survives SIGKILL)."""
        if not lines:
            return
        fh = self._open()
        fh.write(("\n".join(lines) + "\n").encode("utf-8"))
        fh.flush()

    def sync(self) -> None:
        """fsync what was written (power-loss safe)."""
        if self._fh is not None:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
