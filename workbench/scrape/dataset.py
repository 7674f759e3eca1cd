"""The dataset on disk: ``ROOT/<label folder>/<hash>.jpg`` + ``manifest.jsonl`` + ``summary.json``.

- ``manifest.jsonl``: one JSON line per accepted image (label, folder, path, query, chips,
  url, source page, title, sizes, sha256, perceptual hash, search id, fetched time, and
  ``dup_group`` for near-duplicates). Appended while a build runs, so a crash loses at most
  the line being written; rewritten atomically when near-duplicate groups change.
- ``rejects.jsonl``: one line per skipped candidate with its reason.
- ``searches.jsonl``: one line per searched page (search metadata, related searches, chips).
- ``summary.json``: counts, rejects, queries, related searches, near-duplicate groups,
  limits (deadlines, Retry-After cap), the scrape run id.

Nothing is ever written through a symbolic link under the root: files are opened with
``O_NOFOLLOW`` relative to a directory descriptor of their folder, temporary files are
created ``O_EXCL`` with random names (mkstemp's guarantees, at a descriptor) and renamed
into place, and every manifest row is validated (label-folder rules, ``folder/<hash>.jpg``
paths) before it is trusted, so a crafted ``"folder": "../outside"`` is refused, not used.
The layout is what ``torchvision.datasets.ImageFolder`` reads.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import stat
import threading
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

MANIFEST = "manifest.jsonl"
REJECTS = "rejects.jsonl"
SEARCHES = "searches.jsonl"
SUMMARY = "summary.json"
IMAGE_EXT = ".jpg"
#: Longest label folder name (bytes are what file systems limit; keep well under 255).
MAX_FOLDER = 80
_UNSAFE = re.compile(r"[^\w\-.]+", re.UNICODE)
_FOLDER_OK = re.compile(r"[\w\-.]+", re.UNICODE)
_IMAGE_NAME = re.compile(r"[0-9a-f]{16}\.jpg")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class ManifestError(ValueError):
    """A dataset file that cannot be trusted: a bad manifest row, or a symbolic link under the root."""


def safe_label(label: str) -> str:
    """A folder name for a label: stable, unicode-safe, no separators, no ``..``.

    NFKC-normalised, lower-cased, runs of anything but letters/digits/``_-.`` become
    ``_``; leading dots are dropped (no hidden folders, no ``..``); an empty or
    over-long result gets a short hash of the label so distinct labels stay distinct.
    """
    if not isinstance(label, str):
        raise TypeError(f"label: {label!r} must be a string")
    text = unicodedata.normalize("NFKC", label).strip().casefold()
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)  # control/format chars
    folder = _UNSAFE.sub("_", text).strip("._-")
    digest = hashlib.sha256(label.encode("utf-8")).hexdigest()[:8]
    if not folder:
        return f"label-{digest}"
    if len(folder.encode("utf-8")) > MAX_FOLDER:
        cut = folder.encode("utf-8")[: MAX_FOLDER - 9].decode("utf-8", "ignore").strip("._-")
        folder = f"{cut}-{digest}"
    return folder


def valid_folder(folder: Any) -> bool:
    """Whether ``folder`` is a name :func:`safe_label` / :func:`assign_folders` could have made."""
    return (isinstance(folder, str) and bool(_FOLDER_OK.fullmatch(folder)) and not folder.startswith((".", "-", "_"))
            and len(folder.encode("utf-8")) <= MAX_FOLDER)


def assign_folders(labels: Iterable[str], existing: Mapping[str, str] | None = None) -> dict[str, str]:
    """Map labels to distinct folder names, keeping mappings already in the manifest.

    Two labels that sanitise to the same name (``"a/b"``, ``"a b"``) get a hash suffix
    on the later one, so neither overwrites the other.
    """
    out = dict(existing or {})
    used = set(out.values())
    for label in labels:
        if label in out:
            continue
        folder = safe_label(label)
        if folder in used:
            folder = f"{folder[: MAX_FOLDER - 9]}-{hashlib.sha256(label.encode('utf-8')).hexdigest()[:8]}"
        out[label] = folder
        used.add(folder)
    return out


# -- descriptor-relative file access ------------------------------------------------------
def _open_dir(path: str | os.PathLike, name: str | None = None, dir_fd: int | None = None) -> int:
    """A directory descriptor; ``name`` (inside ``dir_fd``) must not be a symbolic link."""
    try:
        if name is None:
            return os.open(path, os.O_RDONLY | _DIRECTORY)
        return os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ManifestError(f"{Path(path) / (name or '')}: is a symbolic link or not a folder; refusing to "
                                f"write through it") from None
        raise


def _open_file(dir_fd: int, name: str, flags: int, where: Path, mode: int = 0o644) -> int:
    try:
        return os.open(name, flags | _NOFOLLOW, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ManifestError(f"{where / name}: is a symbolic link; refusing to follow it") from None
        raise


def _tmp_at(dir_fd: int, name: str, where: Path) -> tuple[int, str]:
    """Create an exclusive temporary file next to ``name`` (mkstemp's O_EXCL + random name)."""
    for _ in range(16):
        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return _open_file(dir_fd, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, where), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{where}: could not create a temporary file for {name}")


def write_atomic(root: str | os.PathLike, name: str, write: Callable[[Any], None] | bytes,
                 folder: str | None = None) -> Path:
    """Write ``ROOT[/folder]/name`` through an exclusive temp file and an atomic rename.

    ``write`` is bytes or a function given the open binary file. The folder is created
    if missing and must not be a symbolic link; an existing ``name`` that is a link is
    replaced (the link itself, never its target).
    """
    root = Path(root)
    rfd = _open_dir(root)
    dfd = rfd
    try:
        if folder is not None:
            if not valid_folder(folder):
                raise ManifestError(f"folder: {folder!r} is not a valid label folder")
            try:
                os.mkdir(folder, 0o755, dir_fd=rfd)
            except FileExistsError:
                pass
            dfd = _open_dir(root, folder, rfd)
        where = root / folder if folder else root
        fd, tmp = _tmp_at(dfd, name, where)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh) if callable(write) else fh.write(write)
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise
        return where / name
    finally:
        if dfd != rfd:
            os.close(dfd)
        os.close(rfd)


def append_line(root: str | os.PathLike, name: str, obj: Mapping[str, Any]) -> None:
    """Append one JSON line to ``ROOT/name`` (never through a symbolic link)."""
    root = Path(root)
    rfd = _open_dir(root)
    try:
        fd = _open_file(rfd, name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, root)
        with os.fdopen(fd, "ab") as fh:
            fh.write((json.dumps(dict(obj), ensure_ascii=False, default=str) + "\n").encode("utf-8"))
    finally:
        os.close(rfd)


def remove_image(root: str | os.PathLike, rel: str) -> None:
    """Delete ``ROOT/folder/<hash>.jpg`` (validated; a missing file is fine)."""
    folder, name = _split_rel(rel)
    rfd = _open_dir(root)
    try:
        dfd = _open_dir(root, folder, rfd)
        try:
            os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        finally:
            os.close(dfd)
    finally:
        os.close(rfd)


def _split_rel(rel: Any) -> tuple[str, str]:
    if not isinstance(rel, str) or rel.count("/") != 1:
        raise ManifestError(f"path: {rel!r} is not '<label folder>/<hash>.jpg'")
    folder, name = rel.split("/")
    if not valid_folder(folder) or not _IMAGE_NAME.fullmatch(name):
        raise ManifestError(f"path: {rel!r} is not '<label folder>/<16 hex digits>.jpg'")
    return folder, name


def is_image_file(root: str | os.PathLike, rel: str) -> bool:
    """``ROOT/rel`` is a regular file and no link is on the way (``lstat``, folder and file)."""
    folder, name = _split_rel(rel)
    try:
        return (stat.S_ISDIR(os.lstat(Path(root) / folder).st_mode)
                and stat.S_ISREG(os.lstat(Path(root) / folder / name).st_mode))
    except OSError:
        return False


def read_jsonl_safe(root: str | os.PathLike, name: str) -> list[Any]:
    """Parsed lines of ``ROOT/name`` (not followed if a link; a torn last line is skipped)."""
    root = Path(root)
    try:
        rfd = _open_dir(root)
    except FileNotFoundError:
        return []
    try:
        try:
            fd = _open_file(rfd, name, os.O_RDONLY, root)
        except FileNotFoundError:
            return []
        with os.fdopen(fd, "rb") as fh:
            data = fh.read()
    finally:
        os.close(rfd)
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except (ValueError, RecursionError):
            continue  # a torn line from a crash, or garbage: not a row
    return out


def check_row(row: Any, n: int) -> dict[str, Any]:
    """A manifest row checked field by field; raises :class:`ManifestError` naming line ``n``."""
    where = f"{MANIFEST} line {n}"
    if not isinstance(row, dict):
        raise ManifestError(f"{where}: {type(row).__name__} is not a JSON object")
    for key in ("label", "folder", "path", "url", "sha256"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise ManifestError(f"{where}: field {key!r} is {row.get(key)!r}; expected a non-empty string")
    if not valid_folder(row["folder"]):
        raise ManifestError(f"{where}: folder {row['folder']!r} is not a label folder (letters, digits, '_', '-', "
                            f"'.'; no separators, no leading dot, at most {MAX_FOLDER} bytes)")
    try:
        folder, _ = _split_rel(row["path"])
    except ManifestError as exc:
        raise ManifestError(f"{where}: {exc}") from None
    if folder != row["folder"]:
        raise ManifestError(f"{where}: path {row['path']!r} is not inside folder {row['folder']!r}")
    return row


def load_manifest(root: str | os.PathLike) -> list[dict[str, Any]]:
    """The validated manifest rows of a dataset whose image file still exists.

    A path written twice (an image re-fetched after its file went missing) counts once:
    the last line wins.
    """
    by_path: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(read_jsonl_safe(root, MANIFEST)):
        row = check_row(r, i + 1)
        by_path.pop(row["path"], None)
        by_path[row["path"]] = row
    return [r for r in by_path.values() if is_image_file(root, r["path"])]


def load_rejects(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Every recorded reject of a dataset (all runs)."""
    return [r for r in read_jsonl_safe(root, REJECTS) if isinstance(r, dict)]


def load_searches(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Every searched page recorded for a dataset (all runs)."""
    return [r for r in read_jsonl_safe(root, SEARCHES) if isinstance(r, dict)]


def manifest_frame(root: str | os.PathLike):
    """The manifest as a pandas DataFrame."""
    import pandas as pd

    return pd.DataFrame(load_manifest(root))


def read_summary(root: str | os.PathLike) -> dict[str, Any]:
    """``summary.json`` of a dataset (empty dict when absent or unreadable)."""
    rows = []
    try:
        rfd = _open_dir(root)
    except (FileNotFoundError, ManifestError):
        return {}
    try:
        fd = _open_file(rfd, SUMMARY, os.O_RDONLY, Path(root))
        with os.fdopen(fd, "rb") as fh:
            rows = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError, ManifestError):
        return {}
    finally:
        os.close(rfd)
    return rows if isinstance(rows, dict) else {}


def write_summary(root: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    """Write ``summary.json`` atomically."""
    body = json.dumps(dict(data), indent=1, ensure_ascii=False, default=str).encode("utf-8")
    return write_atomic(root, SUMMARY, body)


def rewrite_manifest(root: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    """Replace ``manifest.jsonl`` with ``rows`` in one atomic rename."""
    body = "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    write_atomic(root, MANIFEST, body)


class Manifest:
    """Thread-safe, append-only view of a dataset's manifest and rejects.

    Holds the sets the downloader dedupes against: URLs already fetched, content
    hashes already stored (across all labels) and URLs rejected for good.
    """

    #: reject reasons that would repeat on a retry (not re-fetched on resume)
    PERMANENT = frozenset({"not_an_image", "svg", "decompression_bomb", "too_large", "truncated", "too_many_pixels",
                           "blocked_url", "blocked_address", "bad_url", "near_duplicate"})

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.rows = load_manifest(self.root)
        self.urls: dict[str, str] = {r["url"]: r["label"] for r in self.rows}  # url -> label
        self.hashes = {r["sha256"]: r for r in self.rows}
        self.bad_urls = {r["url"] for r in load_rejects(self.root)
                         if r.get("reason") in self.PERMANENT and isinstance(r.get("url"), str)}
        self.counts = Counter(r["label"] for r in self.rows)

    def add(self, row: Mapping[str, Any]) -> None:
        append_line(self.root, MANIFEST, row)
        self.rows.append(dict(row))

    def reject(self, row: Mapping[str, Any]) -> None:
        append_line(self.root, REJECTS, row)

    def search(self, row: Mapping[str, Any]) -> None:
        append_line(self.root, SEARCHES, row)


def fingerprint(root: str | os.PathLike) -> dict[str, Any]:
    """A dataset fingerprint for run records: the data layer's record plus a hash of the contents.

    The ``fingerprint`` (names, sizes, mtimes) is :func:`workbench.data.folders.describe`'s, so a
    scrape run and a training run on the same folder carry the same one; ``sha256`` hashes the
    manifest's image hashes, so two datasets with the same images under the same labels match
    wherever they live.
    """
    from ..data.folders import describe

    root = Path(root)
    rows = load_manifest(root)
    h = hashlib.sha256()
    for folder, sha in sorted((r["folder"], r["sha256"]) for r in rows):
        h.update(f"{folder}/{sha}\n".encode())
    groups = {r["dup_group"] for r in rows if r.get("dup_group")}
    base = describe(root) if rows else {"root": str(root.resolve()), "name": root.name, "n_images": 0,
                                        "classes": [], "counts": {}, "fingerprint": None}
    return {**base, "source": "scrape", "sha256": h.hexdigest()[:16], "dup_groups": len(groups)}
