"""Name → object tables for training commands. Never ``eval``: every name a command may
use is looked up here, and anything not in a table is rejected with close matches.

Tables are built once from the libraries themselves (``torch.nn``, ``torch.optim``,
``torch.optim.lr_scheduler``, ``torchvision.transforms.v2``) minus entries that need
Python callables or nested objects a JSON command cannot express, plus an explicit
allow-list of PIL image operations.
"""
from __future__ import annotations

import difflib
import inspect
from functools import lru_cache
from typing import Any, Callable

import torch
from torch import nn

#: nn.Module classes that are containers or need other modules/callables as arguments.
_LAYER_EXCLUDE = {"Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
                  "Container", "Transformer", "TransformerEncoder", "TransformerDecoder",
                  "AdaptiveLogSoftmaxWithLoss", "LazyLinear", "LazyConv1d", "LazyConv2d", "LazyConv3d",
                  "LazyConvTranspose1d", "LazyConvTranspose2d", "LazyConvTranspose3d",
                  "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d", "LazyInstanceNorm1d",
                  "LazyInstanceNorm2d", "LazyInstanceNorm3d"}
#: Optimizers that need a closure (LBFGS), sparse gradients (SparseAdam) or 2-D-only params (Muon).
_OPTIM_EXCLUDE = {"Optimizer", "LBFGS", "SparseAdam", "Muon"}
#: Schedulers taking lambdas or other schedulers.
_SCHED_EXCLUDE = {"LRScheduler", "_LRScheduler", "LambdaLR", "MultiplicativeLR", "ChainedScheduler",
                  "SequentialLR"}
#: v2 transforms taking callables/transform lists, or meant for boxes, videos and batches.
_TRANSFORM_EXCLUDE = {"Transform", "Lambda", "Compose", "RandomApply", "RandomChoice", "RandomOrder",
                      "ClampBoundingBoxes", "ClampKeyPoints", "ConvertBoundingBoxFormat", "SanitizeBoundingBoxes",
                      "SanitizeKeyPoints", "SetClampingMode", "RandomIoUCrop", "UniformTemporalSubsample",
                      "CutMix", "MixUp", "FiveCrop", "TenCrop", "LinearTransformation", "ToPILImage",
                      "PILToTensor", "ToTensor", "ToImage", "ToPureTensor"}

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
_DTYPES = {"float32": torch.float32, "float": torch.float32, "float16": torch.float16,
           "bfloat16": torch.bfloat16, "float64": torch.float64, "uint8": torch.uint8}


def close_matches(name: str, choices: list[str] | tuple[str, ...], n: int = 3) -> list[str]:
    """Close matches for a misspelt name, case-insensitively (``relu`` → ``ReLU``)."""
    lower = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(str(name).lower(), list(lower), n=n, cutoff=0.6)
    return [lower[h] for h in hits]


def _classes(module: Any, base: type, exclude: set[str]) -> dict[str, type]:
    out = {}
    for n in dir(module):
        obj = getattr(module, n)
        if n.startswith("_") or n in exclude or not inspect.isclass(obj):
            continue
        if issubclass(obj, base):
            out[n] = obj
    return out


@lru_cache(maxsize=None)
def layers() -> dict[str, type[nn.Module]]:
    """Layer classes from ``torch.nn`` (losses and containers left out)."""
    return {k: v for k, v in _classes(nn, nn.Module, _LAYER_EXCLUDE).items() if not k.endswith("Loss")
            and k != "NLLLoss2d"}


@lru_cache(maxsize=None)
def losses() -> dict[str, type[nn.Module]]:
    """Loss classes from ``torch.nn`` (``CrossEntropyLoss``, ``NLLLoss`` …)."""
    return {k: v for k, v in _classes(nn, nn.Module, _LAYER_EXCLUDE).items() if k.endswith("Loss")
            and k != "NLLLoss2d"}


@lru_cache(maxsize=None)
def optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    """Optimizer classes from ``torch.optim``."""
    return _classes(torch.optim, torch.optim.Optimizer, _OPTIM_EXCLUDE)


@lru_cache(maxsize=None)
def schedulers() -> dict[str, type]:
    """LR scheduler classes from ``torch.optim.lr_scheduler`` (``ReduceLROnPlateau`` included)."""
    from torch.optim import lr_scheduler as S

    out = _classes(S, S.LRScheduler, _SCHED_EXCLUDE)
    out["ReduceLROnPlateau"] = S.ReduceLROnPlateau
    return out


@lru_cache(maxsize=None)
def transforms() -> dict[str, type]:
    """Image transforms from ``torchvision.transforms.v2`` applied to uint8 CHW tensors."""
    from torchvision.transforms import v2

    return _classes(v2, v2.Transform, _TRANSFORM_EXCLUDE)


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
        return lambda im, box: im.crop(tuple(int(v) for v in box))
    if name == "resize":
        return lambda im, size: im.resize(tuple(int(v) for v in size))
    if name == "reduce":
        return lambda im, factor: im.reduce(int(factor))
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


TABLES: dict[str, Callable[[], dict[str, Any]]] = {
    "layer": layers, "loss": losses, "optimizer": optimizers, "scheduler": schedulers,
    "transform": transforms, "pil_op": pil_ops,
}


def coerce_params(cls: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Turn JSON values into what constructors expect (lists → tuples, dtype names → dtypes)."""
    out = {}
    for k, v in params.items():
        if k == "dtype" and isinstance(v, str):
            if v not in _DTYPES:
                raise ValueError(f"dtype {v!r} is not one of {', '.join(_DTYPES)}")
            v = _DTYPES[v]
        elif isinstance(v, list) and k not in ("mean", "std", "milestones", "normalized_shape", "fill",
                                                  "box", "size"):
            v = tuple(v)
        out[k] = v
    if getattr(cls, "__name__", "") == "ToDtype" and "scale" not in out:
        out["scale"] = True  # uint8 → float in [0, 1], what users mean by "to float"
    return out


def signature_params(cls: Any) -> tuple[list[str], list[str], bool]:
    """(all parameter names, required names, accepts **kwargs) of a class or function."""
    target = cls.__init__ if inspect.isclass(cls) else cls
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return [], [], True
    names, required, var_kw = [], [], False
    params = list(sig.parameters.values())
    for i, p in enumerate(params):
        if (inspect.isclass(cls) and i == 0 and p.name == "self") or p.kind == p.VAR_POSITIONAL:
            continue
        if not inspect.isclass(cls) and i == 0:
            continue  # PIL ops: the image
        if p.kind == p.VAR_KEYWORD:
            var_kw = True
            continue
        names.append(p.name)
        if p.default is p.empty:
            required.append(p.name)
    return names, required, var_kw
