"""``scrape()``: queries → plan → searched → downloaded → near-duplicates grouped → dataset,
recorded in the run log. Also ``demo_dataset()``: the small offline dataset notebooks train on.
"""
from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .. import paths
from . import neardup
from .client import DEFAULT_BASE_URL, ImageResult, SearchPage, SerpApiClient, parse_size
from .dataset import (REJECTS, append_line, assign_folders, fingerprint, load_manifest, read_summary, remove_image,
                      rewrite_manifest, write_summary)
from .downloader import DEFAULT_MAX_BYTES, Downloader, LabelStats
from .errors import SerpApiNoResults, SerpApiOutOfSearches, SerpApiStopped, redact
from .net import RETRY_AFTER_CAP, AddressGuard
from .plan import ScrapePlan, as_list, check_account, check_options, check_root, folders_for, make_plan
from .result import ScrapeProgress, ScrapeResult
from .stub import SerpApiStub, running_origins

#: Download rounds: after near-duplicates are dropped, a limited label is topped up again
#: from the results it did not need yet (each round fetches only what is missing).
TOP_UP_ROUNDS = 8


def _say(log: Callable[[str], None] | None, msg: str) -> None:
    (log or print)(msg)


def _choose_api(offline: bool, api_key: str | None, base_url: str | None,
                stub_options: Mapping[str, Any] | None) -> tuple[str, str | None, str, SerpApiStub | None]:
    """(api, key, endpoint, stub): SerpApi with a key, else the given endpoint, else a new stub."""
    key = None if offline else (api_key if api_key is not None else os.environ.get("SERPAPI_API_KEY")) or None
    endpoint = None if offline else base_url or os.environ.get("SERPAPI_BASE_URL") or None
    if key:
        return "serpapi", key, endpoint or DEFAULT_BASE_URL, None
    if endpoint:
        return "endpoint", None, endpoint, None
    stub = SerpApiStub(**dict(stub_options or {})).start()
    return "stub", None, stub.base_url, stub


def _announce(log: Callable[[str], None] | None, api: str, endpoint: str) -> None:
    if api == "serpapi":
        _say(log, f"Using SerpApi Google Images at {redact(endpoint)} (API key set).")
    elif api == "endpoint":
        _say(log, f"No SerpApi key: using the SerpApi-compatible endpoint {redact(endpoint)}.")
    else:
        _say(log, f"No SerpApi key (set SERPAPI_API_KEY for Google Images): using the offline loopback stub at "
                  f"{endpoint} — generated images.")


class _Build:
    """The state of one build shared by its phases (progress counters, errors, searched pages)."""

    def __init__(self, by_label: Mapping[str, list[str]], progress: Callable[[ScrapeProgress], None] | None):
        self.lock = threading.Lock()
        self.stats: dict[str, LabelStats] = {lab: LabelStats() for lab in by_label}
        self.phase = "search"
        self.progress = progress
        self.errors: dict[str, str] = {}
        self.pages: list[SearchPage] = []
        self.stopped = False

    def emit(self, label: str | None, message: str = "") -> None:
        if self.progress is None:
            return
        with self.lock:
            snap = {lab: {**asdict(s), "total": s.total} for lab, s in self.stats.items()}
        try:
            self.progress(ScrapeProgress(self.phase, label, snap, message))
        except Exception:  # a broken display must not break the build
            pass

    def on_item(self, label: str, st: LabelStats) -> None:
        with self.lock:
            self.stats[label] = st
        self.emit(label)


def _search(client: SerpApiClient, qs: Sequence[str], labs: Sequence[str], pages: int, chips: str | None,
            size: tuple[int, int] | None, params: Mapping[str, str], b: _Build, root: Path,
            stop: threading.Event | None, log: Callable[[str], None] | None) -> list[ImageResult]:
    """One search per page per query; records every page in ``searches.jsonl``."""
    items: list[ImageResult] = []
    for q, lab in zip(qs, labs):
        if stop is not None and stop.is_set():
            b.stopped = True
            break
        b.emit(lab, f"searching {q!r}")
        found: list[ImageResult] = []
        failure = None
        try:
            for page in client.iter_pages(q, label=lab, pages=pages, chips_name=chips, size=size, **params):
                b.pages.append(page)
                append_line(root, "searches.jsonl", page.record())
                found += page.images
        except (SerpApiNoResults, SerpApiOutOfSearches, SerpApiStopped) as exc:
            failure = exc
        items.extend(found)
        with b.lock:
            b.stats[lab].candidates += len(found)
        if isinstance(failure, SerpApiNoResults):
            b.errors[q] = failure.message
            _say(log, f"  {q!r}: no results ({failure.message})")
        elif isinstance(failure, SerpApiStopped):
            b.stopped = True
            break
        elif isinstance(failure, SerpApiOutOfSearches):
            b.errors[q] = failure.message
            b.stopped = True
            _say(log, f"SerpApi: {failure.message} Stopped searching at {q!r}; the images found so far are "
                      f"downloaded, and a rerun resumes once the account has searches again.")
            break
        b.emit(lab, f"{q!r}: {len(found)} results")
    return items


def _drop_near_dups(root: Path, dl: Downloader, mode: str) -> tuple[dict[str, Any], int]:
    """Group near-duplicates over the whole dataset, drop per the rule, tag the manifest."""
    rows = load_manifest(root)
    found = neardup.find(root, rows, mode=mode)
    dropped = {i for i, _ in found.drop}
    for i, keep in found.drop:
        r = rows[i]
        append_line(root, REJECTS, {"label": r["label"], "query": r.get("query"), "url": r["url"],
                                    "reason": "near_duplicate", "detail": f"near-duplicate of {rows[keep]['path']}",
                                    "dup_of": rows[keep]["path"], "time": time.strftime("%Y-%m-%dT%H:%M:%SZ")})
    out = []
    for i, r in enumerate(rows):
        if i in dropped:
            continue
        r = {k: v for k, v in r.items() if k != "dup_group"}
        if i in found.group_of:
            r["dup_group"] = found.group_of[i]
        out.append(r)
    if dropped or found.group_of or any("dup_group" in r for r in rows):
        rewrite_manifest(root, out)
        for i in dropped:
            remove_image(root, rows[i]["path"])
    with dl.manifest.lock:  # the downloader's view follows: dropped URLs are bad for good now
        for i in dropped:
            r = rows[i]
            dl.manifest.counts[r["label"]] -= 1
            dl.manifest.urls.pop(r["url"], None)
            dl.manifest.bad_urls.add(r["url"])
    return found.summary(rows), len(dropped)


@dataclass
class _Downloaded:
    """What the download rounds did together."""

    rejects: Counter
    near_duplicates: dict[str, Any]
    stopped: bool
    from_thumbnail: int


def _download(dl: Downloader, items: list[ImageResult], folders: Mapping[str, str], mode: str, root: Path,
              b: _Build) -> _Downloaded:
    """Download, drop near-duplicates, top limited labels up from the untried results (a few rounds)."""
    done = _Downloaded(Counter(), {}, False, 0)
    todo = items
    for _ in range(TOP_UP_ROUNDS):
        report = dl.run(todo, folders)
        with b.lock:
            b.stats.update(report.stats)
        done.rejects.update(report.rejects)
        done.from_thumbnail += report.from_thumbnail
        done.stopped = report.stopped
        n_dropped = 0
        if mode != "off":
            done.near_duplicates, n_dropped = _drop_near_dups(root, dl, mode)
            done.rejects["near_duplicate"] += n_dropped
        if report.stopped or not n_dropped or dl.limit is None:
            break
        short = {lab for lab in folders if dl.manifest.counts[lab] < dl.limit}
        todo = [it for it in report.untried if it.label in short]
        if not todo:
            break
    done.rejects = Counter({k: v for k, v in done.rejects.items() if v})
    return done


def scrape(queries: str | Sequence[str], out: str | os.PathLike, *, labels: Sequence[str] | None = None,
           pages: int = 1, limit: int | None = None, size: str | tuple[int, int] | None = None,
           chips: str | None = None, api_key: str | None = None, base_url: str | None = None,
           workers: int = 8, progress: Callable[[ScrapeProgress], None] | None = None,
           log: Callable[[str], None] | None = None, resize: int | tuple[int, int] | None = None,
           params: Mapping[str, Any] | None = None, offline: bool = False, runlog: Any = None,
           run_name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES, retries: int = 3,
           backoff: float = 0.5, timeout: tuple[float, float] = (5.0, 30.0), deadline: float = 90.0,
           download_deadline: float = 30.0, retry_after_cap: float = RETRY_AFTER_CAP,
           near_duplicates: str = "drop", skip_products: bool = False, thumbnail_fallback: bool = True,
           allow_origins: Sequence[str] = (), dry_run: bool = False,
           stub_options: Mapping[str, Any] | None = None, stop: threading.Event | None = None,
           **decode_options: Any) -> ScrapeResult | ScrapePlan:
    """Build (or extend) an image-folder dataset from Google Images queries.

    Uses SerpApi when a key is given or ``$SERPAPI_API_KEY`` is set; otherwise a
    ``base_url`` without a key, otherwise a loopback :class:`SerpApiStub` (announced in one
    line through ``log``). Before searching it prints the searches the build may spend
    (one per page per query, plus one chips look-up per query) and, when the endpoint
    allows, the account's searches left; ``dry_run=True`` returns that :class:`ScrapePlan`
    and spends nothing. Re-running resumes: nothing already present is downloaded again.
    The build is a run of kind ``scrape`` in the run log.

    Args:
        queries: search queries; each becomes a label.
        out: dataset folder (``out/<label>/<hash>.jpg`` + ``manifest.jsonl``).
        labels: display labels, one per query (default: the queries). Equal labels merge.
        pages: result pages per query (100 results each; 1..100).
        limit: at most this many images per label (``None``: all results).
        size: exact image size ``"WxH"`` (Google's ``imagesize:`` operator).
        chips: a suggested-search name (e.g. ``"outline"``) to narrow every query.
        api_key, base_url: SerpApi credentials/endpoint (default from the environment).
        workers: parallel downloads.
        progress: called with a :class:`ScrapeProgress` as work advances (any thread).
        log: one-line messages (default ``print``).
        resize: store images with longest side ``resize`` (int) or exactly ``(w, h)``.
        params: other SerpApi Google Images parameters (checked against the documented table).
        deadline, download_deadline: total seconds per search / per image.
        retry_after_cap: the longest wait any ``Retry-After`` may impose.
        near_duplicates: ``"drop"`` | ``"keep"`` | ``"off"`` (see :mod:`workbench.scrape.neardup`).
        skip_products: reject results SerpApi marks ``is_product``.
        thumbnail_fallback: store a result's thumbnail when its original fails (recorded).
        allow_origins: image origins on private addresses to fetch anyway (a stub in
            another process); stubs running in this process are allowed already.
        stop: a ``threading.Event``; once set, in-flight searches and downloads are
            abandoned within a fraction of a second, the images written so far stay, and the
            run is recorded as ``stopped``.
        decode_options: ``max_pixels``, ``decode_budget``, ``min_side`` for the decoder.
    """
    t0 = time.perf_counter()
    qs = as_list("queries", queries)
    labs = as_list("labels", labels) if labels is not None else list(qs)
    if len(labs) != len(qs):
        raise ValueError(f"labels: {len(labs)} labels for {len(qs)} queries; give one label per query")
    opts = check_options(pages=pages, limit=limit, workers=workers, params=params, chips=chips, resize=resize,
                         max_bytes=max_bytes, near_duplicates=near_duplicates, deadline=deadline,
                         download_deadline=download_deadline, retry_after_cap=retry_after_cap)
    bad = [k for k in decode_options if k not in ("max_pixels", "decode_budget", "min_side")]
    if bad:
        raise TypeError(f"scrape() got unexpected keyword argument(s) {', '.join(map(repr, bad))}")
    size_wh = parse_size(size)
    root = Path(out).expanduser()
    by_label: dict[str, list[str]] = {}
    for q, lab in zip(qs, labs):
        by_label.setdefault(lab, []).append(q)
    folders = folders_for(root, by_label) if root.is_dir() else {}
    check_root(root, folders, create=not dry_run)
    folders = folders_for(root, by_label) if root.is_dir() else assign_folders(by_label)
    api, key, endpoint, stub = _choose_api(offline, api_key, base_url, stub_options)
    try:
        return _run(locals_=dict(qs=qs, labs=labs, opts=opts, size_wh=size_wh, root=root, by_label=by_label,
                                 folders=folders, api=api, key=key, endpoint=endpoint, stub=stub, t0=t0,
                                 chips=chips, log=log, progress=progress, runlog=runlog, run_name=run_name,
                                 retries=retries, backoff=backoff, timeout=timeout, stop=stop, dry_run=dry_run,
                                 near_duplicates=near_duplicates, skip_products=skip_products,
                                 thumbnail_fallback=thumbnail_fallback, allow_origins=allow_origins,
                                 decode_options=decode_options))
    finally:
        if stub is not None:
            stub.stop()


def _run(locals_: dict[str, Any]) -> ScrapeResult | ScrapePlan:
    """The build after its arguments were checked (one dict of them, to keep frames small)."""
    from ..runlog import RunLog

    a = locals_
    opts, root, api, endpoint, log = a["opts"], a["root"], a["api"], a["endpoint"], a["log"]
    _announce(log, api, endpoint)
    client = SerpApiClient(api_key=a["key"], base_url=endpoint, retries=a["retries"], backoff=a["backoff"],
                           timeout=a["timeout"], deadline=opts["deadline"], retry_after_cap=opts["retry_after_cap"],
                           stop=a["stop"])
    try:
        plan = make_plan(root, a["by_label"], a["folders"], opts["pages"], a["chips"], opts["params"], api,
                         "stub" if api == "stub" else redact(endpoint))
        check_account(plan, client)  # free; an endpoint without /account.json only gets a note
        if a["dry_run"]:
            return plan
        _say(log, plan.summary().splitlines()[0])
        for w in plan.warnings:
            _say(log, f"  warning: {w}")
        if plan.searches_left == 0:
            raise SerpApiOutOfSearches("Your account has run out of searches (account.json says 0 left); "
                                       "nothing was searched.", status=429)
        rl = a["runlog"] if a["runlog"] is not None else RunLog()
        config = {"queries": a["qs"], "labels": a["labs"], "pages": opts["pages"], "limit": opts["limit"],
                  "size": f"{a['size_wh'][0]}x{a['size_wh'][1]}" if a["size_wh"] else None, "chips": a["chips"],
                  "params": opts["params"], "workers": opts["workers"],
                  "resize": list(opts["resize"]) if isinstance(opts["resize"], tuple) else opts["resize"],
                  "api": api, "endpoint": plan.endpoint, "out": str(root), "max_bytes": opts["max_bytes"],
                  "near_duplicates": a["near_duplicates"], "skip_products": a["skip_products"],
                  "estimated_searches": plan.estimated_searches, "searches_left": plan.searches_left,
                  "limits": _limits(opts)}
        run = rl.start(a["run_name"] or f"scrape {root.name}", "scrape", config, tags=["scrape", api],
                       dataset={"root": str(root), "name": root.name, "source": "scrape"})
        try:
            return _build(a, client, plan, run)
        except BaseException as exc:
            client.abort()
            status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
            try:
                run.finish(status, error=redact(f"{type(exc).__name__}: {exc}", [a["key"]]))
            except Exception:
                pass
            raise
    finally:
        client.close()


def _limits(opts: Mapping[str, Any]) -> dict[str, Any]:
    return {"search_deadline_s": opts["deadline"], "download_deadline_s": opts["download_deadline"],
            "retry_after_cap_s": opts["retry_after_cap"], "max_bytes": opts["max_bytes"]}


def _build(a: dict[str, Any], client: SerpApiClient, plan: ScrapePlan, run: Any) -> ScrapeResult:
    opts, root, log, stop, by_label = a["opts"], a["root"], a["log"], a["stop"], a["by_label"]
    b = _Build(by_label, a["progress"])
    items = _search(client, a["qs"], a["labs"], opts["pages"], a["chips"], a["size_wh"], opts["params"], b, root,
                    stop, log)
    b.phase = "download"
    url_key, guard = None, AddressGuard(allow=[*running_origins(), *a["allow_origins"]])
    if a["stub"] is not None:  # its port changes every run: keep URLs port-free so a rerun resumes
        origin = a["stub"].origin
        url_key = lambda u: "stub:" + u[len(origin):] if u.startswith(origin) else u  # noqa: E731
    dl = Downloader(root, workers=opts["workers"], limit=opts["limit"], resize=opts["resize"],
                    max_bytes=opts["max_bytes"], backoff=min(a["backoff"], 0.3), deadline=opts["download_deadline"],
                    retry_after_cap=opts["retry_after_cap"], progress=b.on_item, url_key=url_key, stop=stop,
                    guard=guard, thumbnail_fallback=a["thumbnail_fallback"], skip_products=a["skip_products"],
                    **a["decode_options"])
    known = {r["sha256"] for r in dl.manifest.rows}
    for lab in by_label:
        b.stats[lab].existing = dl.manifest.counts[lab]
    done = _download(dl, items, a["folders"], a["near_duplicates"], root, b)
    b.phase = "done"
    rows = load_manifest(root)
    counts = {lab: sum(1 for r in rows if r["label"] == lab) for lab in by_label}
    new = Counter(r["label"] for r in rows if r["sha256"] not in known)
    stopped = b.stopped or done.stopped or bool(stop is not None and stop.is_set())
    capped = client.capped + dl.fetcher.capped
    nd = {k: v for k, v in done.near_duplicates.items() if k != "groups"}
    result = ScrapeResult(root=root, counts=counts, rejects=dict(done.rejects), run_id=run.id,
                          new={lab: new.get(lab, 0) for lab in by_label},
                          folders={lab: a["folders"][lab] for lab in by_label}, queries=by_label, api=plan.api,
                          errors=b.errors, searches=client.searches, estimated_searches=plan.estimated_searches,
                          searches_left=plan.searches_left, elapsed_s=time.perf_counter() - a["t0"],
                          stopped=stopped, related=_related(b.pages), near_duplicates=nd)
    fp = _write_summary(root, result, plan, b, done, capped, opts)
    b.emit(None, "done")
    run.finish("stopped" if stopped else "completed",
               summary={"n_images": result.total, "n_new": sum(result.new.values()), "counts": counts,
                        "rejects": result.rejects, "errors": b.errors, "searches": client.searches,
                        "estimated_searches": plan.estimated_searches, "searches_left": plan.searches_left,
                        "from_thumbnail": done.from_thumbnail, "near_duplicates": nd,
                        "retry_after_capped": len(capped), "elapsed_s": round(result.elapsed_s, 3)},
               dataset=fp, artifacts={"dataset": str(root)})
    _say(log, f"{'Stopped: ' if stopped else ''}{result.total} images in {len(counts)} labels at {root} "
              f"({sum(result.new.values())} new, {sum(result.rejects.values())} rejected, "
              f"{client.searches} searches).")
    return result


def _related(pages: Sequence[SearchPage]) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for p in pages:
        info = out.setdefault(p.query, {"related_searches": [], "chips": []})
        for key, vals in (("related_searches", p.related), ("chips", p.suggested)):
            for v in vals:
                if v not in info[key]:
                    info[key].append(v)
    return out


def _write_summary(root: Path, result: ScrapeResult, plan: ScrapePlan, b: _Build, done: _Downloaded,
                   capped: list[tuple[float, float]], opts: Mapping[str, Any]) -> dict:
    fp = fingerprint(root)
    prior = read_summary(root)
    all_rejects = Counter(prior.get("rejects_total") or {})
    all_rejects.update(result.rejects)
    write_summary(root, {
        "root": str(root), "counts": dict(Counter(r["label"] for r in load_manifest(root))),
        "folders": {**(prior.get("folders") or {}), **result.folders},
        "queries": {**(prior.get("queries") or {}), **result.queries},
        "related": {**(prior.get("related") or {}), **result.related},
        "searches": [p.metadata | {"query": p.query, "page": p.page} for p in b.pages],
        "rejects": result.rejects, "rejects_total": dict(all_rejects), "errors": b.errors,
        "near_duplicates": done.near_duplicates or prior.get("near_duplicates") or {},
        "from_thumbnail": done.from_thumbnail,
        "limits": {**_limits(opts), "retry_after_capped": [{"asked_s": a_, "waited_s": w} for a_, w in capped]},
        "estimated_searches": plan.estimated_searches, "searches_used": result.searches,
        "searches_left_before": plan.searches_left, "n_images": fp["n_images"], "sha256": fp["sha256"],
        "run_id": result.run_id, "api": plan.api, "stopped": result.stopped,
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    return fp


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
