"""Scraping benchmarks: parallel downloads, near-duplicate detection, Stop latency.

    python benchmarks/bench_scrape.py [--images 400] [--latency 0.05] [--workers 8] [--repeat 1]
    python benchmarks/bench_scrape.py --neardup [--queries 6] [--pages 1]
    python benchmarks/bench_scrape.py --stop

Speed: the stub serves 4 queries × 100 results; every image response waits ``--latency``
seconds. One untimed build warms the stub's image cache; then the same build runs with 1
worker (the baseline) and with ``--workers`` workers, each into a fresh folder, and the
ratio is printed. Searches are included in both timings. Near-duplicates are off here
(they are measured on their own).

Near-duplicates: the stub's ``near_duplicates`` switch plants, on every page, 18 copies of
other results of the page (6 resized ×0.5–2, 6 re-encoded at JPEG quality 40–75, 6 cropped
by up to 5 % a side) and one stock photo under every query. The build runs with
``near_duplicates="keep"`` so every image stays; a pair of images is a true near-duplicate
when the stub says both show the same picture (``stub_content.truth_of``). Printed:
pair recall and precision of the groups, and of the phash-only baseline at the same
Hamming threshold (measured in the same run), plus the time the grouping took.

Stop: a build whose images trickle at 1 byte/s is stopped once downloads started; printed
is how long ``scrape()`` took to return after the event was set.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import threading
import time
from pathlib import Path

from workbench import RunLog
from workbench.scrape import SerpApiStub, load_manifest, scrape

QUERIES = ["red circles", "blue squares", "green triangles", "yellow stripes", "purple stars",
           "orange checkerboard", "teal rings", "pink crosses", "red fox", "arctic fox"]


def build(stub: SerpApiStub, out: Path, n_queries: int, per_query: int, workers: int, log: RunLog) -> float:
    t = time.perf_counter()
    res = scrape(QUERIES[:n_queries], out, limit=per_query, pages=-(-per_query // 100), workers=workers,
                 base_url=stub.base_url, api_key="", runlog=log, log=lambda m: None, near_duplicates="off")
    took = time.perf_counter() - t
    assert res.total == n_queries * per_query, res.summary()
    return took


def speed(args: argparse.Namespace) -> None:
    n_queries = 4 if args.images >= 4 else 1
    per_query = args.images // n_queries
    with tempfile.TemporaryDirectory() as tmp, \
            SerpApiStub(image_latency=args.latency, results_per_query=max(150, per_query)) as stub:
        tmp = Path(tmp)
        log = RunLog(tmp / "runs.json")
        build(stub, tmp / "warmup", n_queries, per_query, args.workers, log)  # fill the stub's image cache
        times: dict[int, list[float]] = {1: [], args.workers: []}
        for r in range(args.repeat):
            for w in (1, args.workers):
                times[w].append(build(stub, tmp / f"w{w}-{r}", n_queries, per_query, w, log))
    serial, parallel = statistics.median(times[1]), statistics.median(times[args.workers])
    n = n_queries * per_query
    print(f"{n} images, {args.latency * 1000:.0f} ms latency per image (loopback stub)")
    print(f"  1 worker : {serial:6.2f} s  ({n / serial:6.1f} images/s)   <- baseline, same run")
    print(f"  {args.workers} workers: {parallel:6.2f} s  ({n / parallel:6.1f} images/s)")
    print(f"  speed-up : {serial / parallel:.1f}x  (ideal {args.workers}x)")


def pair_scores(rows: list[dict], truth: dict[str, str], same) -> tuple[float, float, int, int]:
    """(recall, precision, true pairs, predicted pairs) over all image pairs."""
    tp = fp = fn = 0
    for a, b in itertools.combinations(rows, 2):
        t = truth[a["url"]] == truth[b["url"]]
        p = same(a, b)
        tp += t and p
        fp += p and not t
        fn += t and not p
    rec = tp / (tp + fn) if tp + fn else 1.0
    prec = tp / (tp + fp) if tp + fp else 1.0
    return rec, prec, tp + fn, tp + fp


def neardup(args: argparse.Namespace) -> None:
    from workbench.scrape.neardup import MAX_HAMMING
    from workbench.scrape.stub_content import truth_of

    with tempfile.TemporaryDirectory() as tmp, SerpApiStub(results_per_query=100 * args.pages,
                                                           faults={"near_duplicates": True}) as stub:
        tmp = Path(tmp)
        t = time.perf_counter()
        res = scrape(QUERIES[:args.queries], tmp / "ds", pages=args.pages, base_url=stub.base_url, api_key="",
                     runlog=RunLog(tmp / "runs.json"), log=lambda m: None, near_duplicates="keep", resize=96)
        took = time.perf_counter() - t
        rows = load_manifest(tmp / "ds")
        truth = {r["url"]: truth_of(r["url"]) for r in rows}
        rec, prec, n_true, n_pred = pair_scores(rows, truth, lambda a, b: bool(a.get("dup_group"))
                                                and a.get("dup_group") == b.get("dup_group"))
        ph = {r["url"]: int(r["phash"], 16) for r in rows}
        brec, bprec, _, bpred = pair_scores(rows, truth,
                                            lambda a, b: bin(ph[a["url"]] ^ ph[b["url"]]).count("1") <= MAX_HAMMING)
    nd = res.near_duplicates
    print(f"{len(rows)} images, {args.queries} queries x {args.pages} page(s); {n_true} true near-duplicate pairs "
          f"(resized, re-encoded, cropped <= 5 %, a stock photo across labels)")
    print(f"  phash <= {MAX_HAMMING} bits alone : recall {brec:.3f}  precision {bprec:.3f}  ({bpred} pairs)   "
          f"<- baseline, same run")
    print(f"  phash + colour + crop-tolerant check: recall {rec:.3f}  precision {prec:.3f}  ({n_pred} pairs, "
          f"{nd.get('n_groups')} groups, {nd.get('cross_label')} across labels)")
    print(f"  build incl. grouping: {took:.1f} s; {nd.get('candidate_pairs')} candidate pairs checked")


def stop_latency(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, SerpApiStub(faults={"trickle": True}) as stub:
        stub.set_fault("trickle", interval=1.0)
        stop = threading.Event()
        set_at = [0.0]

        def progress(p) -> None:
            if p.phase == "download" and not stop.is_set() and p.overall.get("done", 0) >= 10:
                set_at[0] = time.perf_counter()
                stop.set()

        res = scrape(["red fox"], Path(tmp) / "ds", base_url=stub.base_url, api_key="", limit=40, stop=stop,
                     progress=progress, runlog=RunLog(Path(tmp) / "runs.json"), log=lambda m: None,
                     download_deadline=3600)
        after = time.perf_counter() - set_at[0]
    print(f"Stop with a 1 byte/s image in flight: scrape() returned {after * 1000:.0f} ms after the event "
          f"({res.total} images kept, status {'stopped' if res.stopped else 'completed'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per image response (default 0.05)")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1, help="timed builds per setting (median reported)")
    ap.add_argument("--neardup", action="store_true", help="measure near-duplicate recall/precision instead")
    ap.add_argument("--queries", type=int, default=6)
    ap.add_argument("--pages", type=int, default=1)
    ap.add_argument("--stop", action="store_true", help="measure how fast Stop ends a trickling build")
    args = ap.parse_args()
    if args.neardup:
        neardup(args)
    elif args.stop:
        stop_latency(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
