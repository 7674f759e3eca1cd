"""Scraping: SerpApi Google Images → labelled, leak-free image-folder datasets.

``scrape(queries, out)`` plans (searches it will spend, the account's searches left),
searches (SerpApi with a key, else an offline loopback stub), downloads and verifies the
images concurrently within deadlines and an SSRF guard, groups near-duplicates, and writes
``out/<label>/<hash>.jpg`` plus ``manifest.jsonl``; every build is a run of kind ``scrape``
in the run log. ``task_text`` / ``text_similarity`` relate two scraped tasks by their
queries, related searches and chips. ``demo_dataset()`` is the small offline dataset the
notebooks train on.
"""
from __future__ import annotations

from .client import ImageResult, SearchPage, SerpApiClient, parse_size, with_image_size
from .dataset import (ManifestError, assign_folders, fingerprint, load_manifest, load_rejects, load_searches,
                      manifest_frame, read_summary, safe_label)
from .decode import ByteBudget, Rejected, decode_image
from .downloader import REJECT_REASONS, Downloader
from .errors import (ChipsNotFound, SerpApiAuthError, SerpApiBadRequest, SerpApiConnectionError, SerpApiError,
                     SerpApiNoResults, SerpApiNotFound, SerpApiOutOfSearches, SerpApiRateLimited,
                     SerpApiResponseError, SerpApiServerError, SerpApiStopped, clean_url, redact)
from .neardup import MODES as NEAR_DUPLICATE_MODES
from .net import AddressGuard, Fetcher, FetchError
from .params import PARAMS, PASSTHROUGH_PARAMS, check_params, estimate_searches
from .pipeline import DEMO_CLASSES, ScrapeProgress, ScrapeResult, demo_dataset, scrape
from .plan import ScrapePlan
from .preview import preview
from .related import dup_groups, task_text, text_similarity
from .stub import FAULTS, SerpApiStub

__all__ = [
    "scrape", "ScrapeResult", "ScrapePlan", "ScrapeProgress", "demo_dataset", "DEMO_CLASSES", "SerpApiStub",
    "FAULTS", "SerpApiClient", "ImageResult", "SearchPage", "with_image_size", "parse_size", "redact", "clean_url",
    "SerpApiError", "SerpApiBadRequest", "SerpApiAuthError", "SerpApiNotFound", "SerpApiRateLimited",
    "SerpApiOutOfSearches", "SerpApiServerError", "SerpApiNoResults", "SerpApiConnectionError",
    "SerpApiResponseError", "SerpApiStopped", "ChipsNotFound",
    "Downloader", "Rejected", "decode_image", "ByteBudget", "REJECT_REASONS", "AddressGuard", "Fetcher",
    "FetchError", "PARAMS", "PASSTHROUGH_PARAMS", "check_params", "estimate_searches", "NEAR_DUPLICATE_MODES",
    "safe_label", "assign_folders", "load_manifest", "load_rejects", "load_searches", "manifest_frame",
    "read_summary", "fingerprint", "preview", "ManifestError", "task_text", "text_similarity", "dup_groups",
]
