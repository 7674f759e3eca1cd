"""A corpus of malformed training commands, each with the field path its error must name.

Issue 12's reviewer tried 143 malformed commands through the API and 30 passed validation (they
ended ``failed`` at train time or trained on garbage). This corpus holds those kinds and more —
non-finite numbers anywhere, seeds numpy refuses, hardware this machine lacks, strategies gone
from Lightning 2, transforms whose output the model cannot take, memory bombs, hostile JSON
shapes — as mutations of two valid base commands. ``tests/hostile/test_commands.py`` runs every
case through ``workbench.commands.parse`` and the runner's pre-run check (``training.prepare``)
and asserts a ConfigError naming ``path``, raised fast, with no run created.

A case's ``command`` is a dict, JSON text (``str``), or any other Python value; ``base`` says which
data folder it is checked against (``"baseline"``: 4 classes × 6 images, ``"fewshot"``: 12
classes × 4 images, both 16 px).
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

INF, NAN = float("inf"), float("nan")
DELETE = object()

BASELINE: dict[str, Any] = {
    "name": "hostile-base",
    "image_size": 16,
    "model": {"layers": [
        {"name": "Conv2d", "params": {"in_channels": "auto", "out_channels": 4, "kernel_size": 3, "padding": 1}},
        {"name": "ReLU"},
        {"name": "MaxPool2d", "params": {"kernel_size": 2}},
        {"name": "Flatten"},
        {"name": "Linear", "params": {"in_features": "auto", "out_features": "n_labels"}},
    ]},
    "optimizer": {"name": "Adam", "params": {"lr": 0.01}},
    "batch_size": 8,
    "epochs": 1,
    "seed": 0,
    "trainer": {"accelerator": "cpu"},
}

FEWSHOT: dict[str, Any] = {
    "kind": "protonet", "name": "hostile-fewshot", "channels": 1, "image_size": 16,
    "split": {"train": 0.5, "val": 0.25, "test": 0.25},
    "episodes": {"n_way": 2, "k_shot": 1, "q_query": 1, "meta_batch": 2},
    "model": {"preset": "conv4", "params": {"hidden": 8}},
    "steps": 2, "val_every": 2, "val_episodes": 2, "test_episodes": 2, "trainer": {"accelerator": "cpu"},
}


@dataclass(frozen=True)
class Case:
    id: str
    command: Any
    path: str            #: the field path the ConfigError must name
    base: str = "baseline"
    needs_no_gpu: bool = False  #: refused only where there is no CUDA GPU
    needs_log: bool = False     #: refused when its run is created (it names another run of the log)


#: More training processes than this machine has cores (the issue's "devices: 16" on 2 cores).
TOO_MANY = len(os.sched_getaffinity(0)) + 1 if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) + 1


def put(d: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key (``model.layers.0.params.out_channels``); ``DELETE`` removes it."""
    parts = key.split(".")
    for p in parts[:-1]:
        d = d[int(p)] if isinstance(d, list) else d.setdefault(p, {})
    last: Any = int(parts[-1]) if isinstance(d, list) else parts[-1]
    if value is DELETE:
        del d[last]
    else:
        d[last] = value


def b(changes: dict[str, Any]) -> dict[str, Any]:
    """The baseline base command with dotted-key changes."""
    out = copy.deepcopy(BASELINE)
    for k, v in changes.items():
        put(out, k, v)
    return out


def f(changes: dict[str, Any]) -> dict[str, Any]:
    """The few-shot base command with dotted-key changes."""
    out = copy.deepcopy(FEWSHOT)
    for k, v in changes.items():
        put(out, k, v)
    return out


def layers(*extra: dict[str, Any], at: int = 3) -> list[dict[str, Any]]:
    """The base model's layers with ``extra`` inserted before Flatten."""
    base = copy.deepcopy(BASELINE["model"]["layers"])
    return base[:at] + list(extra) + base[at:]


def _deep(depth: int) -> Any:
    v: Any = 0.01
    for _ in range(depth):
        v = [v]
    return v


def _deep_dict(depth: int) -> dict[str, Any]:
    d: dict[str, Any] = {}
    cur = d
    for _ in range(depth):
        cur["a"] = {}
        cur = cur["a"]
    return d


TEN_MB = 10 * 1024 * 1024
_big_layers = json.dumps({**BASELINE, "model": {"layers": [{"name": "ReLU"}] * 700_000}})

CASES: list[Case] = [
    # -- the command's shape -------------------------------------------------------------------
    Case("json-list", "[]", ""),
    Case("json-null", "null", ""),
    Case("json-number", "42", ""),
    Case("json-string", '"baseline"', ""),
    Case("json-list-of-command", json.dumps([BASELINE]), ""),
    Case("python-list", [BASELINE], ""),
    Case("python-none", None, ""),
    Case("python-int", 7, ""),
    Case("bad-json-syntax", "{kind: baseline}", ""),
    Case("truncated-json", '{"epochs": 3', ""),
    Case("json-nan-literal", '{"seed": 0, "optimizer": {"name": "Adam", "params": {"lr": NaN}}}',
         "optimizer.params.lr"),
    Case("json-infinity-literal", '{"optimizer": {"name": "SGD", "params": {"lr": Infinity}}}', "optimizer.params.lr"),
    Case("json-1e400", '{"optimizer": {"name": "Adam", "params": {"lr": 1e400}}}', "optimizer.params.lr"),
    Case("json-duplicate-key", '{"epochs": 1, "epochs": 500}', "epochs"),
    Case("json-5000-digit-int", '{"epochs": ' + "9" * 5000 + "}", ""),
    Case("ten-mb-name", json.dumps({**BASELINE, "name": "x" * TEN_MB}), ""),
    Case("ten-mb-layers", _big_layers, ""),
    Case("ten-mb-dict-name", {**BASELINE, "name": "x" * TEN_MB}, "name"),
    Case("deep-json-text", "[" * 200_000 + "]" * 200_000, ""),
    Case("deep-json-object", '{"a":' * 100_000 + "1" + "}" * 100_000, ""),
    Case("deep-dict", _deep_dict(100_000), "a.a.a.a.a.a.a.a"),
    Case("deep-lr", b({"optimizer.params.lr": _deep(60)}), "optimizer.params.lr[0][0][0][0][0]"),
    Case("million-item-list", b({"pil_ops": [{"name": "invert"}] * 1_000_000}), "pil_ops"),
    Case("non-string-key", {**BASELINE, 5: "x"}, ""),
    Case("long-data-path", b({"data": "d" * 10_000}), "data"),
    # -- kind ----------------------------------------------------------------------------------
    Case("kind-typo", b({"kind": "mamal"}), "kind"),
    Case("kind-number", b({"kind": 5}), "kind"),
    Case("kind-null", b({"kind": None}), "kind"),
    Case("kind-empty", b({"kind": ""}), "kind"),
    # -- non-finite numbers anywhere -----------------------------------------------------------
    Case("lr-inf", b({"optimizer.params.lr": INF}), "optimizer.params.lr"),
    Case("lr-nan", b({"optimizer.params.lr": NAN}), "optimizer.params.lr"),
    Case("lr-neg-inf", b({"optimizer.params.lr": -INF}), "optimizer.params.lr"),
    Case("lr-negative", b({"optimizer.params.lr": -1.0}), "optimizer.params"),
    Case("lr-string", b({"optimizer.params.lr": "0.001"}), "optimizer.params"),
    Case("sgd-momentum-nan", b({"optimizer": {"name": "SGD", "params": {"lr": 0.1, "momentum": NAN}}}),
         "optimizer.params.momentum"),
    Case("sgd-momentum-negative", b({"optimizer": {"name": "SGD", "params": {"lr": 0.1, "momentum": -0.5}}}),
         "optimizer.params"),
    Case("adam-betas-nan", b({"optimizer.params.betas": [NAN, 0.999]}), "optimizer.params.betas[0]"),
    Case("adam-betas-out-of-range", b({"optimizer.params.betas": [1.5, 0.999]}), "optimizer.params"),
    Case("weight-decay-inf", b({"optimizer.params.weight_decay": INF}), "optimizer.params.weight_decay"),
    Case("adam-eps-nan", b({"optimizer.params.eps": NAN}), "optimizer.params.eps"),
    Case("label-smoothing-nan", b({"criterion": {"name": "CrossEntropyLoss", "params": {"label_smoothing": NAN}}}),
         "criterion.params.label_smoothing"),
    Case("label-smoothing-2", b({"criterion": {"name": "CrossEntropyLoss", "params": {"label_smoothing": 2.0}}}),
         "criterion"),
    Case("class-weights-zero", b({"criterion": {"name": "CrossEntropyLoss", "params": {"weight": [0.0] * 4}}}),
         "criterion.params"),
    Case("rotate-angle-nan", b({"pil_ops": [{"name": "rotate", "params": {"angle": NAN}}]}), "pil_ops[0].params.angle"),
    Case("rotate-angle-inf", b({"pil_ops": [{"name": "rotate", "params": {"angle": INF}}]}), "pil_ops[0].params.angle"),
    Case("random-rotation-nan", b({"transforms": [{"name": "RandomRotation", "params": {"degrees": NAN}}]}),
         "transforms[0].params.degrees"),
    Case("min-delta-nan", b({"early_stopping": {"min_delta": NAN}}), "early_stopping.min_delta"),
    Case("min-delta-inf", b({"early_stopping": {"min_delta": INF}}), "early_stopping.min_delta"),
    Case("clip-nan", b({"trainer.gradient_clip_val": NAN}), "trainer.gradient_clip_val"),
    Case("clip-inf", b({"trainer.gradient_clip_val": INF}), "trainer.gradient_clip_val"),
    Case("clip-negative", b({"trainer.gradient_clip_val": -1.0}), "trainer.gradient_clip_val"),
    Case("limit-train-nan", b({"trainer.limit_train_batches": NAN}), "trainer.limit_train_batches"),
    Case("limit-val-negative", b({"trainer.limit_val_batches": -1}), "trainer.limit_val_batches"),
    Case("limit-train-1.5", b({"trainer.limit_train_batches": 1.5}), "trainer.limit_train_batches"),
    Case("limit-val-2.5", b({"trainer.limit_val_batches": 2.5}), "trainer.limit_val_batches"),
    Case("time-limit-nan", b({"time_limit_s": NAN}), "time_limit_s"),
    Case("time-limit-inf", b({"time_limit_s": INF}), "time_limit_s"),
    Case("split-nan", b({"split": {"train": NAN, "val": 0.15, "test": 0.15}}), "split.train"),
    Case("split-sum", b({"split": {"train": 0.9, "val": 0.2, "test": 0.1}}), "split"),
    Case("split-negative", b({"split": {"train": 1.2, "val": -0.2, "test": 0.0}}), "split.train"),
    Case("split-train-zero", b({"split": {"train": 0.0, "val": 0.5, "test": 0.5}}), "split.train"),
    Case("steplr-gamma-nan", b({"scheduler": {"name": "StepLR", "params": {"step_size": 1, "gamma": NAN}}}),
         "scheduler.params.gamma"),
    Case("steplr-gamma-explodes", b({"epochs": 400, "scheduler": {"name": "StepLR",
                                                                   "params": {"step_size": 1, "gamma": 1e10}}}),
         "scheduler.params"),
    Case("onecycle-too-short", b({"epochs": 5, "scheduler": {"name": "OneCycleLR",
                                                              "params": {"max_lr": 0.1, "total_steps": 2}}}),
         "scheduler.params"),
    Case("normalize-mean-nan", b({"transforms": [{"name": "ToDtype", "params": {"dtype": "float32"}},
                                                 {"name": "Normalize", "params": {"mean": [NAN] * 3,
                                                                                  "std": [1.0] * 3}}]}),
         "transforms[1].params.mean[0]"),
    Case("normalize-std-zero", b({"transforms": [{"name": "ToDtype", "params": {"dtype": "float32"}},
                                                 {"name": "Normalize", "params": {"mean": [0.5] * 3,
                                                                                  "std": [0.0] * 3}}]}),
         "transforms[1]"),
    Case("dropout-p-nan", b({"model.layers": layers({"name": "Dropout", "params": {"p": NAN}})}),
         "model.layers[3].params.p"),
    Case("dropout-p-1.5", b({"model.layers": layers({"name": "Dropout", "params": {"p": 1.5}})}),
         "model.layers[3].params"),
    Case("leaky-slope-inf", b({"model.layers.1": {"name": "LeakyReLU", "params": {"negative_slope": INF}}}),
         "model.layers[1].params.negative_slope"),
    Case("batchnorm-eps-nan", b({"model.layers": layers({"name": "BatchNorm2d", "params": {"eps": NAN}}, at=1)}),
         "model.layers[1].params.eps"),
    Case("fs-inner-lr-nan", f({"kind": "maml", "maml": {"inner_lr": NAN}}), "maml.inner_lr", "fewshot"),
    Case("fs-inner-lr-inf", f({"kind": "maml", "maml": {"inner_lr": INF}}), "maml.inner_lr", "fewshot"),
    Case("fs-head-lr-nan", f({"kind": "finetune", "finetune": {"head_lr": NAN}}), "finetune.head_lr", "fewshot"),
    Case("fs-lr-inf", f({"optimizer": {"name": "Adam", "params": {"lr": INF}}}), "optimizer.params.lr", "fewshot"),
    Case("fs-time-limit-nan", f({"time_limit_s": NAN}), "time_limit_s", "fewshot"),
    Case("numpy-float32-nan", b({"optimizer.params.lr": np.float32("nan")}), "optimizer.params.lr"),
    Case("numpy-int64-seed-huge", b({"seed": np.uint64(2 ** 63 + 5)}), "seed"),
    # -- seeds ---------------------------------------------------------------------------------
    Case("seed-negative", b({"seed": -1}), "seed"),
    Case("seed-2-32", b({"seed": 2 ** 32}), "seed"),
    Case("seed-2-64", b({"seed": 2 ** 64}), "seed"),
    Case("seed-2-70", b({"seed": 2 ** 70}), "seed"),
    Case("seed-float", b({"seed": 1.5}), "seed"),
    Case("seed-string", b({"seed": "0"}), "seed"),
    Case("seed-bool", b({"seed": True}), "seed"),
    Case("fs-seed-2-40", f({"seed": 2 ** 40}), "seed", "fewshot"),
    Case("fs-glyph-seed-2-33", f({"data": "glyphs", "glyphs": {"seed": 2 ** 33}}), "glyphs.seed", "fewshot"),
    # -- hardware, strategy, precision ----------------------------------------------------------
    Case("accelerator-gpu", b({"trainer.accelerator": "gpu"}), "trainer.accelerator", needs_no_gpu=True),
    Case("accelerator-cuda", b({"trainer.accelerator": "cuda"}), "trainer.accelerator", needs_no_gpu=True),
    Case("accelerator-mps", b({"trainer.accelerator": "mps"}), "trainer.accelerator"),
    Case("accelerator-tpu", b({"trainer.accelerator": "tpu"}), "trainer.accelerator"),
    Case("accelerator-typo", b({"trainer.accelerator": "GPU"}), "trainer.accelerator"),
    Case("fs-accelerator-gpu", f({"trainer.accelerator": "gpu"}), "trainer.accelerator", "fewshot", True),
    Case("strategy-dp", b({"trainer.strategy": "dp"}), "trainer.strategy"),
    Case("strategy-horovod", b({"trainer.strategy": "horovod"}), "trainer.strategy"),
    Case("strategy-deepspeed", b({"trainer.strategy": "deepspeed"}), "trainer.strategy"),
    Case("strategy-fsdp-cpu", b({"trainer.strategy": "fsdp"}), "trainer.strategy"),
    Case("strategy-number", b({"trainer.strategy": 2}), "trainer.strategy"),
    Case("precision-transformer-engine", b({"trainer.precision": "transformer-engine"}), "trainer.precision"),
    Case("precision-8", b({"trainer.precision": 8}), "trainer.precision"),
    Case("precision-typo", b({"trainer.precision": "16-mixd"}), "trainer.precision"),
    Case("devices-more-than-cores", b({"trainer.devices": TOO_MANY}), "trainer.devices"),
    Case("devices-4096", b({"trainer.devices": 4096}), "trainer.devices"),
    Case("devices-zero", b({"trainer.devices": 0}), "trainer.devices"),
    Case("devices-minus-2", b({"trainer.devices": -2}), "trainer.devices"),
    Case("devices-minus-1-cpu", b({"trainer.devices": -1}), "trainer.devices"),
    Case("devices-list-cpu", b({"trainer.devices": [0, 1]}), "trainer.devices"),
    Case("devices-empty-list", b({"trainer.devices": []}), "trainer.devices"),
    Case("devices-string", b({"trainer.devices": "all"}), "trainer.devices"),
    Case("fs-devices-more-than-cores", f({"trainer.devices": TOO_MANY}), "trainer.devices", "fewshot"),
    Case("num-nodes-2", b({"trainer.num_nodes": 2}), "trainer.num_nodes"),
    Case("num-nodes-zero", b({"trainer.num_nodes": 0}), "trainer.num_nodes"),
    Case("log-every-zero", b({"trainer.log_every_n_steps": 0}), "trainer.log_every_n_steps"),
    Case("deterministic-string", b({"trainer.deterministic": "yes"}), "trainer.deterministic"),
    Case("trainer-max-epochs", b({"trainer.max_epochs": 5}), "trainer.max_epochs"),
    Case("trainer-not-object", b({"trainer": "cpu"}), "trainer"),
    Case("num-workers-negative", b({"num_workers": -1}), "num_workers"),
    Case("num-workers-float", b({"num_workers": 2.5}), "num_workers"),
    Case("threads-zero", b({"threads": 0}), "threads"),
    Case("threads-100000", b({"threads": 100_000}), "threads"),
    Case("fs-threads-more-than-cores", f({"threads": TOO_MANY}), "threads", "fewshot"),
    # -- sizes and memory ----------------------------------------------------------------------
    Case("image-size-100000", b({"image_size": 100_000}), "image_size"),
    Case("image-size-hw-100000", b({"image_size": [100_000, 2]}), "image_size"),
    Case("image-size-zero", b({"image_size": 0}), "image_size"),
    Case("image-size-one-item", b({"image_size": [16]}), "image_size"),
    Case("image-size-three-items", b({"image_size": [16, 16, 3]}), "image_size"),
    Case("image-size-1", b({"image_size": 1}), "model.layers[2]"),
    Case("fs-image-size-100000", f({"image_size": 100_000}), "image_size", "fewshot"),
    Case("fs-image-size-2", f({"image_size": 2}), "image_size", "fewshot"),
    Case("batch-size-billion", b({"batch_size": 10 ** 9}), "batch_size"),
    Case("batch-size-zero", b({"batch_size": 0}), "batch_size"),
    Case("epochs-zero", b({"epochs": 0}), "epochs"),
    Case("epochs-huge-int", b({"epochs": 10 ** 30}), "epochs"),
    Case("linear-billion-outputs", b({"model.layers": layers({"name": "Linear", "params": {"in_features": "auto",
                                                                                          "out_features": 10 ** 9}},
                                                             at=4)}), "model"),
    Case("conv-10e8-channels", b({"model.layers.0.params.out_channels": 10 ** 8}), "model"),
    Case("small-cnn-hidden-huge", b({"model": {"preset": "small_cnn", "params": {"hidden": 10 ** 6}}}), "model"),
    Case("fs-n-way-1000", f({"episodes.n_way": 1000}), "episodes.n_way", "fewshot"),
    Case("fs-n-way-7", f({"episodes.n_way": 7}), "episodes.n_way", "fewshot"),
    Case("fs-n-way-val", f({"episodes.n_way": 4}), "episodes.n_way", "fewshot"),
    Case("fs-test-n-way", f({"episodes.test_n_way": 5}), "episodes.test_n_way", "fewshot"),
    Case("fs-k-shot-1000", f({"episodes.k_shot": 1000}), "episodes.k_shot", "fewshot"),
    Case("fs-test-k-shot", f({"episodes.test_k_shot": 10}), "episodes.test_k_shot", "fewshot"),
    Case("fs-q-query-1e8", f({"episodes.q_query": 10 ** 8}), "episodes", "fewshot"),
    Case("fs-meta-batch-128gb", f({"episodes": {"n_way": 2, "k_shot": 1, "q_query": 1, "meta_batch": 10 ** 8}}),
         "episodes", "fewshot"),
    Case("fs-hidden-huge", f({"model.params.hidden": 10 ** 6}), "model.params.hidden", "fewshot"),
    Case("fs-maml-inner-steps-graph", f({"kind": "maml", "image_size": 256, "maml": {"inner_steps": 100000}}),
         "episodes", "fewshot"),
    Case("fs-steps-zero", f({"steps": 0}), "steps", "fewshot"),
    Case("fs-val-every-zero", f({"val_every": 0}), "val_every", "fewshot"),
    Case("fs-test-episodes-negative", f({"test_episodes": -1}), "test_episodes", "fewshot"),
    Case("fs-episodes-string", f({"episodes": "5way"}), "episodes", "fewshot"),
    Case("fs-n-way-1", f({"episodes.n_way": 1}), "episodes.n_way", "fewshot"),
    Case("fs-k-shot-zero", f({"episodes.k_shot": 0}), "episodes.k_shot", "fewshot"),
    # -- components ----------------------------------------------------------------------------
    Case("optimizer-typo", b({"optimizer.name": "Adamm"}), "optimizer.name"),
    Case("optimizer-lbfgs", b({"optimizer": {"name": "LBFGS", "params": {"lr": 1}}}), "optimizer.name"),
    Case("optimizer-param-typo", b({"optimizer.params.learning_rate": 0.1}), "optimizer.params.learning_rate"),
    Case("optimizer-params-list", b({"optimizer.params": [0.1]}), "optimizer.params"),
    Case("optimizer-eval", b({"optimizer.name": "__import__('os').system('id')"}), "optimizer.name"),
    Case("scheduler-plateau-no-val", b({"split": {"train": 0.8, "val": 0.0, "test": 0.2},
                                        "scheduler": {"name": "ReduceLROnPlateau"}}), "scheduler.name"),
    Case("early-stopping-no-val", b({"split": {"train": 0.8, "val": 0.0, "test": 0.2}, "early_stopping": True}),
         "early_stopping.monitor"),
    Case("scheduler-unknown", b({"scheduler": {"name": "CosineLR"}}), "scheduler.name"),
    Case("scheduler-missing-param", b({"scheduler": {"name": "StepLR"}}), "scheduler.params"),
    Case("scheduler-lambda", b({"scheduler": {"name": "LambdaLR", "params": {"lr_lambda": "lambda e: 0.9"}}}),
         "scheduler.name"),
    Case("criterion-bce-shape", b({"criterion": "BCELoss"}), "criterion"),
    Case("criterion-mse-broadcast", b({"criterion": "MSELoss"}), "criterion"),
    Case("criterion-unknown", b({"criterion": "FocalLoss"}), "criterion.name"),
    Case("identity-junk-params", b({"model.layers": layers({"name": "Identity", "params": {"junk": 1}})}),
         "model.layers[3].params.junk"),
    Case("tanh-junk-params", b({"model.layers.1": {"name": "Tanh", "params": {"inplace": True}}}),
         "model.layers[1].params.inplace"),
    Case("layer-device-meta", b({"model.layers.0.params.device": "meta"}), "model.layers[0].params.device"),
    Case("layer-device-cpu", b({"model.layers.0.params.device": "cpu"}), "model.layers[0].params.device"),
    Case("layer-sequential", b({"model.layers": layers({"name": "Sequential"})}), "model.layers[3].name"),
    Case("layer-os-system", b({"model.layers": layers({"name": "os.system", "params": {"command": "id"}})}),
         "model.layers[3].name"),
    Case("layer-unknown-param", b({"model.layers.0.params.kernal_size": 3}), "model.layers[0].params.kernal_size"),
    Case("layer-flatten-missing", b({"model.layers": [BASELINE["model"]["layers"][0], BASELINE["model"]["layers"][4]]}),
         "model.layers[1].params.in_features"),
    Case("model-no-output", b({"model.layers": BASELINE["model"]["layers"][:4]}), "model.layers[3]"),
    Case("model-preset-unknown", b({"model": "vgg99"}), "model.preset"),
    Case("resnet-weights-missing", b({"model": {"preset": "resnet18", "params": {"weights_path": "/no/such.pth"}}}),
         "model.params"),
    Case("transform-lambda", b({"transforms": [{"name": "Lambda", "params": {"lambd": "print"}}]}),
         "transforms[0].name"),
    Case("todtype-float64", b({"transforms": [{"name": "ToDtype", "params": {"dtype": "float64"}}]}), "transforms"),
    Case("todtype-float16", b({"transforms": [{"name": "ToDtype", "params": {"dtype": "float16"}}]}), "transforms"),
    Case("eval-todtype-float64", b({"eval_transforms": [{"name": "ToDtype", "params": {"dtype": "float64"}}]}),
         "eval_transforms"),
    Case("todtype-unknown", b({"transforms": [{"name": "ToDtype", "params": {"dtype": "complex128"}}]}),
         "transforms[0].params"),
    Case("eval-resize-bigger", b({"eval_transforms": [{"name": "Resize", "params": {"size": [32, 32]}}]}),
         "eval_transforms"),
    Case("eval-centercrop-smaller", b({"eval_transforms": [{"name": "CenterCrop", "params": {"size": 8}}]}),
         "eval_transforms"),
    Case("eval-grayscale", b({"eval_transforms": [{"name": "Grayscale"}]}), "eval_transforms"),
    Case("transform-resize-100000", b({"transforms": [{"name": "Resize", "params": {"size": 100_000}}]}),
         "transforms[0]"),
    Case("transform-pad-million", b({"transforms": [{"name": "Pad", "params": {"padding": 10 ** 6}}]}),
         "transforms[0]"),
    Case("transform-randomcrop-too-big", b({"transforms": [{"name": "RandomCrop", "params": {"size": 64}}]}),
         "transforms[0]"),
    Case("transform-normalize-uint8", b({"transforms": [{"name": "Normalize", "params": {"mean": [0.5] * 3,
                                                                                       "std": [0.5] * 3}}]}),
         "transforms[0]"),
    Case("transform-unknown", b({"transforms": [{"name": "RandomFlip"}]}), "transforms[0].name"),
    Case("pil-crop-huge", b({"pil_ops": [{"name": "crop", "params": {"box": [0, 0, 10 ** 9, 10 ** 9]}}]}),
         "pil_ops[0].params"),
    Case("pil-resize-huge", b({"pil_ops": [{"name": "resize", "params": {"size": [100_000, 100_000]}}]}),
         "pil_ops[0].params"),
    Case("pil-reduce-zero", b({"pil_ops": [{"name": "reduce", "params": {"factor": 0}}]}), "pil_ops[0].params"),
    Case("pil-posterize-100", b({"pil_ops": [{"name": "posterize", "params": {"bits": 100}}]}), "pil_ops[0].params"),
    Case("pil-unknown", b({"pil_ops": [{"name": "eval", "params": {"source": "1"}}]}), "pil_ops[0].name"),
    Case("pil-filter-unknown", b({"pil_ops": [{"name": "filter", "params": {"name": "../../etc"}}]}),
         "pil_ops[0].params"),
    Case("pil-convert-bad-mode", b({"pil_ops": [{"name": "convert", "params": {"mode": "XYZ"}}]}), "pil_ops[0].params"),
    # -- issue 15's fields: init_from, loggers, lr "find", lr_find, checkpoint_every_s -----------------
    Case("init-from-number", b({"init_from": 5}), "init_from"),
    Case("init-from-empty-run", b({"init_from": {"run": ""}}), "init_from.run"),
    Case("init-from-checkpoint-typo", b({"init_from": {"run": "x", "checkpoint": "middle"}}), "init_from.checkpoint"),
    Case("init-from-freeze-negative", b({"init_from": {"run": "x", "freeze_epochs": -1}}), "init_from.freeze_epochs"),
    Case("init-from-freeze-nan", b({"init_from": {"run": "x", "freeze_steps": NAN}}), "init_from.freeze_steps"),
    Case("init-from-layers-empty", b({"init_from": {"run": "x", "layers": []}}), "init_from.layers"),
    Case("init-from-head-typo", b({"init_from": {"run": "x", "head": "keep"}}), "init_from.head"),
    Case("init-from-unknown-key", b({"init_from": {"run": "x", "strict": True}}), "init_from.strict"),
    Case("init-from-no-such-run", b({"init_from": "no-such-run"}), "init_from.run", needs_log=True),
    Case("init-from-path-traversal", b({"init_from": "../../../etc/passwd"}), "init_from.run", needs_log=True),
    Case("loggers-unknown", b({"loggers": ["wandb"]}), "loggers[0]"),
    Case("loggers-string", b({"loggers": "csv"}), "loggers"),
    Case("loggers-twice", b({"loggers": ["csv", "csv"]}), "loggers[1]"),
    Case("lr-find-typo", b({"optimizer.params.lr": "fnd"}), "optimizer.params"),
    Case("lr-find-min-nan", b({"optimizer.params.lr": "find", "lr_find": {"min_lr": NAN}}), "lr_find.min_lr"),
    Case("lr-find-max-inf", b({"optimizer.params.lr": "find", "lr_find": {"max_lr": INF}}), "lr_find.max_lr"),
    Case("lr-find-range-inverted", b({"optimizer.params.lr": "find", "lr_find": {"min_lr": 1.0, "max_lr": 0.1}}),
         "lr_find.min_lr"),
    Case("lr-find-num-training-2", b({"optimizer.params.lr": "find", "lr_find": {"num_training": 2}}),
         "lr_find.num_training"),
    Case("lr-find-mode-typo", b({"optimizer.params.lr": "find", "lr_find": {"mode": "log"}}), "lr_find.mode"),
    Case("checkpoint-every-nan", b({"checkpoint_every_s": NAN}), "checkpoint_every_s"),
    Case("checkpoint-every-negative", b({"checkpoint_every_s": -5}), "checkpoint_every_s"),
    Case("fs-init-from-number", f({"init_from": 5}), "init_from", "fewshot"),
    Case("fs-loggers-unknown", f({"loggers": ["neptune"]}), "loggers[0]", "fewshot"),
    # -- data, labels, other fields ------------------------------------------------------------
    Case("labels-empty", b({"labels": []}), "labels"),
    Case("labels-duplicate", b({"labels": ["circle", "circle"]}), "labels"),
    Case("labels-unknown", b({"labels": ["circle", "hexagon"]}), "labels[1]"),
    Case("label-map-unknown", b({"label_map": {"hexagon": "round"}}), "label_map.hexagon"),
    Case("label-map-one-class", b({"label_map": {"circle": "x", "square": "x", "triangle": "x", "cross": "x"}}),
         "data"),
    Case("data-missing", b({"data": "/no/such/folder"}), "data"),
    Case("early-stopping-monitor-typo", b({"early_stopping": {"monitor": "val_acc"}}), "early_stopping.monitor"),
    Case("early-stopping-patience-zero", b({"early_stopping": {"patience": 0}}), "early_stopping.patience"),
    Case("channels-4", b({"channels": 4}), "channels"),
    Case("top-k-zero", b({"top_k": 0}), "top_k"),
    Case("cache-string", b({"cache": "yes"}), "cache"),
    Case("name-number", b({"name": 123}), "name"),
    Case("unknown-field", b({"learning_rate": 0.1}), "learning_rate"),
    Case("fs-data-missing", f({"data": "/no/such/folder"}), "data", "fewshot"),
    Case("fs-alphabet-unknown", f({"data": "glyphs", "glyphs": {"alphabets": ["Klingon"]}}), "glyphs.alphabets[0]",
         "fewshot"),
    Case("fs-layers", f({"model": {"layers": [{"name": "ReLU"}]}}), "model.layers", "fewshot"),
    Case("fs-vmap-slow-bn", f({"kind": "maml", "maml": {"fast_bn": False, "vectorize": "vmap"}}), "maml.vectorize",
         "fewshot"),
    Case("fs-train-n-way-maml", f({"kind": "maml", "episodes.train_n_way": 3}), "episodes.train_n_way", "fewshot"),
    Case("fs-test-n-way-maml", f({"kind": "maml", "episodes.test_n_way": 3}), "episodes.test_n_way", "fewshot"),
    Case("fs-early-stopping", f({"early_stopping": {"patience": 2}}), "early_stopping", "fewshot"),
    Case("fs-scheduler", f({"scheduler": {"name": "StepLR", "params": {"step_size": 1}}}), "scheduler", "fewshot"),
    Case("fs-split-by-typo", f({"split_by": "alphabet"}), "split_by", "fewshot"),
    Case("fs-data-format-typo", f({"data_format": "imagenet"}), "data_format", "fewshot"),
    Case("fs-optimizer-typo", f({"optimizer": {"name": "Adamw"}}), "optimizer.name", "fewshot"),
    Case("fs-conv4-param", f({"model": {"preset": "conv4", "params": {"width": 8}}}), "model.params.width",
         "fewshot"),
]

#: Commands near the edges that must still be accepted (the checks refuse the hostile, not the unusual).
VALID: list[Case] = [
    Case("seed-max", b({"seed": 2 ** 32 - 1}), ""),
    Case("numpy-scalars", b({"epochs": np.int64(2), "optimizer.params.lr": np.float32(0.01)}), ""),
    Case("lr-find-and-loggers", b({"optimizer.params.lr": "find", "lr_find": {"num_training": 8},
                                   "loggers": ["csv"], "checkpoint_every_s": None}), ""),
    Case("lr-tiny", b({"optimizer.params.lr": 1e-12}), ""),
    Case("devices-one", b({"trainer.devices": 1}), ""),
    Case("devices-auto", b({"trainer.devices": "auto"}), ""),
    Case("accelerator-auto", b({"trainer.accelerator": "auto"}), ""),
    Case("precision-bf16-mixed", b({"trainer.precision": "bf16-mixed"}), ""),
    Case("float64-with-64-true", b({"trainer.precision": "64-true",
                                     "transforms": [{"name": "ToDtype", "params": {"dtype": "float64"}}]}), ""),
    Case("eval-crop-adaptive-model", b({"model": {"preset": "small_cnn", "params": {"hidden": 4}},
                                         "eval_transforms": [{"name": "CenterCrop", "params": {"size": 12}}]}), ""),
    Case("identity-no-params", b({"model.layers": layers({"name": "Identity"})}), ""),
    Case("image-size-hw", b({"image_size": [16, 20]}), ""),
    Case("pil-crop-inside", b({"pil_ops": [{"name": "crop", "params": {"box": [4, 4, 40, 40]}}]}), ""),
    Case("steplr-normal", b({"epochs": 30, "scheduler": {"name": "StepLR", "params": {"step_size": 5, "gamma": 0.5}}}),
         ""),
    Case("plateau-with-val", b({"scheduler": {"name": "ReduceLROnPlateau", "params": {"patience": 1}}}), ""),
    Case("epochs-many", b({"epochs": 100_000}), ""),
    Case("limit-batches-count-and-fraction", b({"trainer.limit_train_batches": 2, "trainer.limit_val_batches": 0.5}),
         ""),
    Case("fs-maml", f({"kind": "maml"}), "", "fewshot"),
    Case("fs-no-val-bigger-n-way", f({"episodes.n_way": 4, "val_episodes": 0, "test_episodes": 0}), "", "fewshot"),
    Case("fs-finetune", f({"kind": "finetune", "finetune": {"batch_size": 4, "head_steps": 2}}), "", "fewshot"),
]
