"""The shapes of SerpApi's Google Images answers, as JSON Schema (checked with ``jsonschema``).

One schema serves three jobs: the client checks every answer against it before reading
it (a malformed answer is a :class:`~workbench.scrape.client.SerpApiResponseError` that
names the path and the problem, never an ``AttributeError`` deep inside); the contract
test checks the recorded fixtures and the loopback stub against it, so the two cannot
drift apart. Only fields the workbench reads are constrained; others may come and go.
"""
from __future__ import annotations

from typing import Any

import jsonschema

_URL = {"type": "string"}
_INT = {"type": "integer"}

SEARCH_METADATA = {
    "type": "object",
    "required": ["id", "status"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "status": {"type": "string", "minLength": 1},
        "json_endpoint": _URL, "created_at": {"type": "string"}, "processed_at": {"type": "string"},
        "google_images_url": _URL, "raw_html_file": _URL, "total_time_taken": {"type": "number"},
    },
}
IMAGE_RESULT = {
    "type": "object",
    "properties": {
        "position": _INT, "thumbnail": _URL, "original": {"type": ["string", "null"]},
        "original_width": {"type": ["integer", "null"]}, "original_height": {"type": ["integer", "null"]},
        "title": {"type": "string"}, "link": _URL, "source": {"type": "string"}, "tag": {"type": "string"},
        "is_product": {"type": "boolean"}, "in_stock": {"type": "boolean"},
        "related_content_id": {"type": "string"}, "serpapi_related_content_link": _URL,
    },
}
SUGGESTED_SEARCH = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "link": _URL, "chips": {"type": "string"}, "serpapi_link": _URL,
                   "thumbnail": _URL},
}
RELATED_SEARCH = {
    "type": "object",
    "required": ["query"],
    "properties": {"query": {"type": "string"}, "link": _URL, "serpapi_link": _URL, "thumbnail": _URL,
                   "highlighted_words": {"type": "array", "items": {"type": "string"}}},
}
SHOPPING_RESULT = {
    "type": "object",
    "properties": {"position": _INT, "title": {"type": "string"}, "price": {"type": "string"},
                   "extracted_price": {"type": "number"}, "link": _URL, "source": {"type": "string"},
                   "thumbnail": _URL},
}
PAGINATION = {
    "type": "object",
    "properties": {"current": _INT, "next": _URL},
}
#: A successful (or still processing) Google Images search.
GOOGLE_IMAGES = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["search_metadata"],
    "properties": {
        "search_metadata": SEARCH_METADATA,
        "search_parameters": {"type": "object", "properties": {"engine": {"const": "google_images"},
                                                               "q": {"type": "string"}}},
        "suggested_searches": {"type": "array", "items": SUGGESTED_SEARCH},
        "images_results": {"type": "array", "items": IMAGE_RESULT},
        "related_searches": {"type": "array", "items": RELATED_SEARCH},
        "shopping_results": {"type": "array", "items": SHOPPING_RESULT},
        "serpapi_pagination": PAGINATION,
        "error": {"type": "string"},
    },
}
#: Any error body (HTTP 4xx/5xx, or a 200 whose search failed).
ERROR = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "minLength": 1}},
}
#: ``/account.json``.
ACCOUNT = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["total_searches_left"],
    "properties": {
        "account_id": {"type": "string"}, "plan_id": {"type": "string"}, "plan_name": {"type": "string"},
        "searches_per_month": _INT, "plan_searches_left": _INT, "extra_credits": _INT,
        "total_searches_left": _INT, "this_month_usage": _INT, "last_hour_searches": _INT,
        "account_rate_limit_per_hour": _INT,
    },
}
SCHEMAS = {"google_images": GOOGLE_IMAGES, "error": ERROR, "account": ACCOUNT}
_VALIDATORS = {name: jsonschema.Draft202012Validator(s) for name, s in SCHEMAS.items()}


def _path(err: jsonschema.ValidationError) -> str:
    out = ""
    for part in err.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the answer)"


def problems(data: Any, schema: str = "google_images", limit: int = 3) -> list[str]:
    """Up to ``limit`` readable problems of ``data`` against a schema (``[]``: it conforms)."""
    errs = sorted(_VALIDATORS[schema].iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    out = []
    for e in errs[:limit]:
        shown = repr(e.instance)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        what = e.message if e.validator != "type" else f"{shown} is not of type {e.validator_value!r}"
        out.append(f"{_path(e)}: {what}")
    return out
