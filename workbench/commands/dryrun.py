"""Dry runs of a baseline command's parts: what :meth:`TrainingCommand.validate` constructs and runs.

Everything runs on dummies of the command's own sizes, so a command that would fail (or train
on garbage) fails here, before a run exists:

- PIL operations on a small image; transforms on a uint8 image of ``image_size`` — first on the
  ``meta`` device (shapes only, no memory), so a transform that would make a 100,000-pixel side
  is refused before anything is allocated, then for real, where an output with NaN or infinite
  values (``Normalize`` with ``std`` 0) is refused too;
- the model on the ``meta`` device: its parameters and activations against this machine's
  memory (a layer of 10⁹ outputs or a batch of a million images is refused, not allocated),
  then for real on the images the transforms *and* the eval transforms produce, in the dtype
  they produce (a ``ToDtype float64`` image does not meet float32 weights mid-run);
- the loss on the model's outputs (finite, no silent broadcasting), the optimizer, and the
  scheduler stepped once per epoch of the command (``OneCycleLR`` too short for ``epochs``, a
  ``gamma`` that drives the learning rate to infinity).
"""
from __future__ import annotations

import math
import warnings
from typing import Any

from ..registry import Component, ConfigError, unknown_name
from .runner_options import checkable

#: Precisions under which Lightning converts input batches to the model's dtype.
_CONVERTING_PRECISIONS = ("64-true", "64", "16-true", "bf16-true", "transformer-engine")
#: Bytes a training step keeps per parameter (weight, gradient, two optimizer moments) …
_BYTES_PER_PARAM = 16
#: … and per activation value (the forward value kept for backward, and its gradient).
_BYTES_PER_ACTIVATION = 8
#: Scheduler steps dry-run at most (one per epoch).
_MAX_SCHEDULER_STEPS = 10_000


def problems(cmd: Any, n_labels: int) -> list[ConfigError]:
    """Every problem the dry runs find, in field order (runs inside the caller's seeded section)."""
    import torch

    from .. import registry

    found: list[ConfigError] = []

    def attempt(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ConfigError as exc:
            found.extend(exc.problems)
            return None

    for i, op in enumerate(cmd.pil_ops):
        attempt(check_pil_op, op, f"pil_ops[{i}]", cmd.channels)
    for i, layer in enumerate(cmd.model.layers or ()):
        if "device" in layer.params:
            found.append(ConfigError(f"model.layers[{i}].params.device", "the trainer places the model"
                                     " (trainer.accelerator); leave 'device' out", layer.params["device"]))
    train = attempt(check_transforms, cmd, "transforms")
    evals = attempt(check_transforms, cmd, "eval_transforms")
    default = ((cmd.channels, *cmd.image_hw), torch.uint8)
    attempt(check_model, cmd, n_labels, train or default, evals or train or default)
    opt = attempt(registry.build_component, checkable(cmd.optimizer), registry.optimizers(), "optimizer",
                  "optimizer", [torch.nn.Parameter(torch.zeros(2))])  # (lr "find": a typical lr stands in)
    if cmd.scheduler is not None and opt is not None:
        sched = attempt(registry.build_component, cmd.scheduler, registry.schedulers(), "scheduler", "scheduler", opt)
        if sched is not None:
            attempt(check_schedule, cmd, opt, sched)
    return found


def check_pil_op(op: Component, path: str, channels: int) -> None:
    from PIL import Image

    from .. import registry

    ops = registry.pil_ops()
    if op.name not in ops:
        raise unknown_name(f"{path}.name", op.name, list(ops), "PIL operation")
    registry.check_params(ops[op.name], op.params, path, op.name)
    try:
        ops[op.name](Image.new("RGB" if channels == 3 else "L", (48, 48)), **op.params)
    except Exception as exc:
        raise ConfigError(f"{path}.params", f"{op.name} rejected {op.params}: {registry.why(exc)}", op.params) from None


def check_transforms(cmd: Any, key: str) -> tuple[tuple[int, ...], Any]:
    """Run a transform list on a dummy uint8 image of the command's size: ``(output shape, dtype)``."""
    import torch

    from .. import registry
    from .fields import MAX_IMAGE_SIDE

    objs = [registry.build_component(t, registry.transforms(), f"{key}[{i}]", "transform")
            for i, t in enumerate(getattr(cmd, key))]
    for _ in range(4):  # random transforms draw their sizes: a few draws, on the meta device (free)
        x: Any = torch.zeros(cmd.channels, *cmd.image_hw, dtype=torch.uint8, device="meta")
        for i, (t, obj) in enumerate(zip(getattr(cmd, key), objs)):
            try:
                x = obj(x)
            except Exception:
                break  # an op without a meta kernel: the real run below reports what is wrong
            if isinstance(x, torch.Tensor) and x.ndim == 3 and max(x.shape[1:]) > MAX_IMAGE_SIDE:
                raise ConfigError(f"{key}[{i}]", f"{t.name} makes images of shape {tuple(x.shape)}; the largest"
                                  f" side allowed is {MAX_IMAGE_SIDE}", t.to_dict())
    x = torch.zeros(cmd.channels, *cmd.image_hw, dtype=torch.uint8)
    for i, (t, obj) in enumerate(zip(getattr(cmd, key), objs)):
        try:
            x = obj(x)
        except Exception as exc:
            hint = ""
            if "float" in str(exc) and getattr(x, "dtype", None) == torch.uint8:
                hint = "; images are uint8 here: put {'name': 'ToDtype', 'params': {'dtype': 'float32'}} before it"
            raise ConfigError(f"{key}[{i}]", f"{t.name} failed on an image of shape {tuple(x.shape)} ({x.dtype}):"
                              f" {registry.why(exc)}{hint}", t.to_dict()) from None
        if isinstance(x, torch.Tensor) and x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ConfigError(f"{key}[{i}]", f"{t.name} turns an image into NaN or infinite values (a zero std"
                              " or scale?)", t.to_dict())
    if isinstance(x, torch.Tensor) and x.ndim == 3:
        return tuple(x.shape), x.dtype
    return (cmd.channels, *cmd.image_hw), torch.uint8


def _input_dtype(cmd: Any, key: str, dtype: Any) -> None:
    """Images reach the model as float32 (uint8 is scaled); another float dtype must match the weights."""
    import torch

    if dtype in (torch.uint8, torch.float32) or cmd.trainer.precision in _CONVERTING_PRECISIONS:
        return
    raise ConfigError(key, f"images reach the model as {str(dtype).removeprefix('torch.')} but its weights are"
                      f" float32 (precision {cmd.trainer.precision!r}); convert with ToDtype float32, or train"
                      " with a precision of that dtype ('64-true', 'bf16-true' …)", str(dtype))


def footprint(cmd: Any, n_labels: int, in_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(parameters, activation values per image)`` of the model, counted on the meta device."""
    import torch

    from ..nets.builder import build_model

    acts = [math.prod(in_shape)]

    def count(module: Any, args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            acts[0] += out[0].numel() if out.ndim else 1

    spec = cmd.model
    if spec.layers is None and "weights_path" in spec.params:  # shapes only: no file is read
        spec = spec.model_copy(update={"params": {k: v for k, v in spec.params.items() if k != "weights_path"}})
    with torch.device("meta"):
        model = build_model(spec, n_labels=n_labels, in_shape=in_shape, path="model")
        model.eval()
        hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
        with torch.no_grad():
            model(torch.zeros(1, *in_shape))
    for h in hooks:
        h.remove()
    return sum(p.numel() for p in model.parameters()), acts[0]


def check_memory(cmd: Any, n_labels: int, in_shape: tuple[int, ...]) -> None:
    """The model and one batch fit in this machine's memory (estimated on the meta device)."""
    from .machine import gib, memory_bytes

    try:
        params, acts = footprint(cmd, n_labels, in_shape)
    except ConfigError:
        return  # a layer without a meta kernel: the real dry run reports what is wrong with the model
    p_bytes, a_bytes = params * _BYTES_PER_PARAM, acts * cmd.batch_size * _BYTES_PER_ACTIVATION
    have = memory_bytes(cmd.trainer.accelerator)
    if p_bytes + a_bytes > 0.9 * have:
        # blame the batch when one image would fit, else the model
        field = "batch_size" if p_bytes + a_bytes / cmd.batch_size <= 0.9 * have else "model"
        raise ConfigError(field, f"training needs about {gib(p_bytes + a_bytes)} ({params:,} parameters: "
                          f"{gib(p_bytes)}; a batch of {cmd.batch_size} images: {gib(a_bytes)}); this machine has"
                          f" {gib(have)}", cmd.batch_size if field == "batch_size" else cmd.model.to_dict())


Images = tuple[tuple[int, ...], Any]  #: (shape, dtype) of the images a transform list produces


def check_model(cmd: Any, n_labels: int, train: Images, evals: Images) -> None:
    """Check the model's memory, then build and dry-run it on train and eval images, then the loss."""
    import torch

    from .. import registry
    from ..nets.builder import build_model

    (in_shape, dtype), (eval_shape, eval_dtype) = train, evals
    check_memory(cmd, n_labels, in_shape)
    _input_dtype(cmd, "transforms", dtype)
    _input_dtype(cmd, "eval_transforms", eval_dtype)
    model = build_model(cmd.model, n_labels=n_labels, in_shape=in_shape, path="model")
    crit = registry.build_component(cmd.criterion, registry.losses(), "criterion", "loss")
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(2, *in_shape))
        if eval_shape != in_shape:
            _eval_images(model, eval_shape, in_shape, n_labels)
        try:  # the loss sees what training will give it: logits and class-index targets
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)  # silent broadcasting is a wrong loss
                loss = crit(out, torch.zeros(2, dtype=torch.long))
        except Exception as exc:
            raise ConfigError("criterion", f"{cmd.criterion.name} cannot compare model outputs of shape"
                              f" {tuple(out.shape)} with class-index targets of shape (2,): {registry.why(exc)}",
                              cmd.criterion.to_dict()) from None
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all()):
            raise ConfigError("criterion.params", f"{cmd.criterion.name} gives a NaN or infinite loss on the model's"
                              " outputs (zero class weights?)", cmd.criterion.params)


def _eval_images(model: Any, eval_shape: tuple[int, ...], in_shape: tuple[int, ...], n_labels: int) -> None:
    import torch

    from .. import registry

    try:
        out = model(torch.zeros(2, *eval_shape))
    except Exception as exc:
        raise ConfigError("eval_transforms", f"the model is built for images of shape {in_shape} (after"
                          f" 'transforms') and cannot take the eval images of shape {eval_shape}:"
                          f" {registry.why(exc)}", list(eval_shape)) from None
    if tuple(out.shape) != (2, n_labels):
        raise ConfigError("eval_transforms", f"on eval images of shape {eval_shape} the model outputs"
                          f" {tuple(out.shape)}, not (N, {n_labels})", list(eval_shape))


def check_schedule(cmd: Any, opt: Any, sched: Any) -> None:
    """Step the scheduler once per epoch (as training will); the learning rate must stay finite."""
    from .. import registry

    plateau = type(sched).__name__ == "ReduceLROnPlateau"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for epoch in range(min(cmd.epochs, _MAX_SCHEDULER_STEPS)):
                opt.step()
                sched.step(1.0) if plateau else sched.step()
                lrs = [g["lr"] for g in opt.param_groups]
                if not all(math.isfinite(float(lr)) for lr in lrs):
                    raise ConfigError("scheduler.params", f"{cmd.scheduler.name} drives the learning rate to"
                                      f" {lrs[0]} by epoch {epoch + 1}", cmd.scheduler.params)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError("scheduler.params", f"{cmd.scheduler.name} fails within {cmd.epochs} epochs (it steps"
                          f" once per epoch): {registry.why(exc)}", cmd.scheduler.params) from None


def check_episode_memory(cmd: Any) -> None:
    """A few-shot command's meta-batch (and test batch) fits in memory (Conv-4 counted on the meta device).

    MAML-style learners keep every inner step's graph for the meta-gradient, so their
    activations count ``inner_steps + 1`` times.
    """
    import torch

    from ..nets.backbones import conv4
    from .machine import gib, memory_bytes

    side, ch, e = cmd.image_size, cmd.channels, cmd.episodes
    acts = [ch * side * side]

    def count(module: Any, args: Any, out: Any) -> None:
        acts[0] += out[0].numel() if isinstance(out, torch.Tensor) and out.ndim else 0

    with torch.device("meta"):
        net = conv4(ch, 0, cmd.model.params.hidden or cmd.traits.hidden, side)
        for m in net.modules():
            if not list(m.children()):
                m.register_forward_hook(count)
        with torch.no_grad():
            net(torch.zeros(1, ch, side, side))
    params = sum(p.numel() for p in net.parameters()) * _BYTES_PER_PARAM
    inner = cmd.traits.learner.endswith(":MAML")
    train_imgs = (cmd.finetune.batch_size if cmd.traits.learner.endswith(":Finetune") else
                  cmd.meta_batch_images("train"))
    test_imgs = cmd.meta_batch_images("test")
    train = train_imgs * acts[0] * _BYTES_PER_ACTIVATION * ((cmd.maml.inner_steps + 1) if inner else 1)
    test = test_imgs * acts[0] * _BYTES_PER_ACTIVATION * (((cmd.maml.test_inner_steps or 0) + 1) if inner else 1)
    have = memory_bytes(cmd.trainer.accelerator)
    if params > 0.5 * have:
        raise ConfigError("model.params.hidden", f"Conv-4 of width {cmd.model.params.hidden} has"
                          f" {params // _BYTES_PER_PARAM:,} parameters ({gib(params)} to train); this machine has"
                          f" {gib(have)}", cmd.model.params.hidden)
    need, which = max((train + params, "meta-training"), (test + params, "testing"))
    if need > 0.9 * have:
        raise ConfigError("episodes", f"{which} needs about {gib(need)} per step ({max(train_imgs, test_imgs):,}"
                          f" images of {ch}×{side}×{side} through Conv-4 width {net.features[0][0].out_channels});"
                          f" this machine has {gib(have)}", e.to_dict())
