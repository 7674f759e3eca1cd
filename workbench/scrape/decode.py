"""Decoding downloaded bytes into training images, within a pixel and memory budget.

A PNG of 9000×9000 flat pixels is 236 KB on the wire and 243 MB (RGB) to 324 MB (RGBA)
decoded, plus a copy per conversion; eight at once took a scrape from 38 MB to 4.2 GB.
So before any pixel is decoded:

- JPEGs are *drafted*: libjpeg decodes at 1/2, 1/4 or 1/8 scale straight to the size the
  dataset stores (``resize``), so a 12-megapixel photo costs what its thumbnail costs;
- images whose decoded size would exceed ``max_pixels`` (default 32 MP — more than any
  training image needs) are rejected as ``too_many_pixels``;
- a :class:`ByteBudget` (a semaphore counted in bytes, default 512 MB) caps the decoded
  bytes all worker threads hold at once; a decode waits for room, and gives up on Stop.

Everything else — format allow-list, HTML/SVG sniffing, truncation, EXIF orientation,
alpha/palette/CMYK/16-bit to RGB — is as before.
"""
from __future__ import annotations

import io
import threading
from typing import Callable

from PIL import Image, ImageOps

#: Formats Pillow may decode here; others (EPS, PSD, ICO …) are refused outright.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO")
#: Largest decoded image accepted (pixels after any JPEG draft).
DEFAULT_MAX_PIXELS = 32_000_000
#: Decoded bytes all workers may hold at once.
DEFAULT_DECODE_BUDGET = 512 * 1024 * 1024
#: Decoded bytes per pixel we reserve: 4 (RGBA/CMYK) for the image + 4 for one conversion copy.
BYTES_PER_PIXEL = 8


class Rejected(Exception):
    """A candidate that will not enter the dataset, and why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ByteBudget:
    """A counting semaphore in bytes: ``with budget.hold(n, stop):`` waits for ``n`` bytes of room."""

    def __init__(self, capacity: int = DEFAULT_DECODE_BUDGET) -> None:
        if capacity < 1:
            raise ValueError(f"decode_budget: {capacity!r} must be >= 1 byte")
        self.capacity = int(capacity)
        self.used = 0
        self.peak = 0
        self._cond = threading.Condition()

    def acquire(self, n: int, stopped: Callable[[], bool] | None = None) -> None:
        n = min(int(n), self.capacity)  # one image larger than the budget runs alone
        with self._cond:
            while self.used + n > self.capacity:
                if stopped is not None and stopped():
                    raise Rejected("stopped", "stop requested while waiting for decode memory")
                self._cond.wait(0.05)
            self.used += n
            self.peak = max(self.peak, self.used)

    def release(self, n: int) -> None:
        n = min(int(n), self.capacity)
        with self._cond:
            self.used -= n
            self._cond.notify_all()

    class _Hold:
        def __init__(self, budget: "ByteBudget", n: int, stopped: Callable[[], bool] | None) -> None:
            self.budget, self.n, self.stopped = budget, n, stopped

        def __enter__(self) -> None:
            self.budget.acquire(self.n, self.stopped)

        def __exit__(self, *exc: object) -> None:
            self.budget.release(self.n)

    def hold(self, n: int, stopped: Callable[[], bool] | None = None) -> "ByteBudget._Hold":
        return ByteBudget._Hold(self, n, stopped)


def _looks_like(data: bytes) -> str:
    head = data[:2048].lstrip().lower()
    if head.startswith(b"<?xml") and b"<svg" in head or head.startswith(b"<svg"):
        return "svg"
    if head.startswith((b"<!doctype", b"<html", b"<head", b"<body")) or b"<html" in head:
        return "html"
    return ""


def open_image(data: bytes) -> Image.Image:
    """Open (not decode) ``data`` with the allowed formats, or raise :class:`Rejected`."""
    kind = _looks_like(data)
    if kind == "svg":
        raise Rejected("svg", "SVG document (vector, not decoded)")
    try:
        im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise Rejected("decompression_bomb", str(exc)[:120]) from None
    except Exception as exc:  # UnidentifiedImageError, SyntaxError from broken headers, ...
        what = "HTML page" if kind == "html" else f"{len(data)} bytes Pillow cannot identify"
        raise Rejected("not_an_image", what if kind == "html" else f"{what} ({type(exc).__name__})") from None
    w, h = im.size
    limit = Image.MAX_IMAGE_PIXELS
    # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; a warning filter is
    # process-global (not thread-safe), so compare the size directly instead.
    if limit and w * h > limit:
        raise Rejected("decompression_bomb", f"{w}x{h} px exceeds Pillow's limit of {limit} px")
    return im


def decode_image(data: bytes, *, min_side: int = 16, target: int | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, budget: ByteBudget | None = None,
                 stopped: Callable[[], bool] | None = None) -> Image.Image:
    """Decode ``data`` as an RGB image within the budget, or raise :class:`Rejected`.

    ``target``: the longest side the caller will store; a JPEG is drafted (decoded at a
    reduced scale) to no less than that. Alpha and palette transparency are flattened
    onto white; EXIF orientation is applied.
    """
    im = open_image(data)
    w, h = im.size
    if target and im.format in ("JPEG", "MPO") and max(w, h) > 2 * target:
        scale = target / max(w, h)
        im.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
    dw, dh = im.size
    if max_pixels and dw * dh > max_pixels:
        raise Rejected("too_many_pixels", f"{w}x{h} px ({dw * dh / 1e6:.0f} MP decoded) exceeds the "
                                          f"{max_pixels / 1e6:.0f} MP budget for training images")
    if min(w, h) < min_side:
        raise Rejected("too_small", f"{w}x{h} px (min side {min_side})")
    need = dw * dh * BYTES_PER_PIXEL
    budget = budget or _UNBOUNDED
    budget.acquire(need, stopped)
    try:
        try:
            im.load()
        except Image.DecompressionBombError as exc:
            raise Rejected("decompression_bomb", str(exc)[:120]) from None
        except (OSError, SyntaxError, ValueError) as exc:
            msg = str(exc).lower()
            reason = "truncated" if "truncat" in msg or "broken data" in msg else "not_an_image"
            raise Rejected(reason, f"{im.format} {w}x{h}: {str(exc)[:100]}") from None
        try:
            im = ImageOps.exif_transpose(im) or im
        except Exception:  # a broken EXIF block is no reason to lose the picture
            pass
        out = to_rgb(im)
        out.info["original_size"] = (w, h)
        if target and max(out.size) > target:
            out.thumbnail((target, target), Image.LANCZOS)  # shrink now: keep the small copy, drop the big
        return out
    finally:
        budget.release(need)


_UNBOUNDED = ByteBudget(1 << 62)


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB version of any Pillow image; transparency composited onto white."""
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        im = im.convert("I").point(lambda v: v / 256).convert("L") if im.mode != "F" else im.convert("L")
    return im.convert("RGB")


def resize_image(im: Image.Image, resize: int | tuple[int, int] | None) -> Image.Image:
    """``int``: longest side at most ``resize`` (aspect kept); ``(w, h)``: exactly that size."""
    if resize is None:
        return im
    if isinstance(resize, int):
        if max(im.size) > resize:
            im = im.copy()
            im.thumbnail((resize, resize), Image.LANCZOS)
        return im
    return im.resize((int(resize[0]), int(resize[1])), Image.LANCZOS)
