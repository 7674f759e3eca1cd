"""SerpApi's Google Images parameters (``engine=google_images``) in one table, checked locally.

The names, groups and allowed values follow SerpApi's Google Images API documentation
(serpapi.com/google-images-api) and its Search API parameters. ``q``, ``ijn``, ``chips``,
``engine`` and ``api_key`` are set by the client itself; every other documented parameter
is passed through after the checks below, so a bad value, an out-of-range page or an
exclusive pair is a clear local error instead of a billed 400.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

#: Results per Google Images page; ``ijn`` pages 0..MAX_PAGE.
PAGE_SIZE = 100
MAX_PAGE = 99


@dataclass(frozen=True)
class Param:
    """One documented parameter: its docs group, the values allowed (None: any string)."""

    name: str
    group: str
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    note: str = ""


_BOOL = ("true", "false")
_DATE = r"^\d{8}$"  # YYYYMMDD
#: Every Google Images parameter in SerpApi's documentation, grouped as the docs group them.
PARAMS: tuple[Param, ...] = (
    Param("q", "Search Query", note="set by the client"),
    Param("location", "Geographic Location", note="not with uule"),
    Param("uule", "Geographic Location", note="not with location"),
    Param("google_domain", "Localization"),
    Param("gl", "Localization", pattern=r"^[a-z]{2}$"),
    Param("hl", "Localization", pattern=r"^[a-z]{2}(-[a-z]{2,4})?$"),
    Param("cr", "Localization"),
    Param("uds", "Advanced Filters"),
    Param("chips", "Advanced Filters", note="set by the client from a suggested search name"),
    Param("tbs", "Advanced Filters"),
    Param("imgar", "Advanced Filters", ("s", "t", "w", "xw")),
    Param("imgsz", "Advanced Filters", ("l", "m", "i", "qsvga", "vga", "svga", "xga", "2mp", "4mp", "6mp", "8mp",
                                        "10mp", "12mp", "15mp", "20mp", "40mp", "70mp")),
    Param("image_color", "Advanced Filters", ("bw", "trans", "red", "orange", "yellow", "green", "teal", "blue",
                                              "purple", "pink", "white", "gray", "black", "brown")),
    Param("image_type", "Advanced Filters", ("face", "photo", "clipart", "lineart", "animated")),
    Param("licenses", "Advanced Filters", ("f", "fc", "fm", "fmc", "cl", "ol")),
    Param("safe", "Advanced Filters", ("active", "off")),
    Param("nfpr", "Advanced Filters", ("0", "1")),
    Param("filter", "Advanced Filters", ("0", "1")),
    Param("period_unit", "Advanced Filters", ("s", "n", "h", "d", "w", "m", "y"), note="not with start/end_date"),
    Param("period_value", "Advanced Filters", pattern=r"^[1-9]\d*$", note="with period_unit"),
    Param("start_date", "Advanced Filters", pattern=_DATE, note="YYYYMMDD; not with period_*"),
    Param("end_date", "Advanced Filters", pattern=_DATE, note="YYYYMMDD; not with period_*"),
    Param("as_dt", "Advanced Search", ("i", "e")),
    Param("as_epq", "Advanced Search"),
    Param("as_eq", "Advanced Search"),
    Param("as_lq", "Advanced Search"),
    Param("as_nlo", "Advanced Search"),
    Param("as_nhi", "Advanced Search"),
    Param("as_oq", "Advanced Search"),
    Param("as_q", "Advanced Search"),
    Param("as_qdr", "Advanced Search"),
    Param("as_rq", "Advanced Search"),
    Param("as_sitesearch", "Advanced Search"),
    Param("ijn", "Pagination", pattern=r"^\d{1,2}$", note=f"0..{MAX_PAGE}; set by the client from page"),
    Param("engine", "SerpApi Parameters", ("google_images",), note="set by the client"),
    Param("device", "SerpApi Parameters", ("desktop", "tablet", "mobile")),
    Param("no_cache", "SerpApi Parameters", _BOOL, note="not with async; every search is billed"),
    Param("async", "SerpApi Parameters", _BOOL, note="results fetched from the Search Archive; not with no_cache"),
    Param("zero_trace", "SerpApi Parameters", _BOOL, note="enterprise only"),
    Param("api_key", "SerpApi Parameters", note="set by the client, never stored"),
    Param("output", "SerpApi Parameters", ("json",), note="html is refused: the workbench reads JSON"),
    Param("json_restrictor", "SerpApi Parameters"),
)
BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}
#: Set by the client; a caller passing them is an error.
CLIENT_SET = ("q", "ijn", "chips", "engine", "api_key")
#: Parameters a caller may pass through.
PASSTHROUGH_PARAMS = tuple(p.name for p in PARAMS if p.name not in CLIENT_SET)
#: Pairs SerpApi refuses together.
EXCLUSIVE = (("location", "uule"), ("async", "no_cache"), ("period_unit", "start_date"),
             ("period_unit", "end_date"), ("period_value", "start_date"), ("period_value", "end_date"))
#: Retired or other-engine parameters people reach for, with what to use instead.
NOT_GOOGLE_IMAGES = {"lr": "not a Google Images parameter (it belongs to engine=google); use cr or hl",
                     "time_period": "not a SerpApi Google Images parameter; use period_unit/period_value or "
                                    "start_date/end_date, or tbs=qdr:d",
                     "num": "Google Images pages always hold 100 results; use pages/ijn",
                     "tbm": "engine=google_images already searches images"}


def _close(name: str) -> str:
    import difflib

    m = difflib.get_close_matches(name, PASSTHROUGH_PARAMS, n=1)
    return f" (did you mean {m[0]!r}?)" if m else ""


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def check_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Validate pass-through parameters; return them as strings (``None`` values dropped).

    Raises ``ValueError`` naming every problem at once: unknown names (with a close match),
    values outside the documented choices, and exclusive pairs.
    """
    problems: list[str] = []
    out: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if name in CLIENT_SET:
            problems.append(f"params.{name}: set by the client; use scrape()'s "
                            f"{'pages' if name == 'ijn' else 'queries' if name == 'q' else name} argument")
            continue
        if name in NOT_GOOGLE_IMAGES:
            problems.append(f"params.{name}: {NOT_GOOGLE_IMAGES[name]}")
            continue
        spec = BY_NAME.get(name)
        if spec is None:
            problems.append(f"params.{name}: unknown parameter{_close(name)}; allowed: {', '.join(PASSTHROUGH_PARAMS)}")
            continue
        text = _text(value).strip()
        if spec.choices is not None and text not in spec.choices:
            problems.append(f"params.{name}: {value!r} is not allowed; expected one of {', '.join(spec.choices)}"
                            + (f" ({spec.note})" if spec.note else ""))
            continue
        if spec.pattern is not None and not re.match(spec.pattern, text):
            problems.append(f"params.{name}: {value!r} is not allowed ({spec.note or 'pattern ' + spec.pattern})")
            continue
        if not text:
            problems.append(f"params.{name}: empty value; leave it out instead")
            continue
        out[name] = text
    for a, b in EXCLUSIVE:
        if a in out and b in out and not (a == "async" and out[a] == "false") and not (
                b == "no_cache" and out[b] == "false"):
            problems.append(f"params: {a!r} and {b!r} cannot be used together (SerpApi refuses the pair)")
    if "period_value" in out and "period_unit" not in out:
        problems.append("params.period_value: needs period_unit (s, n, h, d, w, m or y)")
    if problems:
        raise ValueError("; ".join(dict.fromkeys(problems)))
    return out


def check_page(page: Any, field: str = "page") -> int:
    """A Google Images page number (``ijn``) in 0..99."""
    if isinstance(page, bool) or not isinstance(page, int) or not 0 <= page <= MAX_PAGE:
        raise ValueError(f"{field}: {page!r} is not allowed; SerpApi's ijn is an integer 0..{MAX_PAGE} "
                         f"({PAGE_SIZE} results a page)")
    return page


def estimate_searches(n_queries: int, pages: int, chips: bool) -> int:
    """Searches a build can spend at most: one per page per query, plus one chips lookup per query."""
    return n_queries * pages + (n_queries if chips else 0)
