"""Scraping: SerpApi Google Images → labelled image-folder datasets.

``scrape(queries, out)`` searches (SerpApi with a key, else an offline loopback stub),
downloads and verifies the images concurrently, and writes ``out/<label>/<hash>.jpg``
plus ``manifest.jsonl``; every build is a run of kind ``scrape`` in the run log.
``demo_dataset()`` is the small offline dataset the notebooks train on.
"""
from __future__ import annotations

from .client import (ChipsNotFound, ImageResult, SerpApiAuthError, SerpApiBadRequest, SerpApiClient,
                     SerpApiConnectionError, SerpApiError, SerpApiNoResults, SerpApiNotFound, SerpApiRateLimited,
                     SerpApiServerError, parse_size, redact, with_image_size)
from .dataset import (assign_folders, fingerprint, load_manifest, load_rejects, manifest_frame, preview,
                      read_summary, safe_label)
from .downloader import REJECT_REASONS, Downloader, Rejected, decode_image
from .pipeline import DEMO_CLASSES, ScrapeProgress, ScrapeResult, demo_dataset, scrape
from .stub import FAULTS, SerpApiStub

__all__ = [
    "scrape", "ScrapeResult", "ScrapeProgress", "demo_dataset", "DEMO_CLASSES", "SerpApiStub", "FAULTS",
    "SerpApiClient", "ImageResult", "with_image_size", "parse_size", "redact",
    "SerpApiError", "SerpApiBadRequest", "SerpApiAuthError", "SerpApiNotFound", "SerpApiRateLimited",
    "SerpApiServerError", "SerpApiNoResults", "SerpApiConnectionError", "ChipsNotFound",
    "Downloader", "Rejected", "decode_image", "REJECT_REASONS",
    "safe_label", "assign_folders", "load_manifest", "load_rejects", "manifest_frame", "read_summary",
    "fingerprint", "preview",
]
