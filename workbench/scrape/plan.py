"""Checking a scrape's arguments and planning it: folders, searches it will spend, account.

Everything here runs before any search is sent and before a run record exists, so a bad
argument, a tampered manifest or a symlinked label folder is a clear error that loses
nothing, and ``scrape(..., dry_run=True)`` can show the plan without spending a search.
"""
from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .dataset import ManifestError, assign_folders, load_manifest
from .neardup import MODES
from .params import MAX_PAGE, PAGE_SIZE, check_params, estimate_searches


def as_list(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{name}: {value!r} must be a string or a list of strings") from None
    bad = [v for v in items if not isinstance(v, str) or not v.strip()]
    if bad or not items:
        raise ValueError(f"{name}: {bad[0] if bad else items!r} is not valid; expected one or more non-empty "
                         f"strings")
    return [v.strip() for v in items]


def positive(name: str, v: Any, allow_none: bool = False, upper: int | None = None) -> int | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1 or (upper is not None and v > upper):
        extra = " or None" if allow_none else ""
        top = f" and <= {upper}" if upper is not None else ""
        raise ValueError(f"{name}: {v!r} is not allowed; expected an integer >= 1{top}{extra}")
    return v


def seconds(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v != v or v == float("inf"):
        raise ValueError(f"{name}: {v!r} is not allowed; expected a positive number of seconds")
    return float(v)


def resize_arg(resize: Any) -> int | tuple[int, int] | None:
    if resize is None:
        return None
    if isinstance(resize, int) and not isinstance(resize, bool) and resize >= 1:
        return resize
    if isinstance(resize, (tuple, list)) and len(resize) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in resize):
        return (int(resize[0]), int(resize[1]))
    raise ValueError(f"resize: {resize!r} is not allowed; expected None, a longest side in pixels (int >= 1) "
                     f"or an exact (width, height)")


def check_options(*, pages: Any, limit: Any, workers: Any, params: Mapping[str, Any] | None, chips: Any,
                  resize: Any, max_bytes: Any, near_duplicates: Any, deadline: Any, download_deadline: Any,
                  retry_after_cap: Any) -> dict[str, Any]:
    """Every scalar option checked (``ValueError`` naming the field); returns them normalised."""
    out: dict[str, Any] = {
        "pages": positive("pages", pages, upper=MAX_PAGE + 1),
        "limit": positive("limit", limit, allow_none=True),
        "workers": positive("workers", workers, upper=64),
        "params": check_params(dict(params or {})),
        "resize": resize_arg(resize),
        "max_bytes": positive("max_bytes", max_bytes),
        "deadline": seconds("deadline", deadline),
        "download_deadline": seconds("download_deadline", download_deadline),
        "retry_after_cap": seconds("retry_after_cap", retry_after_cap),
    }
    if chips is not None and (not isinstance(chips, str) or not chips.strip()):
        raise ValueError(f"chips: {chips!r} is not a suggested-search name; expected a non-empty string")
    if near_duplicates not in MODES:
        raise ValueError(f"near_duplicates: {near_duplicates!r} is not allowed; expected one of {', '.join(MODES)}")
    return out


def check_root(root: Path, folders: Mapping[str, str], create: bool = True) -> list[dict[str, Any]]:
    """The dataset folder is usable: validated manifest rows, no symlinked label folders."""
    if root.exists() and not root.is_dir():
        raise ValueError(f"out: {str(root)!r} exists and is not a folder")
    if not root.exists():
        if not create:
            return []
        root.mkdir(parents=True, exist_ok=True)
    for name in ("manifest.jsonl", "rejects.jsonl", "searches.jsonl", "summary.json"):
        if (root / name).is_symlink():
            raise ManifestError(f"{root / name}: is a symbolic link; refusing to follow it")
    rows = load_manifest(root)  # raises ManifestError on a crafted row
    for folder in set(folders.values()) | {r["folder"] for r in rows}:
        p = root / folder
        try:
            mode = os.lstat(p).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
            raise ManifestError(f"{p}: the label folder is a symbolic link or not a folder; refusing to write "
                                f"through it")
    return rows


def folders_for(root: Path, by_label: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Label → folder, keeping the mappings of the existing (validated) manifest."""
    existing: dict[str, str] = {}
    if (root / "manifest.jsonl").exists():
        for r in load_manifest(root):
            existing.setdefault(r["label"], r["folder"])
    return {lab: f for lab, f in assign_folders(by_label, existing).items() if lab in by_label}


@dataclass
class ScrapePlan:
    """What a build will do, and spend, before it does it (``scrape(dry_run=True)`` returns one)."""

    root: Path
    queries: dict[str, list[str]]          # label -> queries
    folders: dict[str, str]
    pages: int
    chips: str | None
    params: dict[str, str]
    api: str                               # "serpapi" | "endpoint" | "stub"
    endpoint: str
    estimated_searches: int
    searches_left: int | None = None       # from /account.json when the key allows
    account_note: str = ""
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        n = sum(len(q) for q in self.queries.values())
        chips = f" + {n} chips look-ups" if self.chips else ""
        left = (f"; the account has {self.searches_left} searches left" if self.searches_left is not None
                else f"; {self.account_note}" if self.account_note else "")
        lines = [f"Plan for {self.root} ({self.api}): up to {self.estimated_searches} searches "
                 f"({n} queries x {self.pages} pages of {PAGE_SIZE}{chips}){left}."]
        for label, qs in self.queries.items():
            lines.append(f"  {label!r} -> {self.folders[label]}/  from {', '.join(map(repr, qs))}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["root"] = str(self.root)
        return d


def make_plan(root: Path, by_label: Mapping[str, list[str]], folders: Mapping[str, str], pages: int,
              chips: str | None, params: Mapping[str, str], api: str, endpoint: str) -> ScrapePlan:
    n = sum(len(q) for q in by_label.values())
    return ScrapePlan(root=root, queries={k: list(v) for k, v in by_label.items()}, folders=dict(folders),
                      pages=pages, chips=chips, params=dict(params), api=api, endpoint=endpoint,
                      estimated_searches=estimate_searches(n, pages, bool(chips)))


def check_account(plan: ScrapePlan, client: Any) -> None:
    """Fill ``plan.searches_left`` from ``/account.json`` (free); a failure is a note, not an error."""
    from .errors import SerpApiError

    try:
        acct = client.account()
    except (SerpApiError, ValueError) as exc:
        failure = exc
    else:
        failure = None
        plan.searches_left = int(acct["total_searches_left"])
    if failure is not None:
        plan.account_note = f"account check unavailable ({str(failure)[:120]})"
        return
    if plan.searches_left is not None and plan.searches_left < plan.estimated_searches:
        plan.warnings.append(f"the account has {plan.searches_left} searches left, fewer than the "
                             f"{plan.estimated_searches} this build may use; it stops when they run out")
