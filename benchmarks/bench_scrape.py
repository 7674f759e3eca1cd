"""Parallel vs serial download: 400 images from the stub, each answered after 50 ms.

    python benchmarks/bench_scrape.py [--images 400] [--latency 0.05] [--workers 8] [--repeat 1]

The stub serves 4 queries × 100 results; every image response waits ``--latency``
seconds (a remote server's latency). One untimed build warms the stub's image cache so
both timed builds see the same server; then the same 400-image build runs with 1 worker
(the baseline) and with ``--workers`` workers, each into a fresh folder, and the ratio
is printed. Searches (4 requests) are included in both timings.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from workbench import RunLog
from workbench.scrape import SerpApiStub, scrape

QUERIES = ["red circles", "blue squares", "green triangles", "yellow stripes", "purple stars",
           "orange checkerboard", "teal rings", "pink crosses"]


def build(stub: SerpApiStub, out: Path, n_queries: int, per_query: int, workers: int, log: RunLog) -> float:
    t = time.perf_counter()
    res = scrape(QUERIES[:n_queries], out, limit=per_query, pages=-(-per_query // 100), workers=workers,
                 base_url=stub.base_url, api_key="", runlog=log, log=lambda m: None)
    took = time.perf_counter() - t
    assert res.total == n_queries * per_query, res.summary()
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per image response (default 0.05)")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1, help="timed builds per setting (median reported)")
    args = ap.parse_args()
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
    print(f"  speed-up : {serial / parallel:.1f}x  (ideal {args.workers}x; issue asks >= 6x)")


if __name__ == "__main__":
    main()
