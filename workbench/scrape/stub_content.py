"""What the loopback stub serves: SerpApi-shaped answers and the image bodies behind them.

Answers follow the same schema as the recorded fixtures (``tests/scrape/fixtures``);
a contract test checks both against :mod:`workbench.scrape.schema`. Bodies come from
:mod:`workbench.scrape.corpus`, plus the web's hostile cases and *planted near-duplicates*:
resized, re-encoded and slightly cropped copies of other results of the same page, and one
"stock photo" that appears (differently altered) under every query. :func:`truth_of` tells
which original any served URL is a copy of, so a benchmark can score the detection.
"""
from __future__ import annotations

import hashlib
import io
import random
import struct
import threading
import zlib
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlencode, urlsplit

from PIL import Image

from . import corpus
from .params import PAGE_SIZE

NO_RESULTS = "Google Images hasn't returned any results for this query."
INVALID_KEY = "Invalid API key. Your API key should be here: https://serpapi.com/manage-api-key"
OUT_OF_SEARCHES = "Your account has run out of searches."
THROUGHPUT = "Your account has exceeded its hourly throughput limit. Please retry later or upgrade your plan."
#: Result positions (1-based, on every page) an image fault replaces.
FAULT_SLOTS = {"html": 3, "truncated": 5, "huge": 7, "oversize": 9, "svg": 11, "redirect": 13, "trickle": 19,
               "stall": 21, "private_redirect": 23, "image_rate_limit": 25, "broken_original": 27}
#: Positions that become duplicates of position 1 under the ``duplicate`` fault.
DUPLICATE_URL_SLOT, DUPLICATE_CONTENT_SLOT = 15, 17
#: Positions serving a real 81-megapixel PNG under ``megapixel``.
MEGAPIXEL_SLOTS = (29, 31, 33, 35, 37, 39, 41, 43)
#: Under ``bad_original``: a result without ``original`` and one with a ``file:`` URL.
BAD_ORIGINAL_SLOTS = {45: None, 47: "file:///etc/passwd"}
#: ``near_duplicates``: copy position → (kind, original position) on every page; 99 is the stock photo.
NEAR_DUP_KINDS = ("resized", "reencoded", "cropped")
NEAR_DUP_SLOTS = {52 + 2 * k: (NEAR_DUP_KINDS[k % 3], 2 + 2 * k) for k in range(18)}
STOCK_SLOT = 99
STOCK_QUERY = "stock photo"
#: The crop a "slightly cropped" copy takes off each side, at most.
MAX_CROP = 0.05


def chip_token(query: str, name: str) -> str:
    return hashlib.sha1(f"{query}|{name}".encode()).hexdigest()[:12]


def chips_string(query: str, name: str) -> str:
    """SerpApi-style ``chips`` value for a suggested search (``q:...,online_chips:...``)."""
    return f"q:{quote_plus(query)},online_chips:{quote_plus(name)}:{chip_token(query, name)}"


def chip_name(chips: str | None) -> str | None:
    """The chip style named by a ``chips`` string, or ``None``."""
    if not chips or "online_chips:" not in chips:
        return None
    part = chips.split("online_chips:", 1)[1].split(":", 1)[0]
    name = unquote(part.replace("+", " "))
    return name if name in corpus.CHIP_STYLES else None


def related_for(query: str) -> list[str]:
    """Related searches the stub offers for a query: its words recombined with nearby terms."""
    words = [w for w in query.lower().split() if not w.startswith("imagesize:")]
    rng = random.Random(int(hashlib.sha256(" ".join(words).encode()).hexdigest()[:8], 16))
    extra = ["drawing", "wallpaper", "cute", "real", "baby", "close up", "in the wild", "cartoon", "icon"]
    rng.shuffle(extra)
    base = " ".join(words)
    out = [f"{base} {e}" for e in extra[:4]]
    if len(words) > 1:
        out.append(words[-1])
    return out


# -- answers --------------------------------------------------------------------------
def search_id(q: str, chips: str | None, page: int) -> str:
    return hashlib.sha1(f"{q}|{chips}|{page}".encode()).hexdigest()[:24]


def metadata(origin: str, sid: str, q: str, page: int, status: str = "Success") -> dict[str, Any]:
    now = "2024-01-01 00:00:00 UTC"  # fixed: answers are pure functions of the request
    md = {"id": sid, "status": status, "json_endpoint": f"{origin}/searches/{sid}.json", "created_at": now,
          "google_images_url": f"https://www.google.com/search?q={quote_plus(q)}&tbm=isch&ijn={page}",
          "raw_html_file": f"{origin}/searches/{sid}.html"}
    if status == "Success":
        md.update(processed_at=now, total_time_taken=0.01)
    return md


def image_url(origin: str, base_q: str, style: str | None, size: tuple[int, int] | None, i: int,
              pos: int, on: set[str]) -> str:
    """The ``original`` URL of result ``i`` (position ``pos``) under the switched-on faults."""
    qq, ss = quote(base_q, safe=""), quote(style or "-", safe="")
    sz = f"{size[0]}x{size[1]}" if size else "auto"
    ext = "png" if corpus.image_format(i).startswith("png") else "jpg"
    start = i - pos + 1
    if "duplicate" in on and pos in (DUPLICATE_URL_SLOT, DUPLICATE_CONTENT_SLOT):
        ext0 = "png" if corpus.image_format(start).startswith("png") else "jpg"
        url = f"{origin}/img/{qq}/{ss}/{sz}/{start}.{ext0}"
        return url + ("?copy=1" if pos == DUPLICATE_CONTENT_SLOT else "")
    for fault, slot in FAULT_SLOTS.items():
        if pos == slot and fault in on:
            if fault == "redirect":
                return f"{origin}/redirect/img/{qq}/{ss}/{sz}/{i}.{ext}"
            if fault == "broken_original":
                return f"{origin}/fault/broken/{qq}/{i}.jpg"
            return f"{origin}/fault/{fault}/{qq}/{i}.jpg"
    if "megapixel" in on and pos in MEGAPIXEL_SLOTS:
        return f"{origin}/fault/megapixel/{qq}/{i}.png"
    if "near_duplicates" in on:
        if pos == STOCK_SLOT:
            return f"{origin}/near/stock/{qq}/-/auto/{i}/0.jpg"
        if pos in NEAR_DUP_SLOTS:
            kind, opos = NEAR_DUP_SLOTS[pos]
            return f"{origin}/near/{kind}/{qq}/{ss}/{sz}/{i}/{start + opos - 1}.jpg"
    return f"{origin}/img/{qq}/{ss}/{sz}/{i}.{ext}"


def truth_of(url: str) -> str:
    """Which picture a served URL shows: ``"query|style|index"`` (copies name their original)."""
    path = urlsplit(url).path if "://" in url else url.split(":", 1)[-1]
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if parts[0] == "near":
        if parts[1] == "stock":
            return f"{STOCK_QUERY}|-|0"
        return f"{parts[2]}|{parts[3]}|{parts[6].split('.')[0]}"
    if parts[0] == "redirect":
        parts = parts[1:]
    if parts[0] == "img":
        return f"{parts[1]}|{parts[2]}|{parts[4].split('.')[0]}"
    return "|".join(parts)


def result_entry(origin: str, base_q: str, style: str | None, size: tuple[int, int] | None, i: int, pos: int,
                 on: set[str], q: str, key_marker: str = "") -> dict[str, Any]:
    qq, ss = quote(base_q, safe=""), quote(style or "-", safe="")
    sz = f"{size[0]}x{size[1]}" if size else "auto"
    w, h = size or corpus.default_size(base_q, i)
    leak = f"?api_key={key_marker}" if key_marker else ""
    entry: dict[str, Any] = {
        "position": pos,
        "thumbnail": f"{origin}/thumb/{qq}/{ss}/{sz}/{i}.jpg{leak}",
        "related_content_id": hashlib.sha1(f"{q}|{i}".encode()).hexdigest()[:16],
        "serpapi_related_content_link": f"{origin}/search.json?engine=google_images_related_content"
                                        f"&related_content_id={i}{leak.replace('?', '&')}",
        "source": f"stub-source-{i % 7}.example",
        "source_logo": f"{origin}/thumb/logo/{i % 7}.png",
        "title": f"{base_q}{' (' + style + ')' if style else ''} #{i}",
        "link": f"{origin}/page/{qq}/{i}{leak}",
        "original": image_url(origin, base_q, style, size, i, pos, on),
        "original_width": w,
        "original_height": h,
        "is_product": "products" in on and i % 5 == 4,
    }
    if "products" in on and i % 5 == 4:
        entry["tag"] = "Product"
    if "bad_original" in on and pos in BAD_ORIGINAL_SLOTS:
        if BAD_ORIGINAL_SLOTS[pos] is None:
            entry.pop("original")
        else:
            entry["original"] = BAD_ORIGINAL_SLOTS[pos]
    return entry


def search_answer(origin: str, base_url: str, q: str, base_q: str, size: tuple[int, int] | None,
                  style: str | None, chips: str | None, page: int, start: int, stop: int, total: int,
                  p: dict[str, str], on: set[str], related: list[str], key_marker: str = "") -> dict[str, Any]:
    """A full Google Images answer for one page."""
    sid = search_id(q, chips, page)
    results = [result_entry(origin, base_q, style, size, i, i - start + 1, on, q, key_marker)
               for i in range(start, stop)]
    suggested = [{
        "name": name,
        "link": f"https://www.google.com/search?q={quote_plus(q)}&tbm=isch&chips={quote_plus(chips_string(base_q, name))}",
        "chips": chips_string(base_q, name),
        "serpapi_link": f"{base_url}?" + urlencode({"engine": "google_images", "q": q,
                                                    "chips": chips_string(base_q, name)}),
        "thumbnail": f"{origin}/thumb/{quote(base_q, safe='')}/{quote(name, safe='')}/auto/0.jpg",
    } for name in corpus.CHIP_STYLES]
    # SerpApi echoes the defaults it applied too
    echo = {"engine": "google_images", "q": q, "google_domain": "google.com", "hl": "en", "gl": "us",
            "device": "desktop", "ijn": str(page)}
    for k in ("google_domain", "gl", "hl", "chips", "safe", "imgsz", "tbs", "image_type", "image_color",
              "licenses", "no_cache", "device"):
        if p.get(k):
            echo[k] = p[k]
    pagination: dict[str, Any] = {"current": page}
    if stop < total:
        nxt = {**echo, "ijn": str(page + 1)}
        pagination["next"] = f"{base_url}?" + urlencode(nxt) + (f"&api_key={key_marker}" if key_marker else "")
    out: dict[str, Any] = {
        "search_metadata": metadata(origin, sid, q, page),
        "search_parameters": echo,
        "suggested_searches": suggested if page == 0 else [],
        "images_results": results,
        "serpapi_pagination": pagination,
    }
    if page == 0:
        out["related_searches"] = [{
            "link": f"https://www.google.com/search?q={quote_plus(r)}&tbm=isch",
            "serpapi_link": f"{base_url}?" + urlencode({"engine": "google_images", "q": r}),
            "query": r, "highlighted_words": [w for w in r.split() if w not in base_q.split()],
            "thumbnail": f"{origin}/thumb/{quote(r, safe='')}/-/auto/0.jpg"} for r in related]
        if "products" in on:
            out["shopping_results"] = [{"position": k + 1, "title": f"{base_q} poster #{k}", "price": "$9.99",
                                        "extracted_price": 9.99, "link": f"{origin}/page/shop/{k}",
                                        "source": "stub-shop.example", "thumbnail": f"{origin}/thumb/shop/{k}.jpg"}
                                       for k in range(3)]
    return out


def malform(data: dict[str, Any], shape: str) -> Any:
    """Break an answer the way a misbehaving endpoint would."""
    if shape == "images_results_string":
        data["images_results"] = "abc"
    elif shape == "position_string":
        data["images_results"][3]["position"] = "abc"
    elif shape == "pagination_list":
        data["serpapi_pagination"] = ["next"]
    elif shape == "not_object":
        return ["not", "an", "object"]
    return data


# -- bodies -------------------------------------------------------------------------
def huge_png(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header claims ``width × height`` (Pillow refuses it as a bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return _png(ihdr, zlib.compress(b"\x00" * 1024))


def _png(ihdr: bytes, idat: bytes) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


_MEGA_LOCK = threading.Lock()


def megapixel_png(side: int = 9000) -> bytes:
    """A real, valid ``side × side`` RGB PNG (81 MP at 9000) that compresses to a few hundred KB.

    Built once per size (about a second for 9000) under a lock, so concurrent requests wait
    for one build instead of each spending the CPU on their own.
    """
    with _MEGA_LOCK:
        return _megapixel_png(side)


@lru_cache(maxsize=2)
def _megapixel_png(side: int) -> bytes:
    comp = zlib.compressobj(9)
    row = b"\x00" + b"\x80" * (side * 3)
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    return _png(struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0), b"".join(parts))


SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
       b'<circle cx="32" cy="32" r="20" fill="red"/></svg>')
HTML = (b"<!doctype html><html><head><title>403 Forbidden</title></head><body><h1>Forbidden</h1>"
        b"<p>Hotlinking is not allowed.</p></body></html>")


def near_copy(served: bytes, kind: str, seed: str) -> bytes:
    """A planted near-duplicate of a served image: resized, re-encoded or slightly cropped."""
    from .decode import to_rgb

    rng = random.Random(seed)
    with Image.open(io.BytesIO(served)) as im:
        im.load()
        img = to_rgb(im)
    w, h = img.size
    quality = 88
    if kind == "resized":
        s = rng.choice((0.5, 0.75, 1.5, 2.0))
        img = img.resize((max(16, round(w * s)), max(16, round(h * s))), Image.BICUBIC)
    elif kind == "reencoded":
        quality = rng.randint(40, 75)
    elif kind == "cropped":
        box = (round(w * rng.uniform(0, MAX_CROP)), round(h * rng.uniform(0, MAX_CROP)),
               w - round(w * rng.uniform(0, MAX_CROP)), h - round(h * rng.uniform(0, MAX_CROP)))
        img = img.crop(box)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def page_bounds(page: int, total: int) -> tuple[int, int]:
    return page * PAGE_SIZE, min((page + 1) * PAGE_SIZE, total)
