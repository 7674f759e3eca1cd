"""Few-shot training commands: configure, meta-train, evaluate (600 episodes, 95% CI) and adapt.

Kinds: ``maml`` (second order), ``fomaml`` (first order), ``metasgd`` (learned inner learning
rates), ``protonet`` and ``finetune`` (the "closer look" baseline). A command is a JSON object;
everything has a default, so ``{"kind": "protonet"}`` trains ProtoNet on the glyph benchmark::

    {"kind": "maml", "name": "maml-5w1s", "seed": 0,
     "data": "glyphs",                       # or a folder path (data_format: folder|omniglot|miniimagenet)
     "split": {"train": 0.65, "val": 0.1, "test": 0.25}, "split_by": "class",
     "episodes": {"n_way": 5, "k_shot": 1, "q_query": 15, "meta_batch": 16, "rotate": true},
     "model": {"preset": "conv4", "params": {"hidden": 32}},
     "optimizer": {"name": "Adam", "params": {"lr": 0.001}},
     "maml": {"inner_steps": 1, "inner_lr": 0.4, "test_inner_steps": 3},
     "steps": 2000, "val_every": 200, "val_episodes": 100, "test_episodes": 600,
     "trainer": {"accelerator": "auto"}}

``python -m workbench train --config maml.json`` and ``workbench.jobs.start_training`` hand
these kinds to :func:`train_from_command`, which records a run like every other learner
(config, seed, dataset fingerprint, the class splits, per-step meta-loss, periodic meta-val
accuracy, the trained weights and the 600-episode test result).
"""
from __future__ import annotations

import copy
import json
import math
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

KINDS = ("maml", "fomaml", "metasgd", "protonet", "finetune")
DATA_FORMATS = ("folder", "omniglot", "miniimagenet")
VECTORIZE = ("auto", "vmap", "loop")
#: Fields of the shared training command that few-shot kinds accept but do not use, with the
#: neutral values they may carry (anything else is an error rather than silently ignored).
_SHARED_UNUSED = {"labels": (None,), "scheduler": (None,), "pil_ops": ([], None), "transforms": ([], None),
                  "eval_transforms": ([], None), "early_stopping": (None, False)}
_SHARED_IGNORED = ("criterion", "batch_size", "epochs", "num_workers", "top_k", "cache")
WEIGHTS_FILE = "fewshot.pt"

try:  # one error type for every training command when the shared config module is there
    from ..config import ConfigError as _ConfigError
except Exception:  # pragma: no cover - only before workbench.config exists
    _ConfigError = None  # type: ignore[assignment]


def _close(name: str, choices: Sequence[str]) -> list[str]:
    import difflib

    return difflib.get_close_matches(str(name), [str(c) for c in choices], n=2, cutoff=0.6)


def config_error(path: str, message: str, value: Any = None, allowed: Sequence[Any] | None = None) -> Exception:
    """A :class:`workbench.config.ConfigError` (field path, value, allowed values, close matches)."""
    sugg = _close(value, allowed) if allowed is not None and isinstance(value, str) else []
    if _ConfigError is not None:
        return _ConfigError(path, message, value, allowed, sugg)
    text = f"{path}: {message}"
    if sugg:
        text += f"; did you mean {' or '.join(repr(s) for s in sugg)}?"
    if allowed:
        text += f" (allowed: {', '.join(map(str, allowed))})"
    return ValueError(text)


def _show(v: Any) -> str:
    r = repr(v)
    return (r[:60] + "…") if len(r) > 60 else r


def _int(d: Mapping, key: str, path: str, default: int | None, lo: int = 1, allow_none: bool = False):
    v = d.get(key, default)
    if v is None and (allow_none or default is None):
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise config_error(f"{path}{key}", f"expected an integer ≥ {lo}{' or null' if allow_none else ''}, "
                           f"got {_show(v)}", v)
    return v


def _num(d: Mapping, key: str, path: str, default: float | None, lo: float = 0.0, allow_none: bool = False):
    v = d.get(key, default)
    if v is None and (allow_none or default is None):
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < lo:
        raise config_error(f"{path}{key}", f"expected a number ≥ {lo:g}, got {_show(v)}", v)
    return float(v)


def _bool(d: Mapping, key: str, path: str, default: bool) -> bool:
    v = d.get(key, default)
    if not isinstance(v, bool):
        raise config_error(f"{path}{key}", f"expected true or false, got {_show(v)}", v, [True, False])
    return v


def _choice(d: Mapping, key: str, path: str, default: str, allowed: Sequence[str]) -> str:
    v = d.get(key, default)
    if v not in allowed:
        raise config_error(f"{path}{key}", f"unknown value {v!r}", v, list(allowed))
    return v


def _obj(d: Mapping, key: str, known: Sequence[str]) -> dict:
    v = d.get(key) or {}
    if not isinstance(v, Mapping):
        raise config_error(key, f"expected an object, got {_show(v)}", v)
    for k in v:
        if k not in known:
            raise config_error(f"{key}.{k}", f"unknown field {k!r}", k, list(known))
    return dict(v)


@dataclass
class FewShotCommand:
    """A validated few-shot training command (``from_dict`` / ``to_dict`` round-trip through JSON)."""

    kind: str = "maml"
    name: str | None = None
    seed: int = 0
    data: str = "glyphs"
    data_format: str = "folder"
    glyphs: dict = field(default_factory=lambda: {"alphabets": None, "max_per_alphabet": None, "seed": 0})
    image_size: int = 28
    channels: int = 1
    split: dict = field(default_factory=lambda: {"train": 0.65, "val": 0.1, "test": 0.25})
    split_by: str = "class"
    episodes: dict = field(default_factory=lambda: {
        "n_way": 5, "k_shot": 1, "q_query": 15, "meta_batch": 16, "rotate": True, "train_n_way": None,
        "test_n_way": None, "test_k_shot": None, "test_q_query": None})
    model: dict = field(default_factory=lambda: {"preset": "conv4", "params": {"hidden": 32}})
    optimizer: dict = field(default_factory=lambda: {"name": "Adam", "params": {"lr": 1e-3}})
    maml: dict = field(default_factory=lambda: {"inner_steps": 1, "inner_lr": 0.4, "test_inner_steps": 3,
                                                "test_inner_lr": None, "vectorize": "auto", "fast_bn": "auto"})
    finetune: dict = field(default_factory=lambda: {"batch_size": 64, "head_steps": 100, "head_lr": 0.01})
    steps: int = 1000
    val_every: int = 100
    val_episodes: int = 100
    test_episodes: int = 600
    time_limit_s: float | None = None
    trainer: dict = field(default_factory=dict)

    # -- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_dict(to_dict())`` gives an equal command."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | "FewShotCommand") -> "FewShotCommand":
        """Parse and validate; errors name the field path, the value and the allowed values."""
        if isinstance(d, FewShotCommand):
            return copy.deepcopy(d)
        if not isinstance(d, Mapping):
            raise config_error("", f"a few-shot command is a JSON object, got {_show(d)}", d)
        d = json.loads(json.dumps(dict(d)))  # plain JSON values, and a private copy
        c = cls()
        known = [f.name for f in fields(cls)] + list(_SHARED_UNUSED) + list(_SHARED_IGNORED)
        for k in d:
            if k not in known:
                raise config_error(k, f"unknown field {k!r} for a few-shot command", k, known)
        for k, neutral in _SHARED_UNUSED.items():
            if k in d and d[k] not in neutral:
                raise config_error(k, f"{k!r} is not used by few-shot kinds (leave it out)", d[k])
        c.kind = _choice(d, "kind", "", "maml", KINDS)
        if d.get("name") is not None and not isinstance(d["name"], str):
            raise config_error("name", f"expected a string, got {_show(d['name'])}", d["name"])
        c.name = d.get("name")
        c.seed = _int(d, "seed", "", 0, lo=0)
        data = d.get("data", "glyphs")
        if data is None:
            data = "glyphs"
        if not isinstance(data, str) or not data:
            raise config_error("data", f"expected 'glyphs' or a folder path, got {_show(data)}", data)
        c.data = data
        c.data_format = _choice(d, "data_format", "", "folder", DATA_FORMATS)
        g = _obj(d, "glyphs", ("alphabets", "max_per_alphabet", "seed"))
        alph = g.get("alphabets")
        if alph is not None:
            from ..data.glyphs import ALPHABETS

            if not isinstance(alph, list) or not alph:
                raise config_error("glyphs.alphabets", f"expected a list of alphabet names, got {_show(alph)}", alph)
            for i, a in enumerate(alph):
                if a not in ALPHABETS:
                    raise config_error(f"glyphs.alphabets[{i}]", f"unknown alphabet {a!r}", a, list(ALPHABETS))
        c.glyphs = {"alphabets": alph, "max_per_alphabet": _int(g, "max_per_alphabet", "glyphs.", None, lo=1,
                                                                allow_none=True),
                    "seed": _int(g, "seed", "glyphs.", 0, lo=0)}
        default_size, default_ch = (84, 3) if c.data_format == "miniimagenet" else (28, 1)
        size = d.get("image_size", default_size)
        if isinstance(size, list) and len(size) == 2 and size[0] == size[1]:
            size = size[0]  # [h, w] from the shared command: square only here
        c.image_size = _int({"image_size": size}, "image_size", "", default_size, lo=4)
        c.channels = _int(d, "channels", "", default_ch, lo=1)
        if c.channels not in (1, 3):
            raise config_error("channels", "expected 1 (grayscale) or 3 (RGB)", c.channels, [1, 3])
        sp = _obj(d, "split", ("train", "val", "test"))
        c.split = {k: _num(sp, k, "split.", dflt) for k, dflt in (("train", 0.65), ("val", 0.1), ("test", 0.25))}
        if abs(sum(c.split.values()) - 1) > 1e-6:
            raise config_error("split", f"fractions must add up to 1, got {sum(c.split.values()):g}", c.split)
        if c.split["train"] <= 0:
            raise config_error("split.train", "the meta-train fraction must be above 0", c.split["train"])
        c.split_by = _choice(d, "split_by", "", "class", ("class", "group"))
        e = _obj(d, "episodes", list(c.episodes))
        c.episodes = {
            "n_way": _int(e, "n_way", "episodes.", 5, lo=2), "k_shot": _int(e, "k_shot", "episodes.", 1),
            "q_query": _int(e, "q_query", "episodes.", 15), "meta_batch": _int(e, "meta_batch", "episodes.", 16),
            "rotate": _bool(e, "rotate", "episodes.", True),
            "train_n_way": _int(e, "train_n_way", "episodes.", None, lo=2, allow_none=True),
            "test_n_way": _int(e, "test_n_way", "episodes.", None, lo=2, allow_none=True),
            "test_k_shot": _int(e, "test_k_shot", "episodes.", None, allow_none=True),
            "test_q_query": _int(e, "test_q_query", "episodes.", None, allow_none=True)}
        if c.kind != "protonet" and c.episodes["train_n_way"] not in (None, c.episodes["n_way"]):
            raise config_error("episodes.train_n_way", f"only ProtoNet trains with another N than it tests "
                               f"(kind {c.kind!r})", c.episodes["train_n_way"])
        if c.kind in ("maml", "fomaml", "metasgd") and c.episodes["test_n_way"] not in (None, c.episodes["n_way"]):
            raise config_error("episodes.test_n_way", "MAML's head is n_way wide: test_n_way must equal n_way",
                               c.episodes["test_n_way"], [c.episodes["n_way"]])
        m = d.get("model") or {"preset": "conv4"}
        if isinstance(m, str):
            m = {"preset": m}
        if not isinstance(m, Mapping):
            raise config_error("model", f"expected an object with 'preset' and 'params', got {_show(m)}", m)
        for k in m:
            if k not in ("preset", "params", "layers"):
                raise config_error(f"model.{k}", f"unknown field {k!r}", k, ["preset", "params"])
        if m.get("layers") is not None:
            raise config_error("model.layers", "few-shot kinds use the Conv-4 preset, not a layer list",
                               m["layers"], ["conv4"])
        preset = m.get("preset", "conv4")
        if preset != "conv4":
            raise config_error("model.preset", f"unknown few-shot backbone {preset!r}", preset, ["conv4"])
        mp = m.get("params") or {}
        if not isinstance(mp, Mapping):
            raise config_error("model.params", f"expected an object, got {_show(mp)}", mp)
        for k in mp:
            if k != "hidden":
                raise config_error(f"model.params.{k}", f"unknown Conv-4 parameter {k!r} (channels, image size "
                                   "and classes come from the command)", k, ["hidden"])
        default_hidden = 64 if c.kind in ("protonet", "finetune") else 32
        c.model = {"preset": "conv4", "params": {"hidden": _int(mp, "hidden", "model.params.", default_hidden)}}
        o = d.get("optimizer", c.optimizer)
        if isinstance(o, str):
            o = {"name": o, "params": {}}
        if not isinstance(o, Mapping) or "name" not in o:
            raise config_error("optimizer", f"expected {{'name': ..., 'params': {{...}}}}, got {_show(o)}", o)
        op = o.get("params", {k: v for k, v in o.items() if k != "name"}) or {}
        _check_optimizer(o["name"], op)
        c.optimizer = {"name": o["name"], "params": dict(op)}
        mm = _obj(d, "maml", list(c.maml))
        c.maml = {"inner_steps": _int(mm, "inner_steps", "maml.", 1, lo=0),
                  "inner_lr": _num(mm, "inner_lr", "maml.", 0.4),
                  "test_inner_steps": _int(mm, "test_inner_steps", "maml.", 3, lo=0, allow_none=True),
                  "test_inner_lr": _num(mm, "test_inner_lr", "maml.", None, allow_none=True),
                  "vectorize": _choice(mm, "vectorize", "maml.", "auto", VECTORIZE),
                  "fast_bn": mm.get("fast_bn", "auto")}
        if c.maml["fast_bn"] not in (True, False, "auto"):
            raise config_error("maml.fast_bn", f"unknown value {c.maml['fast_bn']!r}", c.maml["fast_bn"],
                               [True, False, "auto"])
        if c.maml["fast_bn"] is False and c.maml["vectorize"] != "loop":
            raise config_error("maml.vectorize", "fast_bn=false needs vectorize 'loop' (vmap over nn.BatchNorm2d "
                               "gives wrong second-order gradients)", c.maml["vectorize"], ["loop"])
        ft = _obj(d, "finetune", list(c.finetune))
        c.finetune = {"batch_size": _int(ft, "batch_size", "finetune.", 64),
                      "head_steps": _int(ft, "head_steps", "finetune.", 100),
                      "head_lr": _num(ft, "head_lr", "finetune.", 0.01)}
        c.steps = _int(d, "steps", "", 1000)
        c.val_every = _int(d, "val_every", "", min(100, c.steps))
        c.val_episodes = _int(d, "val_episodes", "", 100, lo=0)
        c.test_episodes = _int(d, "test_episodes", "", 600, lo=0)
        c.time_limit_s = _num(d, "time_limit_s", "", None, lo=1, allow_none=True)
        t = d.get("trainer") or {}
        if not isinstance(t, Mapping):
            raise config_error("trainer", f"expected an object of Trainer options, got {_show(t)}", t)
        c.trainer = _check_trainer(dict(t))
        return c

    # -- derived ------------------------------------------------------------------------
    @property
    def first_order(self) -> bool:
        return self.kind == "fomaml"

    @property
    def run_name(self) -> str:
        e = self.episodes
        return self.name or f"{self.kind}-{e['n_way']}w{e['k_shot']}s"


def _check_optimizer(name: Any, params: Any) -> None:
    try:
        from ..registry import optimizers

        table = optimizers()
    except Exception:
        import torch

        table = {n: getattr(torch.optim, n) for n in ("Adam", "AdamW", "SGD", "RMSprop")}
    if name not in table:
        raise config_error("optimizer.name", f"unknown optimizer {name!r}", name, sorted(table))
    if not isinstance(params, Mapping):
        raise config_error("optimizer.params", f"expected an object, got {_show(params)}", params)
    import inspect

    allowed = [p for p in inspect.signature(table[name]).parameters if p not in ("self", "params")]
    for k in params:
        if k not in allowed:
            raise config_error(f"optimizer.params.{k}", f"{name} has no parameter {k!r}", k, allowed)


_TRAINER_KEYS = ("accelerator", "devices", "strategy", "num_nodes", "precision", "log_every_n_steps",
                 "gradient_clip_val", "limit_train_batches", "limit_val_batches", "deterministic")


def _check_trainer(t: dict) -> dict:
    for k in t:
        if k not in _TRAINER_KEYS:
            raise config_error(f"trainer.{k}", f"unknown Trainer option {k!r}", k, list(_TRAINER_KEYS))
    try:  # reuse the shared checks (accelerators, strategies, precisions …) when available
        from ..config import _trainer
    except Exception:
        _trainer = None
    if _trainer is not None:
        _trainer(t)
    return {k: v for k, v in t.items() if v is not None}


def parse_command(command: Mapping[str, Any] | FewShotCommand | str | Path) -> FewShotCommand:
    """A :class:`FewShotCommand` from a dict, a command, JSON text or a JSON file path."""
    if isinstance(command, (str, Path)):
        text = str(command).strip()
        if not text.startswith("{"):
            text = Path(text).expanduser().read_text(encoding="utf-8")
        try:
            command = json.loads(text)
        except json.JSONDecodeError as exc:
            raise config_error("", f"not valid JSON: {exc.msg} at line {exc.lineno}", text[:60]) from None
    return FewShotCommand.from_dict(command)


# -- data -----------------------------------------------------------------------------------

def build_source(cmd: FewShotCommand, data: Any = None):
    """The image source a command trains on, and the predefined class → split map (if any).

    ``data`` (from the caller) overrides ``cmd.data``: a folder path, a
    :class:`~workbench.data.episodes.TensorSource` / ``FolderSource``, or
    :class:`~workbench.data.glyphs.Glyphs`.
    """
    from ..data.episodes import FolderSource, TensorSource
    from ..data.glyphs import Glyphs, load_glyphs

    if isinstance(data, Glyphs):
        return data.to_source(), None
    if isinstance(data, (TensorSource, FolderSource)):
        return data, None
    where = str(data) if data is not None else cmd.data
    if where == "glyphs":
        g = cmd.glyphs
        return load_glyphs(seed=g["seed"], alphabets=g["alphabets"], max_per_alphabet=g["max_per_alphabet"]).to_source(), None
    if cmd.data_format == "omniglot":
        from ..data.omniglot import omniglot_source

        return omniglot_source(where, image_size=cmd.image_size), None
    if cmd.data_format == "miniimagenet":
        from ..data.omniglot import miniimagenet_source

        return miniimagenet_source(where, image_size=cmd.image_size)
    if not Path(where).expanduser().is_dir():
        raise config_error("data", f"{where!r} is neither 'glyphs' nor an existing folder", where, ["glyphs"])
    return FolderSource(where, image_size=cmd.image_size, channels=cmd.channels,
                        min_per_class=cmd.episodes["k_shot"] + 1), None


def make_splits(cmd: FewShotCommand, source, predefined: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """The class-disjoint splits for a command (a pure function of the seed and the class list)."""
    from ..data.episodes import split_classes

    s = cmd.split
    return split_classes(source.classes, seed=cmd.seed, fractions=(s["train"], s["val"], s["test"]),
                         groups=source.groups, by=cmd.split_by, predefined=predefined)


def make_datamodule(cmd: FewShotCommand, source, splits: Mapping[str, Sequence[str]]):
    from ..data.episodes import EpisodicDataModule

    e = cmd.episodes
    return EpisodicDataModule(
        source, splits, n_way=e["n_way"], k_shot=e["k_shot"], q_query=e["q_query"], meta_batch=e["meta_batch"],
        train_tasks=cmd.steps * e["meta_batch"], val_episodes=cmd.val_episodes, test_episodes=cmd.test_episodes,
        seed=cmd.seed, rotate=e["rotate"], test_n_way=e["test_n_way"], test_k_shot=e["test_k_shot"],
        test_q_query=e["test_q_query"], train_n_way=e["train_n_way"],
        flat_batch_size=cmd.finetune["batch_size"] if cmd.kind == "finetune" else None)


def build_module(cmd: FewShotCommand, n_train_classes: int | None = None):
    """The LightningModule for a command's kind."""
    from .finetune import Finetune
    from .maml import MAML
    from .protonet import ProtoNet

    h = cmd.model["params"]["hidden"]
    opt = (cmd.optimizer["name"], cmd.optimizer["params"])
    if cmd.kind in ("maml", "fomaml", "metasgd"):
        m = cmd.maml
        return MAML(n_way=cmd.episodes["n_way"], in_channels=cmd.channels, image_size=cmd.image_size, hidden=h,
                    inner_steps=m["inner_steps"], inner_lr=m["inner_lr"], test_inner_steps=m["test_inner_steps"],
                    test_inner_lr=m["test_inner_lr"], first_order=cmd.kind == "fomaml",
                    learn_inner_lr=cmd.kind == "metasgd", optimizer=opt[0], optimizer_params=opt[1],
                    vectorize=m["vectorize"], fast_bn=m["fast_bn"])
    if cmd.kind == "protonet":
        return ProtoNet(in_channels=cmd.channels, image_size=cmd.image_size, hidden=h, optimizer=opt[0],
                        optimizer_params=opt[1])
    return Finetune(n_classes=int(n_train_classes or 1), in_channels=cmd.channels, image_size=cmd.image_size,
                    hidden=h, head_steps=cmd.finetune["head_steps"], head_lr=cmd.finetune["head_lr"],
                    optimizer=opt[0], optimizer_params=opt[1])


def _module_class(kind: str):
    from .finetune import Finetune
    from .maml import MAML
    from .protonet import ProtoNet

    return {"protonet": ProtoNet, "finetune": Finetune}.get(kind, MAML)


# -- live curves --------------------------------------------------------------------------------

def live_curves(every: int = 10, title: str | None = None):
    """A Lightning callback redrawing meta-loss and meta-val accuracy in the notebook as training runs.

    Outside IPython it only collects the history (``.history``); pass it as
    ``train_from_command(..., callbacks=[live_curves()])``.
    """
    import pytorch_lightning as pl

    class LiveCurves(pl.Callback):
        def __init__(self) -> None:
            self.history: dict[str, list[tuple[int, float]]] = {"train_loss": [], "val_accuracy": []}
            self._handle = None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            v = trainer.callback_metrics.get("train_loss")
            if v is not None:
                self.history["train_loss"].append((trainer.global_step, float(v)))
            if trainer.global_step % every == 0:
                self.draw()

        def on_validation_epoch_end(self, trainer, pl_module) -> None:
            v = trainer.callback_metrics.get("val_accuracy")
            if v is not None and not trainer.sanity_checking:
                self.history["val_accuracy"].append((trainer.global_step, float(v)))

        def on_train_end(self, trainer, pl_module) -> None:
            self.draw()

        def draw(self) -> None:
            try:
                from IPython import get_ipython
                from IPython.display import display
            except ImportError:
                return
            if get_ipython() is None:
                return
            import matplotlib.pyplot as plt

            fig, (a, b) = plt.subplots(1, 2, figsize=(9, 2.8))
            for ax, key, label in ((a, "train_loss", "meta-train loss"), (b, "val_accuracy", "meta-val accuracy")):
                pts = self.history[key]
                if pts:
                    ax.plot(*zip(*pts), marker="o" if key == "val_accuracy" else None, ms=3)
                ax.set_xlabel("meta-iteration")
                ax.set_title(label)
            if title:
                fig.suptitle(title)
            fig.tight_layout()
            if self._handle is None:
                self._handle = display(fig, display_id=True)
            else:
                self._handle.update(fig)
            plt.close(fig)

    return LiveCurves()


# -- training -------------------------------------------------------------------------------

def _callbacks(stop_event: threading.Event | None, time_limit_s: float | None):
    import pytorch_lightning as pl

    class _Stop(pl.Callback):
        """Ends training at a step boundary when the job's stop flag is set or time is up."""

        def __init__(self) -> None:
            self.t0 = time.monotonic()
            self.reason: str | None = None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if stop_event is not None and stop_event.is_set():
                self.reason = "stopped"
            elif time_limit_s is not None and time.monotonic() - self.t0 > time_limit_s:
                self.reason = "time_limit"
            if self.reason:
                trainer.should_stop = True

    return _Stop()


def train_from_command(command_dict: Mapping[str, Any] | FewShotCommand | str | Path, data: Any = None,
                       log=None, run=None, stop_event: threading.Event | None = None,
                       callbacks: Sequence[Any] = (), progress: bool = False) -> str:
    """Meta-train a few-shot learner from a command, record it as a run, return the run id.

    Args:
        command_dict: the command (dict, :class:`FewShotCommand`, JSON text or file path).
        data: overrides ``command.data`` (folder path, source or :class:`Glyphs`).
        log: the run log (default ``RunLog()``).
        run: an existing run (handle or id, e.g. ``queued`` by ``jobs.start_training``) to train into.
        stop_event: set it to stop at the next step; the run ends ``stopped`` with its weights saved.
        callbacks: extra Lightning callbacks (live plots).

    The run's record holds the command, seed, dataset fingerprint, the class ``splits``,
    per-step ``train_loss`` and per-validation ``val_accuracy``; ``fewshot.pt`` (weights) in
    its folder; when ``test_episodes > 0`` the test result (mean ± 95% CI, per-episode
    accuracies) in its summary, and status ``completed`` (else ``trained``).
    """
    import pytorch_lightning as pl
    import torch

    from ..data.episodes import check_disjoint, splits_fingerprint
    from ..runlog import Run, RunLog
    from ..runlog.lightning import WorkbenchLogger

    cmd = parse_command(command_dict)  # before anything is created: a bad command leaves no run
    log = log or RunLog()
    source, predefined = build_source(cmd, data)
    splits = make_splits(cmd, source, predefined)
    check_disjoint(splits)
    fp = dict(source.fingerprint())
    fp["splits_sha1"] = splits_fingerprint(splits)
    fp["split_counts"] = {k: len(v) for k, v in splits.items()}
    if run is None:
        run = log.start(cmd.run_name, cmd.kind, cmd.to_dict(), tags=("fewshot",), dataset=fp, seed=cmd.seed)
    else:
        if not isinstance(run, Run):
            run = log.handle(str(run))
        if run.status == "queued":
            run.set_status("running")
        run.update(config=cmd.to_dict(), dataset=fp, seed=cmd.seed)
    run.update(splits=splits, artifacts={"weights": WEIGHTS_FILE, "splits": "splits.json"})
    run.dir.mkdir(parents=True, exist_ok=True)
    (run.dir / "splits.json").write_text(json.dumps(splits), encoding="utf-8")
    try:
        pl.seed_everything(cmd.seed, workers=True, verbose=False)
        dm = make_datamodule(cmd, source, splits)
        module = build_module(cmd, n_train_classes=len(splits["train"]))
        stopper = _callbacks(stop_event, cmd.time_limit_s)
        tkw = dict(cmd.trainer)
        tkw.setdefault("log_every_n_steps", 1)
        has_val = cmd.val_episodes > 0 and len(splits["val"]) >= dm.test_n_way
        if cmd.kind == "finetune":
            # Plain mini-batch pre-training: `steps` optimizer steps over as many epochs as that takes.
            trainer_len = {"max_steps": cmd.steps, "max_epochs": -1}
            val = {"val_check_interval": None, "check_val_every_n_epoch": 1} if has_val else {}
        else:
            trainer_len = {"max_steps": cmd.steps, "max_epochs": 1}
            val = {"val_check_interval": min(cmd.val_every, cmd.steps)} if has_val else {}
        logger = WorkbenchLogger(cmd.run_name, kind=cmd.kind, config=cmd.to_dict(), log=log, run=run,
                                 finalize_status=None)
        trainer = pl.Trainer(logger=logger, callbacks=[stopper, *callbacks], enable_checkpointing=False,
                             enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
                             inference_mode=False, limit_val_batches=1.0 if has_val else 0, **trainer_len, **val,
                             **tkw)
        t0 = time.monotonic()
        trainer.fit(module, datamodule=dm)
        train_s = time.monotonic() - t0
        if trainer.global_rank != 0:
            return run.id
        torch.save({"kind": cmd.kind, "hparams": dict(module.hparams), "state_dict": module.state_dict()},
                   run.dir / WEIGHTS_FILE)
        val_hist = [m for m in log.read_metrics(run.id) if "val_accuracy" in m]
        summary: dict[str, Any] = {"steps": int(trainer.global_step), "train_seconds": round(train_s, 2),
                                   "stop_reason": stopper.reason}
        if val_hist:
            summary["final_val_accuracy"] = float(val_hist[-1]["val_accuracy"])
            summary["best_val_accuracy"] = max(float(e["val_accuracy"]) for e in val_hist)
        if stopper.reason == "stopped":
            run.finish("stopped", summary=summary)
            return run.id
        run.finish("trained", summary=summary)
        if cmd.test_episodes > 0 and len(splits["test"]) >= dm.test_n_way:
            evaluate(run.id, episodes=cmd.test_episodes, log=log, data=source, _module=module,
                     device=str(trainer.strategy.root_device))
        return run.id
    except BaseException as exc:
        try:
            if run.status in ("running", "testing", "queued"):
                msg = str(exc).strip().splitlines()
                run.finish("stopped" if isinstance(exc, KeyboardInterrupt) else "failed",
                           error=f"{type(exc).__name__}: {msg[0] if msg else ''}")
        finally:
            raise


# -- loading, evaluation, adaptation ------------------------------------------------------------

def load_run(run_ref: str, log=None, data: Any = None):
    """``(record, command, module, source, splits)`` of a trained few-shot run (``source`` is
    ``None`` when its data is not on this machine and ``data`` is not given)."""
    rec, cmd, module, _, splits = _load_for_adapt(run_ref, log)
    source = None
    if data is not None or cmd.data == "glyphs" or Path(cmd.data).expanduser().exists():
        source, _ = build_source(cmd, data)
    return rec, cmd, module, source, splits


def mean_ci95(accs: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% confidence half-width (1.96 · std / √n, the papers' convention)."""
    import numpy as np

    a = np.asarray(accs, dtype=float)
    if len(a) == 0:
        return math.nan, math.nan
    sd = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return float(a.mean()), 1.96 * sd / math.sqrt(len(a))


def evaluate(run_ref: str, episodes: int = 600, n_way: int | None = None, k_shot: int | None = None,
             q_query: int | None = None, split: str = "test", seed: int | None = None, log=None, data: Any = None,
             store: bool = True, device: str | None = None, _module=None) -> dict[str, Any]:
    """Mean accuracy ± 95% CI over ``episodes`` tasks of a trained run's held-out split.

    Tasks come from the split stored in the run (never re-drawn) and are reproducible from
    ``(seed, index)`` (default: the run's seed). The result, with the per-episode
    accuracies, goes into the run summary under ``fewshot_eval["<split>_<N>way<K>shot"]``;
    the command's own setting also sets ``test_accuracy`` / ``test_ci95``. ``device``: where
    to adapt (default: where the module is).
    """
    import torch

    from ..data.episodes import STREAMS, EpisodeSampler
    from ..runlog import RunLog

    log = log or RunLog()
    rec, cmd, module, source, splits = load_run(run_ref, log, data) if _module is None else (
        log.get(run_ref, metrics=False), None, _module, None, None)
    if _module is not None:
        cmd = FewShotCommand.from_dict(rec["config"])
        splits = rec.get("splits")
        source = build_source(cmd, data)[0]
    if source is None:
        raise FileNotFoundError(f"run {rec['id']}: its data {cmd.data!r} is not here; pass data=")
    if not splits or split not in splits:
        raise ValueError(f"run {rec['id']} stores no {split!r} split")
    e = cmd.episodes
    n = n_way or e["test_n_way"] or e["n_way"]
    k = k_shot or e["test_k_shot"] or e["k_shot"]
    q = q_query or e["test_q_query"] or e["q_query"]
    sampler = EpisodeSampler(source, splits[split], n, k, q, seed=cmd.seed if seed is None else seed,
                             stream=STREAMS[split])
    module.eval()
    dev = torch.device(device) if device else next(module.parameters()).device
    module.to(dev)
    accs: list[float] = []
    t0 = time.monotonic()
    with torch.enable_grad():
        for i in range(episodes):
            t = sampler.task(i)
            logits = module.task_logits(t.support_x.to(dev), t.support_y.to(dev), t.query_x.to(dev), n).detach()
            accs.append(float((logits.argmax(-1).cpu() == t.query_y).float().mean()))
    mean, ci = mean_ci95(accs)
    res = {"split": split, "n_way": n, "k_shot": k, "q_query": q, "episodes": episodes, "seed": sampler.seed,
           "mean": mean, "ci95": ci, "seconds": round(time.monotonic() - t0, 2),
           "accuracies": [round(a, 4) for a in accs]}
    if store:
        key = f"{split}_{n}way{k}shot"
        prev = log.get(rec["id"], metrics=False)
        evals = dict((prev.get("summary") or {}).get("fewshot_eval") or {})
        evals[key] = res
        summary = {"fewshot_eval": evals}
        default = (n == (e["test_n_way"] or e["n_way"]) and k == (e["test_k_shot"] or e["k_shot"]) and split == "test")
        if default:
            summary.update(test_accuracy=mean, test_ci95=ci, test_episodes=episodes)
        h = log.handle(rec["id"])
        status = log.get(rec["id"], metrics=False)["status"]
        if status in ("trained", "completed", "stopped"):
            h.set_status("testing", test_config={"episodes": episodes, "n_way": n, "k_shot": k, "q_query": q,
                                                  "split": split})
            h.finish("completed", summary=summary)
        else:
            h.update(summary={**(prev.get("summary") or {}), **summary})
    return res


class FewShotClassifier:
    """A classifier for new classes built by :func:`adapt` from a handful of labelled images.

    ``predict(images)`` returns class names; ``predict_proba(images)`` a ``[n, N]`` tensor.
    MAML scores with transductive BatchNorm, so pass the images to classify together.
    """

    def __init__(self, module, classes: list[Any], score: Callable[[Any], Any], image_size: int,
                 channels: int) -> None:
        self.module, self.classes, self._score = module, classes, score
        self.image_size, self.channels = image_size, channels

    def logits(self, images: Any):
        import torch

        with torch.enable_grad():
            return self._score(to_tensor_batch(images, self.image_size, self.channels)).detach()

    def predict_proba(self, images: Any):
        return self.logits(images).softmax(-1)

    def predict(self, images: Any) -> list[Any]:
        return [self.classes[int(i)] for i in self.logits(images).argmax(-1)]

    def __call__(self, images: Any):
        return self.predict(images)

    def __repr__(self) -> str:
        return f"FewShotClassifier({type(self.module).__name__}, classes={self.classes!r})"


def to_tensor_batch(images: Any, image_size: int, channels: int):
    """Images (tensor ``[n,C,H,W]``, PIL images or file paths) as a float batch in [0, 1]."""
    import numpy as np
    import torch

    if isinstance(images, torch.Tensor):
        x = images.float()
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.max() > 1.5:
            x = x / 255.0
        if x.shape[-1] != image_size or x.shape[-2] != image_size:
            x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear",
                                                align_corners=False)
        if x.shape[1] != channels:
            x = x.mean(1, keepdim=True) if channels == 1 else x.expand(-1, channels, -1, -1)
        return x
    from PIL import Image

    out = []
    for im in images:
        if not isinstance(im, Image.Image):
            with Image.open(im) as f:
                im = f.copy()
        im = im.convert("L" if channels == 1 else "RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
        a = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)
        out.append(a.unsqueeze(0) if a.ndim == 2 else a.permute(2, 0, 1))
    return torch.stack(out)


def adapt(run_ref: str, support_images: Any, support_labels: Sequence[Any], log=None,
          invert: bool | None = None) -> FewShotClassifier:
    """A classifier for new classes from K labelled images each, using a trained few-shot run.

    Args:
        run_ref: run id, id prefix or name.
        support_images: tensor ``[n, C, H, W]`` (0–1 or 0–255), PIL images or file paths.
        support_labels: any hashable labels (class names); their first-seen order is the class order.
        invert: turn dark-on-light photos into light-on-dark (the glyph convention); default:
            on for one-channel models fed with PIL images or paths.
    """
    import torch

    rec, cmd, module, _, _ = _load_for_adapt(run_ref, log)
    classes = list(dict.fromkeys(support_labels))
    n = len(classes)
    y = torch.tensor([classes.index(lab) for lab in support_labels])
    if invert is None:
        invert = cmd.channels == 1 and not isinstance(support_images, torch.Tensor)
    sx = to_tensor_batch(support_images, cmd.image_size, cmd.channels)
    if invert:
        sx = 1 - sx

    def prep(images):
        x = images
        return (1 - x) if invert else x

    from .maml import MAML

    if isinstance(module, MAML):
        if n != module.hparams.n_way:
            raise ValueError(f"support_labels: {n} classes given, this MAML run adapts {module.hparams.n_way}-way")
        with torch.enable_grad():
            adapted = module.adapt_params(sx, y)
        from torch.func import functional_call

        score = lambda x: functional_call(module.net, adapted, (prep(x),))  # noqa: E731
    else:
        with torch.enable_grad():
            if hasattr(module, "encoder"):
                from .protonet import prototypes, proto_logits

                with torch.no_grad():
                    protos = prototypes(module.encoder(sx), y, n)
                score = lambda x: proto_logits(module.encoder(prep(x)), protos)  # noqa: E731
            else:
                from .finetune import fit_head

                head = fit_head(module.features(sx), y, n, module.hparams.head_steps, module.hparams.head_lr)
                score = lambda x: head(module.features(prep(x)))  # noqa: E731
    return FewShotClassifier(module, classes, score, cmd.image_size, cmd.channels)


def _load_for_adapt(run_ref: str, log=None):
    """Load a run's weights without needing its training data."""
    import torch

    from ..runlog import RunLog

    log = log or RunLog()
    rec = log.get(run_ref, metrics=False)
    if rec.get("kind") not in KINDS:
        raise ValueError(f"run {rec['id']} is a {rec.get('kind')!r} run, not a few-shot one ({', '.join(KINDS)})")
    cmd = FewShotCommand.from_dict(rec["config"])
    wpath = Path(rec.get("dir") or log.run_dir(rec["id"])) / WEIGHTS_FILE
    if not wpath.is_file():
        raise FileNotFoundError(f"run {rec['id']} has no trained weights ({wpath.name}); status {rec['status']!r}")
    ck = torch.load(wpath, map_location="cpu", weights_only=False)
    module = _module_class(ck["kind"])(**ck["hparams"])
    module.load_state_dict(ck["state_dict"])
    module.eval()
    return rec, cmd, module, None, rec.get("splits")
