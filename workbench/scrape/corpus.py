"""The offline image corpus the loopback stub serves, drawn with Pillow (no downloads).

Every image is a pure function of ``(query, chip, index, size)``: the same URL always
yields the same bytes, so resume and dedupe behave as they would on the web. A query's
*class look* comes from its words — a colour word sets the hue, a shape word the
motif (``"red circles"``, ``"blue stripes"``) — and anything else falls back to a
look derived from the query's hash, so any query (``"red fox"``, ``"arctic fox"``)
gets its own, consistent look. Within a class every image varies randomly (position,
scale, rotation, count, hue/brightness jitter, background, noise), so a classifier has
something to learn but cannot memorise one picture.
"""
from __future__ import annotations

import colorsys
import hashlib
import io
import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

#: The demo classes (notebook 01 builds them; 02 and 03 train on them).
DEMO_QUERIES = ("red circles", "blue squares", "green triangles", "yellow stripes", "purple stars",
                "orange checkerboard")

COLOURS = {
    "red": 0.0, "orange": 0.08, "yellow": 0.15, "lime": 0.25, "green": 0.33, "teal": 0.47, "cyan": 0.5,
    "blue": 0.62, "navy": 0.65, "purple": 0.78, "violet": 0.78, "magenta": 0.85, "pink": 0.92,
}
#: Colour words that mean low saturation (hue unused).
NEUTRALS = {"white": (0.0, 0.05, 0.95), "arctic": (0.55, 0.08, 0.95), "snow": (0.55, 0.05, 0.97),
            "grey": (0.0, 0.0, 0.55), "gray": (0.0, 0.0, 0.55), "black": (0.0, 0.0, 0.12),
            "brown": (0.07, 0.6, 0.45), "golden": (0.12, 0.7, 0.85)}
SHAPES = ("circle", "square", "triangle", "star", "stripes", "dots", "checkerboard", "ring", "cross")
_SHAPE_WORDS = {"circle": "circle", "circles": "circle", "disc": "circle", "square": "square",
                "squares": "square", "box": "square", "triangle": "triangle", "triangles": "triangle",
                "star": "star", "stars": "star", "stripes": "stripes", "striped": "stripes",
                "stripe": "stripes", "dots": "dots", "dotted": "dots", "spots": "dots",
                "checkerboard": "checkerboard", "checker": "checkerboard", "chess": "checkerboard",
                "ring": "ring", "rings": "ring", "cross": "cross", "crosses": "cross", "plus": "cross"}
#: Suggested searches (chips) every query offers; the stub renders each differently.
CHIP_STYLES = ("outline", "night", "close up", "pattern", "cartoon")


@dataclass(frozen=True)
class Look:
    """How a class is drawn: hue/saturation/value and a motif."""

    hue: float
    sat: float
    val: float
    shape: str


def _seed(*parts: object) -> int:
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big")


def look_for(query: str) -> Look:
    """The class look for a query (colour and shape words win, the rest is hashed)."""
    words = [w.strip(".,;:!?'\"").lower() for w in query.replace("imagesize:", " imagesize:").split()]
    words = [w for w in words if w and not w.startswith("imagesize:")]
    rng = random.Random(_seed("look", " ".join(words)))
    hue, sat, val = rng.random(), 0.75, 0.85
    shape = SHAPES[rng.randrange(len(SHAPES))]
    for w in words:
        if w in COLOURS:
            hue, sat, val = COLOURS[w], 0.8, 0.88
        elif w in NEUTRALS:
            hue, sat, val = NEUTRALS[w]
        if w in _SHAPE_WORDS:
            shape = _SHAPE_WORDS[w]
    return Look(hue, sat, val, shape)


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _polygon(cx: float, cy: float, r: float, n: int, rot: float, star: bool = False) -> list[tuple[float, float]]:
    pts = []
    k = 2 * n if star else n
    for i in range(k):
        rr = r if (not star or i % 2 == 0) else r * 0.45
        a = rot + 2 * math.pi * i / k
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


@dataclass(frozen=True)
class _Pen:
    """How one image draws its motif: the canvas, the shape and the chip's fill/outline style."""

    d: ImageDraw.ImageDraw
    shape: str
    fg: tuple[int, int, int]
    outline_only: bool  # chip "outline": edges only, no fill
    edge: tuple[int, int, int] | None  # chip "cartoon": a dark outline around the fill
    lw: int

    def blob(self, cx: float, cy: float, r: float, rot: float) -> None:
        """One motif centred at (cx, cy) with radius ``r``, rotated by ``rot``."""
        d, fg, lw = self.d, self.fg, self.lw
        fill = None if self.outline_only else fg
        ol = fg if self.outline_only else self.edge
        if self.shape == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill, outline=ol, width=lw or 1)
        elif self.shape == "ring":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fg, width=max(2, int(r * 0.3)))
        elif self.shape == "square":
            d.polygon(_polygon(cx, cy, r * 1.2, 4, rot), fill=fill, outline=ol, width=lw or 1)
        elif self.shape == "triangle":
            d.polygon(_polygon(cx, cy, r * 1.2, 3, rot), fill=fill, outline=ol, width=lw or 1)
        elif self.shape == "star":
            d.polygon(_polygon(cx, cy, r * 1.25, 5, rot, star=True), fill=fill, outline=ol, width=lw or 1)
        elif self.shape == "cross":
            t = r * 0.35
            for a in (rot, rot + math.pi / 2):
                dx, dy = math.cos(a), math.sin(a)
                px, py = -dy * t, dx * t
                d.polygon([(cx - dx * r + px, cy - dy * r + py), (cx + dx * r + px, cy + dy * r + py),
                           (cx + dx * r - px, cy + dy * r - py), (cx - dx * r - px, cy - dy * r - py)],
                          fill=fill, outline=ol)
        else:  # dots
            d.ellipse([cx - r * 0.4, cy - r * 0.4, cx + r * 0.4, cy + r * 0.4], fill=fg)


# The helpers below draw from one shared ``rng`` in a fixed order: the same URL must keep
# yielding the same bytes (resume and dedupe rely on it), so reordering their calls changes
# every served image.
def _background(rng: random.Random, w: int, h: int, night: bool) -> Image.Image:
    """A random muted colour gradient, darker at "night"."""
    bg_h = rng.random()
    bg_v = rng.uniform(0.1, 0.25) if night else rng.uniform(0.55, 0.95)
    c0 = _rgb(bg_h, rng.uniform(0.0, 0.25), bg_v)
    c1 = _rgb(bg_h + rng.uniform(-0.1, 0.1), rng.uniform(0.0, 0.25), bg_v * rng.uniform(0.75, 1.0))
    grad = Image.linear_gradient("L").resize((w, h)).rotate(rng.choice((0, 90, 180, 270)))
    return Image.composite(Image.new("RGB", (w, h), c0), Image.new("RGB", (w, h), c1), grad)


def _pattern_mask(rng: random.Random, shape: str, chip: str, w: int, h: int, outline_only: bool) -> Image.Image:
    """The mask of a "stripes"/"checkerboard" look: a rotated tiling cropped to the image."""
    m = min(w, h)
    period = m * rng.uniform(0.12, 0.25) * (0.6 if chip == "pattern" else 1.0) * (2 if chip == "close up" else 1)
    tile = Image.new("L", (w * 2, h * 2), 0)
    td = ImageDraw.Draw(tile)
    n = int(4 * max(w, h) / period) + 2
    for i in range(n):
        x0 = i * period
        if shape == "stripes":
            td.rectangle([x0, 0, x0 + period * rng.uniform(0.35, 0.6), h * 2], fill=255)
        else:
            for j in range(n):
                if (i + j) % 2 == 0:
                    td.rectangle([x0, j * period, x0 + period, (j + 1) * period], fill=255)
    mask = tile.rotate(rng.uniform(0, 180), resample=Image.BILINEAR).crop((w // 2, h // 2, w // 2 + w, h // 2 + h))
    return mask.filter(ImageFilter.FIND_EDGES) if outline_only else mask


def _scatter(rng: random.Random, pen: _Pen, chip: str, w: int, h: int) -> None:
    """Draw the motif: one large ("close up"), many small ("pattern", dots) or a few."""
    m = min(w, h)
    if chip == "close up":
        count, scale = 1, (0.35, 0.48)
    elif chip == "pattern" or pen.shape == "dots":
        count, scale = rng.randint(6, 12), (0.08, 0.14)
    else:
        count, scale = rng.randint(1, 3), (0.14, 0.3)
    for _ in range(count):
        r = m * rng.uniform(*scale)
        cx = rng.uniform(r * 0.8, w - r * 0.8)
        cy = rng.uniform(r * 0.8, h - r * 0.8)
        pen.blob(cx, cy, r, rng.uniform(0, 2 * math.pi))


def _specks_and_noise(rng: random.Random, img: Image.Image, d: ImageDraw.ImageDraw) -> Image.Image:
    """Grey distractor specks and sensor-like noise, so pixels are never trivially clean."""
    w, h = img.size
    m = min(w, h)
    for _ in range(rng.randint(0, 3)):
        r = m * rng.uniform(0.02, 0.05)
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        g = rng.randint(60, 200)
        d.ellipse([x - r, y - r, x + r, y + r], fill=(g, g, g))
    # uniform noise from the seeded rng (Image.effect_noise uses C rand(): not reproducible)
    noise = Image.frombytes("L", (w, h), rng.randbytes(w * h)).convert("RGB")
    return Image.blend(img, noise, rng.uniform(0.03, 0.08))


def render(query: str, index: int, chip: str | None = None, size: tuple[int, int] = (96, 96)) -> Image.Image:
    """Draw image ``index`` of ``query`` (optionally in a chip's style) as an RGB image."""
    w, h = int(size[0]), int(size[1])
    look = look_for(query)
    rng = random.Random(_seed("img", query, chip or "", index, w, h))
    chip = (chip or "").lower()
    img = _background(rng, w, h, night=chip == "night")
    d = ImageDraw.Draw(img)
    fg = _rgb(look.hue + rng.uniform(-0.035, 0.035), look.sat * rng.uniform(0.8, 1.1),
              look.val * rng.uniform(0.75, 1.05))
    outline_only = chip == "outline"
    edge = (20, 20, 20) if chip == "cartoon" else None
    lw = max(1, min(w, h) // 24) if (outline_only or edge) else 0
    if look.shape in ("stripes", "checkerboard"):
        mask = _pattern_mask(rng, look.shape, chip, w, h, outline_only)
        img.paste(Image.new("RGB", (w, h), fg), (0, 0), mask)
    else:
        _scatter(rng, _Pen(d, look.shape, fg, outline_only, edge, lw), chip, w, h)
    return _specks_and_noise(rng, img, d)


def image_format(index: int) -> str:
    """The file format image ``index`` is served in: mostly JPEG, some PNG/RGBA,
    palette PNG with transparency and CMYK JPEG, so the downloader's RGB conversion is exercised."""
    return {3: "png-rgba", 6: "png-palette", 8: "jpeg-cmyk"}.get(index % 10, "jpeg")


def encode(img: Image.Image, fmt: str) -> tuple[bytes, str]:
    """Encode an RGB image as ``fmt`` (see :func:`image_format`); returns (bytes, content type)."""
    buf = io.BytesIO()
    if fmt == "png-rgba":
        a = Image.linear_gradient("L").resize(img.size).point(lambda v: 128 + v // 2)
        rgba = img.convert("RGBA")
        rgba.putalpha(a)
        rgba.save(buf, "PNG")
        return buf.getvalue(), "image/png"
    if fmt == "png-palette":
        p = img.convert("P", palette=Image.ADAPTIVE, colors=64)
        p.info["transparency"] = 0
        p.save(buf, "PNG", transparency=0)
        return buf.getvalue(), "image/png"
    if fmt == "jpeg-cmyk":
        img.convert("CMYK").save(buf, "JPEG", quality=88)
        return buf.getvalue(), "image/jpeg"
    img.save(buf, "JPEG", quality=88)
    return buf.getvalue(), "image/jpeg"


def default_size(query: str, index: int) -> tuple[int, int]:
    """The natural size of an image (square, 64–128 px) when the query asks for none."""
    rng = random.Random(_seed("size", query, index))
    s = rng.choice((64, 80, 96, 112, 128))
    return s, s


def image_bytes(query: str, index: int, chip: str | None = None,
                size: tuple[int, int] | None = None) -> tuple[bytes, str]:
    """The served bytes and content type of image ``index`` of ``query``."""
    size = size or default_size(query, index)
    return encode(render(query, index, chip, size), image_format(index))
