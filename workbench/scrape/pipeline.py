"""``scrape()``: queries → searched → downloaded → image-folder dataset, recorded in the run log.

Also ``demo_dataset()``: the small offline dataset notebooks 02 and 03 train on.
"""
from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .. import paths
from .client import (DEFAULT_BASE_URL, PAGE_SIZE, PASSTHROUGH_PARAMS, ImageResult, SerpApiClient, SerpApiNoResults,
                     parse_size, redact)
from .dataset import assign_folders, fingerprint, load_manifest, read_summary, write_summary
from .downloader import DEFAULT_MAX_BYTES, Downloader, LabelStats
from .stub import SerpApiStub


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
    elapsed_s: float = 0.0
    stopped: bool = False             # stopped early on request; rerun to resume

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line per label and one for the rejects."""
        lines = [f"{self.root} ({self.api}{', stopped early' if self.stopped else ''}): {self.total} images, {len(self.counts)} labels, "
                 f"{sum(self.new.values())} new, {self.searches} searches, {self.elapsed_s:.1f}s"]
        for label, n in self.counts.items():
            lines.append(f"  {label:<24} {n:>5}  (+{self.new.get(label, 0)})  -> {self.folders.get(label, '')}/")
        rej = ", ".join(f"{k}={v}" for k, v in sorted(self.rejects.items())) or "none"
        lines.append(f"  rejects: {rej}")
        for q, e in self.errors.items():
            lines.append(f"  error for {q!r}: {e}")
        return "\n".join(lines)

    def preview(self, per_label: int = 8):
        """Thumbnail grid per label (a matplotlib figure)."""
        from .dataset import preview

        return preview(self.root, per_label, labels=list(self.counts))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["root"] = str(self.root)
        return d


def _as_list(name: str, value: Any) -> list[str]:
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


def _positive(name: str, v: Any, allow_none: bool = False) -> int | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name}: {v!r} is not allowed; expected an integer >= 1{extra}")
    return v


def _resize_arg(resize: Any) -> int | tuple[int, int] | None:
    if resize is None:
        return None
    if isinstance(resize, int) and not isinstance(resize, bool) and resize >= 1:
        return resize
    if isinstance(resize, (tuple, list)) and len(resize) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in resize):
        return (int(resize[0]), int(resize[1]))
    raise ValueError(f"resize: {resize!r} is not allowed; expected None, a longest side in pixels (int >= 1) "
                     f"or an exact (width, height)")


def _say(log: Callable[[str], None] | None, msg: str) -> None:
    (log or print)(msg)


def scrape(queries: str | Sequence[str], out: str | os.PathLike, *, labels: Sequence[str] | None = None,
           pages: int = 1, limit: int | None = None, size: str | tuple[int, int] | None = None,
           chips: str | None = None, api_key: str | None = None, base_url: str | None = None,
           workers: int = 8, progress: Callable[[ScrapeProgress], None] | None = None,
           log: Callable[[str], None] | None = None, resize: int | tuple[int, int] | None = None,
           params: Mapping[str, Any] | None = None, offline: bool = False, runlog: Any = None,
           run_name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES, retries: int = 3,
           backoff: float = 0.5, timeout: tuple[float, float] = (5.0, 30.0),
           stub_options: Mapping[str, Any] | None = None, stop: threading.Event | None = None) -> ScrapeResult:
    """Build (or extend) an image-folder dataset from Google Images queries.

    Uses SerpApi when a key is given or ``$SERPAPI_API_KEY`` is set; otherwise a
    ``base_url`` without a key, otherwise a loopback :class:`SerpApiStub` (announced
    in one line through ``log``). Re-running resumes: nothing already present is
    downloaded again. The build is recorded in the run log as a run of kind ``scrape``.

    Args:
        queries: search queries; each becomes a label.
        out: dataset folder (``out/<label>/<hash>.jpg`` + ``manifest.jsonl``).
        labels: display labels, one per query (default: the queries). Equal labels merge.
        pages: result pages per query (100 results each).
        limit: at most this many images per label (``None``: all results).
        size: exact image size ``"WxH"`` (Google's ``imagesize:`` operator).
        chips: a suggested-search name (e.g. ``"outline"``) to narrow every query.
        api_key, base_url: SerpApi credentials/endpoint (default from the environment).
        workers: parallel downloads.
        progress: called with a :class:`ScrapeProgress` as work advances (any thread).
        log: one-line messages (default ``print``).
        resize: store images with longest side ``resize`` (int) or exactly ``(w, h)``.
        params: other SerpApi parameters (``safe``, ``imgsz``, ``image_type``, ``tbs`` …).
        offline: always use the loopback stub, even with a key.
        runlog: a :class:`workbench.RunLog` (default: the workbench's).
        stop: a ``threading.Event``; once set, no new search or download starts, the
            images written so far stay, and the run is recorded as ``stopped``.
    """
    from ..runlog import RunLog

    t0 = time.perf_counter()
    qs = _as_list("queries", queries)
    labs = _as_list("labels", labels) if labels is not None else list(qs)
    if len(labs) != len(qs):
        raise ValueError(f"labels: {len(labs)} labels for {len(qs)} queries; give one label per query")
    pages = _positive("pages", pages)
    limit = _positive("limit", limit, allow_none=True)
    workers = _positive("workers", workers)
    size_wh = parse_size(size)
    params = dict(params or {})
    unknown = [k for k in params if k not in PASSTHROUGH_PARAMS]
    if unknown:
        raise ValueError(f"params: unknown SerpApi parameter(s) {', '.join(map(repr, unknown))}; allowed: "
                         f"{', '.join(PASSTHROUGH_PARAMS)}")
    if chips is not None and (not isinstance(chips, str) or not chips.strip()):
        raise ValueError(f"chips: {chips!r} is not a suggested-search name; expected a non-empty string")
    resize = _resize_arg(resize)
    _positive("max_bytes", max_bytes)
    root = Path(out).expanduser()
    root.mkdir(parents=True, exist_ok=True)

    key = None if offline else (api_key if api_key is not None else os.environ.get("SERPAPI_API_KEY")) or None
    endpoint = None if offline else base_url or os.environ.get("SERPAPI_BASE_URL") or None
    stub: SerpApiStub | None = None
    if key:
        api = "serpapi"
        _say(log, f"Using SerpApi Google Images at {redact(endpoint or DEFAULT_BASE_URL)} (API key set).")
    elif endpoint:
        api = "endpoint"
        _say(log, f"No SerpApi key: using the SerpApi-compatible endpoint {redact(endpoint)}.")
    else:
        api = "stub"
        stub = SerpApiStub(**dict(stub_options or {})).start()
        endpoint = stub.base_url
        _say(log, f"No SerpApi key (set SERPAPI_API_KEY for Google Images): using the offline loopback stub at "
                  f"{endpoint} — generated images.")

    if limit is not None and limit > pages * PAGE_SIZE:
        _say(log, f"Note: limit={limit} needs at least {-(-limit // PAGE_SIZE)} pages of {PAGE_SIZE} results; "
                  f"searching pages={pages}.")
    by_label: dict[str, list[str]] = {}
    for q, lab in zip(qs, labs):
        by_label.setdefault(lab, []).append(q)
    config = {"queries": qs, "labels": labs, "pages": pages, "limit": limit,
              "size": f"{size_wh[0]}x{size_wh[1]}" if size_wh else None, "chips": chips, "params": params,
              "workers": workers, "resize": list(resize) if isinstance(resize, tuple) else resize, "api": api,
              "endpoint": "stub" if api == "stub" else redact(endpoint or DEFAULT_BASE_URL),
              "out": str(root), "max_bytes": max_bytes}
    try:
        rl = runlog if runlog is not None else RunLog()
        run = rl.start(run_name or f"scrape {root.name}", "scrape", config, tags=["scrape", api],
                       dataset={"root": str(root), "name": root.name, "source": "scrape"})
    except BaseException:
        if stub is not None:
            stub.stop()
        raise
    client = SerpApiClient(api_key=key, base_url=endpoint or DEFAULT_BASE_URL, retries=retries, backoff=backoff,
                           timeout=timeout)
    lock = threading.Lock()
    stats: dict[str, LabelStats] = {lab: LabelStats() for lab in by_label}
    phase = ["search"]

    def emit(label: str | None, message: str = "") -> None:
        if progress is None:
            return
        with lock:
            snap = {lab: {**asdict(s), "total": s.total} for lab, s in stats.items()}
        try:
            progress(ScrapeProgress(phase[0], label, snap, message))
        except Exception:  # a broken display must not break the build
            pass

    errors: dict[str, str] = {}
    try:
        # 1. search: one request per page (plus one chips lookup per query when chips is set)
        items: list[ImageResult] = []
        for q, lab in zip(qs, labs):
            if stop is not None and stop.is_set():
                break
            emit(lab, f"searching {q!r}")
            try:
                found = list(client.iter_images(q, label=lab, pages=pages, chips_name=chips, size=size_wh, **params))
            except SerpApiNoResults as exc:
                errors[q] = exc.message
                _say(log, f"  {q!r}: no results ({exc.message})")
                continue
            items.extend(found)
            with lock:
                stats[lab].candidates += len(found)
            emit(lab, f"{q!r}: {len(found)} results")
        # 2. download
        manifest_folders = {r["label"]: r["folder"] for r in load_manifest(root)}
        folders = assign_folders(by_label, manifest_folders)
        phase[0] = "download"

        def on_item(label: str, st: LabelStats) -> None:
            with lock:
                stats[label] = st
            emit(label)

        url_key = None
        if stub is not None:  # its port changes every run: keep URLs port-free so a rerun resumes
            origin = stub.origin
            url_key = lambda u: "stub:" + u[len(origin):] if u.startswith(origin) else u  # noqa: E731
        dl = Downloader(root, workers=workers, limit=limit, resize=resize, max_bytes=max_bytes,
                        backoff=min(backoff, 0.3), progress=on_item, url_key=url_key, stop=stop)
        for lab in by_label:
            stats[lab].existing = dl.manifest.counts[lab]
        report = dl.run(items, {lab: folders[lab] for lab in by_label})
        with lock:
            stats.update(report.stats)
        phase[0] = "done"
        counts = {lab: dl.manifest.counts[lab] for lab in by_label}
        new = {lab: report.stats[lab].accepted if lab in report.stats else 0 for lab in by_label}
        result = ScrapeResult(root=root, counts=counts, rejects=dict(report.rejects), run_id=run.id, new=new,
                              folders={lab: folders[lab] for lab in by_label}, queries=by_label, api=api,
                              errors=errors, searches=client.searches, elapsed_s=time.perf_counter() - t0,
                              stopped=bool(stop is not None and stop.is_set()))
        fp = fingerprint(root)
        prior = read_summary(root)
        all_rejects = Counter(prior.get("rejects_total") or {})
        all_rejects.update(report.rejects)
        write_summary(root, {
            "root": str(root), "counts": _label_counts(root),
            "folders": {**(prior.get("folders") or {}), **result.folders},
            "queries": {**(prior.get("queries") or {}), **by_label},
            "rejects": result.rejects, "rejects_total": dict(all_rejects), "errors": errors,
            "n_images": fp["n_images"], "sha256": fp["sha256"], "run_id": run.id, "api": api,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
        emit(None, "done")
        run.finish("stopped" if result.stopped else "completed", summary={"n_images": result.total, "n_new": sum(new.values()), "counts": counts,
                                         "rejects": result.rejects, "errors": errors,
                                         "searches": client.searches, "elapsed_s": round(result.elapsed_s, 3)},
                   dataset=fp, artifacts={"dataset": str(root)})
        _say(log, f"{'Stopped: ' if result.stopped else ''}{result.total} images in {len(counts)} labels at {root} "
                  f"({sum(new.values())} new, {sum(result.rejects.values())} rejected).")
        return result
    except BaseException as exc:
        status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        try:
            run.finish(status, error=redact(f"{type(exc).__name__}: {exc}", [key]))
        except Exception:
            pass
        raise
    finally:
        client.close()
        if stub is not None:
            stub.stop()


def _label_counts(root: Path) -> dict[str, int]:
    """Images per label over the whole dataset (all builds)."""
    return dict(Counter(r["label"] for r in load_manifest(root)))


# -- the demo dataset ------------------------------------------------------------------
#: Demo classes: shape + colour + texture differ, every image randomly varied.
DEMO_CLASSES = ("red circles", "blue squares", "green triangles", "yellow stripes", "purple stars",
                "orange checkerboard", "teal rings", "pink crosses")
DEMO_PER_CLASS = {True: 40, False: 150}


def demo_dataset(quick: bool | None = None, *, root: str | os.PathLike | None = None,
                 log: Callable[[str], None] | None = None) -> Path:
    """The dataset notebook 01 builds and notebooks 02/03 train on; built through the stub if missing.

    ``DEMO_CLASSES`` (8 classes, ImageFolder layout, 64×64 px) at
    ``paths.datasets_dir() / "demo"``: 40 images a class in quick mode
    (``WORKBENCH_QUICK``), 150 otherwise. Idempotent and resumable; a file lock keeps
    two kernels from building it at once.
    """
    from filelock import FileLock

    quick = paths.quick_mode() if quick is None else bool(quick)
    per_class = DEMO_PER_CLASS[quick]
    root = Path(root) if root is not None else paths.datasets_dir() / "demo"
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f".{root.name}.lock"), timeout=600):
        if _demo_complete(root, per_class):
            return root
        scrape(list(DEMO_CLASSES), root, pages=2 if per_class > 100 else 1, limit=per_class, resize=64,
               offline=True, run_name="demo dataset", log=log or (lambda m: None), workers=8,
               stub_options={"results_per_query": max(150, per_class)})
    if not _demo_complete(root, per_class):
        raise RuntimeError(f"demo dataset at {root} is incomplete; delete the folder and retry")
    return root


def _demo_complete(root: Path, per_class: int) -> bool:
    if not (root / "manifest.jsonl").is_file():
        return False
    counts = Counter(r["label"] for r in load_manifest(root))
    return all(counts.get(c, 0) >= per_class for c in DEMO_CLASSES)
