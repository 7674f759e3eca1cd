"""Declarative layer lists → ``nn.Sequential``, with shape inference and a dry-run check.

A model spec is a preset (``{"preset": "conv4", "params": {"hidden": 32}}``) or a list
of ``torch.nn`` layers::

    [{"name": "Conv2d", "params": {"in_channels": "auto", "out_channels": 16, "kernel_size": 3}},
     {"name": "BatchNorm2d", "params": {"num_features": "auto"}},
     {"name": "ReLU"}, {"name": "Flatten"},
     {"name": "Linear", "params": {"in_features": "auto", "out_features": "n_labels"}}]

``"auto"`` is filled from the previous layer's *output shape*, found by running one
sample through the layers built so far — so it works across layer types (Conv2d →
Flatten → Linear needs ``C·H·W``, which no same-type rule could know). A size parameter
the layer requires and the user left out (``in_features`` …) is inferred the same way.
``"n_labels"`` becomes the number of classes.

Layers that draw random numbers in training (dropout, ``RReLU``) are built as variants with
their own generator (:func:`own_randomness`): each call draws a seed from it and runs under
:func:`workbench.runtime.seeded`, so a job's dropout masks never depend on what other jobs in
the process draw. The generator is seeded when the layer is built — inside the job's seeded
initialisation, so from the command's seed.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import torch
from pydantic import ValidationError, model_validator
from torch import nn

from .. import registry, runtime
from ..registry import Component, ConfigError, Strict, build_component, check_params, show, unknown_name
from .backbones import PRESETS

#: torch.nn layers that draw from torch's global RNG in training mode.
RANDOM_LAYERS = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout", "RReLU")


class ModelSpec(Strict):
    """A preset (``small_cnn``, ``conv4``, ``resnet18``) with params, or a list of layers.

    Accepts a preset name, a list of layers, or ``{"preset": …, "params": {…}}`` /
    ``{"layers": […]}``.
    """

    preset: str | None = "small_cnn"
    params: dict[str, Any] = {}
    layers: list[Component] | None = None

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, d: Any) -> Any:
        if isinstance(d, ModelSpec):
            return d
        if isinstance(d, str):
            return {"preset": d}
        if isinstance(d, list):
            d = {"layers": d}
        if not isinstance(d, Mapping):
            raise ConfigError("", f"expected a preset name, a list of layers or an object, got {show(d)}", d)
        d = dict(d)
        if d.get("layers") is not None:
            if d.get("preset") is not None:
                raise ConfigError("preset", "give either 'preset' or 'layers', not both", d["preset"])
            if not isinstance(d["layers"], list) or not d["layers"]:
                raise ConfigError("layers", f"expected a non-empty list of layers, got {show(d['layers'])}",
                                  d["layers"])
            d["preset"] = None
        elif "preset" not in d or d["preset"] is None:
            d["preset"] = "small_cnn"
        if d.get("params") is None:
            d["params"] = {}
        return d

    def to_dict(self) -> dict[str, Any]:
        """``{"layers": […]}`` or ``{"preset": …, "params": {…}}`` (what the command stores)."""
        if self.layers is not None:
            return {"layers": [c.to_dict() for c in self.layers]}
        return {"preset": self.preset, "params": copy.deepcopy(self.params)}

    @classmethod
    def parse(cls, d: Any, path: str = "model") -> "ModelSpec":
        """A spec from any accepted form; problems raise :class:`ConfigError` under ``path``."""
        if isinstance(d, ModelSpec):
            return d
        try:
            return cls.model_validate(d)
        except ValidationError as exc:
            raise registry.from_validation_error(exc, cls, path) from None


class _OwnRandomness:
    """Mixin for a random layer: its draws come from its own generator, not the process's."""

    _seed: int
    _gen: torch.Generator | None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)  # type: ignore[misc]
        if self._gen is None:
            self._gen = torch.Generator().manual_seed(self._seed)
        draw = int(torch.randint(0, 2 ** 62, (), generator=self._gen))
        with runtime.seeded(draw, x.device):
            return super().forward(x)  # type: ignore[misc]

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # type: ignore[misc]
        state["_gen"] = None  # a generator does not pickle; it is re-made from _seed
        return state


#: The own-generator variant of each random layer, named like the torch class (module-level, so
#: models pickle: ``workbench.nets.builder.Dropout`` …).
_VARIANTS = {name: type(name, (_OwnRandomness, getattr(nn, name)), {"__module__": __name__, "__qualname__": name})
             for name in RANDOM_LAYERS}
globals().update(_VARIANTS)


def own_randomness(layer: nn.Module) -> nn.Module:
    """Give a random layer (:data:`RANDOM_LAYERS`) its own generator, seeded now (in place).

    The seed is drawn from torch's RNG at build time — inside a job's seeded initialisation,
    so a pure function of the command's seed. Other layers are returned unchanged.
    """
    if type(layer).__name__ in RANDOM_LAYERS and not isinstance(layer, _OwnRandomness):
        layer.__class__ = _VARIANTS[type(layer).__name__]
        layer._seed = int(torch.randint(0, 2 ** 62, (), device="cpu"))  # also when built on the meta device
        layer._gen = None
    return layer


#: Parameters "auto" can fill, and how: from the channel dim (1) or the last dim of the input.
AUTO_RULES: dict[str, str] = {
    "in_channels": "channels", "num_features": "channels", "num_channels": "channels",
    "num_parameters": "channels", "in_features": "last", "in1_features": "last", "input_size": "last",
    "embed_dim": "last", "d_model": "last", "normalized_shape": "last",
}


def _auto_value(param: str, shape: tuple[int, ...], path: str, layer: str) -> Any:
    rule = AUTO_RULES.get(param)
    if rule is None:
        raise ConfigError(path, f"{layer}: 'auto' cannot be inferred for parameter {param!r}", "auto",
                          sorted(AUTO_RULES))
    if rule == "channels":
        if len(shape) < 2:
            raise ConfigError(path, f"{layer}: 'auto' {param} needs a channel dimension, input shape is {shape}",
                              "auto")
        return int(shape[1])
    if param == "in_features" and len(shape) > 2:
        # Linear on a feature map: almost always a missing Flatten. Say so rather than build a wrong model.
        raise ConfigError(path, f"{layer}: input shape is {shape} (not flat); add {{'name': 'Flatten'}} before"
                          f" this layer so in_features = {math.prod(shape[1:])}", "auto")
    return [int(shape[-1])] if param == "normalized_shape" else int(shape[-1])


def _resolve(comp: Component, shape: tuple[int, ...], n_labels: int, path: str) -> dict[str, Any]:
    params = dict(comp.params)
    names, required, _ = registry.signature_params(registry.layers()[comp.name])
    for k in required:
        if k not in params and k in AUTO_RULES:
            params[k] = "auto"
    for k, v in list(params.items()):
        if v == "auto":
            params[k] = _auto_value(k, shape, f"{path}.params.{k}", comp.name)
        elif v == "n_labels":
            params[k] = n_labels
    return params


def _dry(layer: nn.Module, x: torch.Tensor, path: str, name: str) -> torch.Tensor:
    try:
        with torch.no_grad():
            out = layer(x)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(path, f"{name} cannot take input of shape {tuple(x.shape)}: {msg}", name) from None
    if not isinstance(out, torch.Tensor):
        raise ConfigError(path, f"{name} returns {type(out).__name__}, not a tensor; it cannot be used in a"
                          " layer list", name)
    return out


def _check_output(out: torch.Tensor, n_labels: int, path: str) -> None:
    if out.ndim != 2 or out.shape[1] != n_labels:
        hint = " (add Flatten and a Linear with out_features 'n_labels')" if out.ndim != 2 else \
            " (set the last layer's output size to 'n_labels')"
        raise ConfigError(path, f"the model outputs shape {tuple(out.shape)} but a classifier over {n_labels}"
                          f" classes must output (N, {n_labels}){hint}", tuple(out.shape))


def build_model(spec: ModelSpec | Mapping[str, Any] | list | str, n_labels: int,
                in_shape: tuple[int, int, int] = (3, 32, 32), path: str = "model",
                return_shapes: bool = False) -> nn.Module | tuple[nn.Module, list[dict[str, Any]]]:
    """Build a model from a spec and check it on one sample of ``in_shape`` (C, H, W).

    Returns the model (in train mode), or ``(model, shapes)`` where ``shapes`` lists each
    layer's output shape. Raises :class:`~workbench.config.ConfigError` naming the layer
    index, the parameter or the shapes when the spec is wrong.
    """
    spec = ModelSpec.parse(spec, path)
    x = torch.zeros(1, *in_shape)
    shapes: list[dict[str, Any]] = []
    if spec.layers is None:
        model = _build_preset(spec, n_labels, in_shape, path)
        model.eval()
        out = _dry(model, x, path, spec.preset or "model")
        _check_output(out, n_labels, path)
        shapes.append({"layer": spec.preset, "out_shape": tuple(out.shape)})
    else:
        table = registry.layers()
        built: list[nn.Module] = []
        for i, comp in enumerate(spec.layers):
            lp = f"{path}.layers[{i}]"
            if comp.name not in table:
                raise unknown_name(f"{lp}.name", comp.name, list(table), "layer")
            params = _resolve(comp, tuple(x.shape), n_labels, lp)
            layer = own_randomness(build_component(Component(comp.name, params), table, lp, "layer"))
            layer.eval()
            x = _dry(layer, x, lp, comp.name)
            built.append(layer)
            shapes.append({"index": i, "layer": comp.name, "out_shape": tuple(x.shape)})
        _check_output(x, n_labels, f"{path}.layers[{len(spec.layers) - 1}]")
        model = nn.Sequential(*built)
    model.train()
    return (model, shapes) if return_shapes else model


def _build_preset(spec: ModelSpec, n_labels: int, in_shape: tuple[int, int, int], path: str) -> nn.Module:
    if spec.preset not in PRESETS:
        raise unknown_name(f"{path}.preset", spec.preset, list(PRESETS), "preset")
    fn = PRESETS[spec.preset]
    params = {k: (n_labels if v == "n_labels" else v) for k, v in spec.params.items()}
    names, _, _ = registry.signature_params(fn)
    names = ["in_channels", *names]  # signature_params drops a function's first parameter
    # What the data decides is filled in; a user value that contradicts it is an error, not silently kept.
    derived = {"in_channels": in_shape[0], "n_out": n_labels, "image_size": in_shape[1]}
    for k, v in derived.items():
        if k not in names:
            continue
        if k in params and params[k] not in ("auto", v):
            raise ConfigError(f"{path}.params.{k}", f"{spec.preset}: {k}={params[k]!r} contradicts the data"
                              f" ({k} = {v}); leave it out or write 'auto'", params[k])
        params[k] = v
    check_params(fn, {k: v for k, v in params.items() if k != "in_channels"}, path, spec.preset)
    try:
        return fn(**params)
    except ConfigError:
        raise
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}.params", f"{spec.preset} rejected {spec.params}: {msg}", spec.params) from None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
