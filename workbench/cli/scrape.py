"""``python -m workbench scrape`` and ``python -m workbench stub-serpapi``."""
from __future__ import annotations

import argparse
import json
import sys
import time


def _param(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param {text!r}: expected NAME=VALUE, e.g. safe=active")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scrape", help="build a labelled image-folder dataset from Google Images",
        description="Search Google Images (SerpApi when SERPAPI_API_KEY is set, else the offline loopback stub),"
                    " download and verify the images, group near-duplicates, and write OUT/<label>/<hash>.jpg +"
                    " OUT/manifest.jsonl. Prints the searches the build may spend first (--dry-run: only that)."
                    " Re-running resumes. Each build is a run of kind 'scrape' in the run log.")
    p.add_argument("queries", nargs="+", metavar="QUERY", help="search queries; each becomes a label")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset folder")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="display labels, one per query")
    p.add_argument("--pages", type=int, default=1, metavar="N", help="result pages per query (100 each; default 1)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N images per label")
    p.add_argument("--size", metavar="WxH", help="exact image size, e.g. 640x480 (Google's imagesize: operator)")
    p.add_argument("--chips", metavar="NAME", help="narrow each query by a suggested search (chips) name")
    p.add_argument("--resize", type=int, metavar="PX", help="store images with longest side at most PX")
    p.add_argument("--workers", type=int, default=8, metavar="N", help="parallel downloads (default 8)")
    p.add_argument("--param", type=_param, action="append", default=[], metavar="NAME=VALUE",
                   help="another SerpApi Google Images parameter (safe, imgsz, image_type, image_color, licenses, "
                        "tbs, gl, hl, as_sitesearch …)")
    p.add_argument("--near-duplicates", choices=("drop", "keep", "off"), default="drop",
                   help="drop (default): one copy per label; keep: tag all; off: no detection")
    p.add_argument("--skip-products", action="store_true", help="reject results SerpApi marks is_product")
    p.add_argument("--deadline", type=float, default=90.0, metavar="S", help="total seconds per search (90)")
    p.add_argument("--download-deadline", type=float, default=30.0, metavar="S",
                   help="total seconds per image (30)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                   help="an image origin on a private address to fetch anyway (a stub-serpapi elsewhere)")
    p.add_argument("--base-url", metavar="URL", help="SerpApi endpoint (default $SERPAPI_BASE_URL or serpapi.com)")
    p.add_argument("--offline", action="store_true", help="use the loopback stub even when a key is set")
    p.add_argument("--dry-run", action="store_true", help="print the plan (searches, account) and spend nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_scrape)

    s = sub.add_parser("stub-serpapi", help="serve the offline SerpApi stub on 127.0.0.1",
                       description="Serve a SerpApi-compatible google_images endpoint (with the Search Archive and "
                                   "Account APIs) with generated images until Ctrl-C. Point clients at it with "
                                   "SERPAPI_BASE_URL; a scrape in another process needs --allow-origin for its "
                                   "images.")
    s.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    s.add_argument("--results", type=int, default=150, metavar="N", help="images per query (default 150)")
    s.add_argument("--latency", type=float, default=0.0, metavar="S", help="seconds every image response waits")
    s.add_argument("--searches-left", type=int, metavar="N", help="the account runs out after N searches")
    s.add_argument("--fault", action="append", default=[], metavar="NAME",
                   help="switch a fault on (repeatable): auth, rate_limit, out_of_searches, processing, trickle, "
                        "stall, private_redirect, megapixel, near_duplicates, … (the README's Scraping section "
                        "lists them all)")
    s.set_defaults(func=cmd_stub)


def cmd_scrape(args: argparse.Namespace) -> int:
    from ..scrape import scrape

    def progress_line(msg: str) -> None:
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    live = sys.stderr.isatty()
    last = [0.0]

    def progress(p) -> None:  # one self-rewriting line on a terminal; nothing when piped
        now = time.monotonic()
        if not live or (now - last[0] < 0.2 and p.phase != "done"):
            return
        last[0] = now
        o = p.overall
        sys.stderr.write(f"\r  {p.phase}: {o.get('done', 0)}/{o.get('candidates', 0)} candidates · "
                         f"{o.get('accepted', 0)} new · {o.get('rejected', 0)} rejected   ")
        if p.phase == "done":
            sys.stderr.write("\n")
        sys.stderr.flush()

    result = scrape(args.queries, args.out, labels=args.labels, pages=args.pages, limit=args.limit,
                    size=args.size, chips=args.chips, resize=args.resize, workers=args.workers,
                    params=dict(args.param), base_url=args.base_url, offline=args.offline, log=progress_line,
                    progress=progress, dry_run=args.dry_run, near_duplicates=args.near_duplicates,
                    skip_products=args.skip_products, deadline=args.deadline,
                    download_deadline=args.download_deadline, allow_origins=args.allow_origin)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        print(result.summary())
    if args.dry_run:
        return 0
    return 0 if result.total else 1


def cmd_stub(args: argparse.Namespace) -> int:
    from ..scrape.stub import FAULTS, serve_forever

    for f in args.fault:
        if f not in FAULTS:
            raise ValueError(f"--fault: {f!r} is not a fault switch; allowed: {', '.join(FAULTS)}")
    serve_forever(port=args.port, results_per_query=args.results, image_latency=args.latency,
                  searches_left=args.searches_left, faults={f: True for f in args.fault})
    return 0
