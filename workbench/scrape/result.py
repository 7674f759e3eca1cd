"""What ``scrape()`` hands back: progress snapshots while it runs, a result when it is done."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ScrapeProgress:
    """A progress snapshot handed to ``scrape(progress=...)`` (possibly from worker threads).

    ``labels`` maps each label to its counters: ``candidates`` (search results),
    ``done`` (candidates handled), ``accepted`` (new images), ``existing`` (already
    there), ``rejected``, ``skipped`` (not needed: limit reached).
    """

    phase: str                        # "search" | "download" | "done"
    label: str | None
    labels: dict[str, dict[str, int]]
    message: str = ""

    @property
    def overall(self) -> dict[str, int]:
        """The counters summed over labels."""
        tot: Counter = Counter()
        for c in self.labels.values():
            tot.update(c)
        return dict(tot)


@dataclass
class ScrapeResult:
    """What a scrape built: where, how many per label, what was rejected and why."""

    root: Path
    counts: dict[str, int]            # images per label in the dataset now
    rejects: dict[str, int]           # this build's rejects by reason
    run_id: str | None
    new: dict[str, int] = field(default_factory=dict)       # images added by this build
    folders: dict[str, str] = field(default_factory=dict)   # label -> folder under root
    queries: dict[str, list[str]] = field(default_factory=dict)  # label -> queries
    api: str = "stub"                 # "serpapi" | "stub" | "endpoint"
    errors: dict[str, str] = field(default_factory=dict)    # query -> why it gave nothing
    searches: int = 0
    estimated_searches: int = 0
    searches_left: int | None = None
    elapsed_s: float = 0.0
    stopped: bool = False             # stopped early on request (or out of searches); rerun to resume
    related: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # query -> related / chips
    near_duplicates: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def related_labels(self) -> list[str]:
        """Related searches and chips of every query, deduplicated: candidate labels to add."""
        seen = {q.casefold() for qs in self.queries.values() for q in qs}
        out: list[str] = []
        for info in self.related.values():
            for s in info.get("related_searches", []):
                if s.casefold() not in seen:
                    seen.add(s.casefold())
                    out.append(s)
        return out

    def summary(self) -> str:
        """One line per label and one for the rejects."""
        nd = self.near_duplicates
        lines = [f"{self.root} ({self.api}{', stopped early' if self.stopped else ''}): {self.total} images, "
                 f"{len(self.counts)} labels, {sum(self.new.values())} new, {self.searches} searches, "
                 f"{self.elapsed_s:.1f}s"]
        for label, n in self.counts.items():
            lines.append(f"  {label:<24} {n:>5}  (+{self.new.get(label, 0)})  -> {self.folders.get(label, '')}/")
        rej = ", ".join(f"{k}={v}" for k, v in sorted(self.rejects.items())) or "none"
        lines.append(f"  rejects: {rej}")
        if nd.get("n_groups"):
            lines.append(f"  near-duplicates: {nd['n_groups']} groups ({nd['cross_label']} across labels), "
                         f"{nd['dropped']} dropped")
        for q, e in self.errors.items():
            lines.append(f"  error for {q!r}: {e}")
        return "\n".join(lines)

    def preview(self, per_label: int = 8):
        """Thumbnail grid per label (a matplotlib figure)."""
        from .preview import preview

        return preview(self.root, per_label, labels=list(self.counts))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["root"] = str(self.root)
        return d
