"""The allow-listed PIL image operations a command may apply after decoding (``pil_ops``).

Each maps to ``fn(image, **params) -> image``; all are deterministic, so cached results stay
valid. Sizes are bounded (:data:`MAX_PIL_SIDE`): PIL allocates whatever a crop box or a resize
asks for, so ``crop`` beyond 4096 pixels or ``resize`` to ``[100000, 100000]`` is refused before
PIL sees it.
"""
from __future__ import annotations

from typing import Any, Callable

#: PIL operations a command may apply after decoding (before resizing and caching).
#: Each maps to ``fn(image, **params) -> image``; all are deterministic, so cached results stay valid.
PIL_OPS_DOC = {
    "convert": "Image.convert(mode)", "rotate": "Image.rotate(angle, expand=False)",
    "transpose": "Image.transpose(method) with method a Transpose name (FLIP_LEFT_RIGHT, ROTATE_90, …)",
    "crop": "Image.crop(box=[left, upper, right, lower])", "resize": "Image.resize(size=[w, h])",
    "reduce": "Image.reduce(factor)", "filter": "Image.filter(name) with name in ImageFilter (BLUR, SHARPEN, …)",
    "autocontrast": "ImageOps.autocontrast(cutoff=0)", "equalize": "ImageOps.equalize()",
    "grayscale": "ImageOps.grayscale()", "invert": "ImageOps.invert()", "mirror": "ImageOps.mirror()",
    "flip": "ImageOps.flip()", "posterize": "ImageOps.posterize(bits)", "solarize": "ImageOps.solarize(threshold=128)",
}
_PIL_FILTERS = ("BLUR", "CONTOUR", "DETAIL", "EDGE_ENHANCE", "EDGE_ENHANCE_MORE", "EMBOSS", "FIND_EDGES",
                "SHARPEN", "SMOOTH", "SMOOTH_MORE")

#: Largest side a PIL operation may produce (what a command's ``image_size`` may be).
MAX_PIL_SIDE = 4096


def _ints(v: Any, n: int, what: str) -> list[int]:
    if not isinstance(v, (list, tuple)) or len(v) != n or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and float(x).is_integer() for x in v):
        raise ValueError(f"{what} must be {n} whole number(s), got {v!r}")
    return [int(x) for x in v]


def _side(n: int, what: str) -> int:
    if not 1 <= n <= MAX_PIL_SIDE:
        raise ValueError(f"{what} {n} is not between 1 and {MAX_PIL_SIDE}")
    return n


def _pil_op(name: str) -> Callable[..., Any]:
    from PIL import Image, ImageFilter, ImageOps

    if name == "convert":
        return lambda im, mode: im.convert(mode)
    if name == "rotate":
        return lambda im, angle, expand=False: im.rotate(float(angle), expand=bool(expand))
    if name == "transpose":
        def transpose(im: Any, method: str) -> Any:
            choices = [m.name for m in Image.Transpose]
            if method not in choices:
                raise ValueError(f"method {method!r} is not one of {', '.join(choices)}")
            return im.transpose(Image.Transpose[method])
        return transpose
    if name == "crop":
        def crop(im: Any, box: Any) -> Any:
            left, upper, right, lower = _ints(box, 4, "box")
            _side(right - left, "box width")  # PIL pads a box beyond the image: its size is allocated
            _side(lower - upper, "box height")
            return im.crop((left, upper, right, lower))
        return crop
    if name == "resize":
        def resize(im: Any, size: Any) -> Any:
            w, h = _ints(size, 2, "size")
            return im.resize((_side(w, "width"), _side(h, "height")))
        return resize
    if name == "reduce":
        def reduce(im: Any, factor: Any) -> Any:
            (f,) = _ints([factor], 1, "factor")
            if not 1 <= f <= 64:
                raise ValueError(f"factor {f} is not between 1 and 64")
            return im.reduce(f)
        return reduce
    if name == "filter":
        def filt(im: Any, name: str) -> Any:
            if name not in _PIL_FILTERS:
                raise ValueError(f"filter {name!r} is not one of {', '.join(_PIL_FILTERS)}")
            return im.filter(getattr(ImageFilter, name))
        return filt
    fn = {"autocontrast": ImageOps.autocontrast, "equalize": ImageOps.equalize, "grayscale": ImageOps.grayscale,
          "invert": ImageOps.invert, "mirror": ImageOps.mirror, "flip": ImageOps.flip,
          "posterize": ImageOps.posterize, "solarize": ImageOps.solarize}[name]
    return fn


def pil_ops() -> dict[str, Callable[..., Any]]:
    """The allow-listed PIL operations, name → ``fn(image, **params)``."""
    return {n: _pil_op(n) for n in PIL_OPS_DOC}
