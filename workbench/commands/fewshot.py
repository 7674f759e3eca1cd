"""The few-shot family: meta-train on N-way K-shot episodes (``maml``, ``fomaml``, ``metasgd``,
``protonet``, ``finetune``). Everything has a default, so ``{"kind": "protonet"}`` trains ProtoNet
on the glyph benchmark::

    {"kind": "maml", "name": "maml-5w1s", "seed": 0,
     "data": "glyphs",                       # or a folder path (data_format: folder|omniglot|miniimagenet)
     "split": {"train": 0.65, "val": 0.1, "test": 0.25}, "split_by": "class",
     "episodes": {"n_way": 5, "k_shot": 1, "q_query": 15, "meta_batch": 16, "rotate": true},
     "model": {"preset": "conv4", "params": {"hidden": 32}},
     "optimizer": {"name": "Adam", "params": {"lr": 0.001}},
     "maml": {"inner_steps": 1, "inner_lr": 0.4, "test_inner_steps": 3},
     "steps": 2000, "val_every": 200, "val_episodes": 100, "test_episodes": 600}

What differs between the kinds is data in :data:`TRAITS` (the learner class, the default width,
whether the head fixes N), read by the checks below and by the learners — nothing branches on
the kind's name.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Mapping

from pydantic import BeforeValidator, Field, field_validator, model_validator

from ..registry import Component, ConfigError, close_matches, show, unknown_name
from .fields import MAX_IMAGE_SIDE, Command, Fraction, Section, Seed, Split, at_least, choice, expect, number_at_least


@dataclass(frozen=True)
class Traits:
    """What a few-shot kind is, as data."""

    learner: str              #: "module:Class" of its LightningModule
    hidden: int               #: default Conv-4 width
    fixed_head: bool          #: the head is n_way wide, so it scores n_way-way tasks only
    other_train_n_way: bool   #: may meta-train with another N than it tests
    first_order: bool = False
    learn_inner_lr: bool = False


_MAML = "workbench.learners.maml:MAML"
TRAITS: dict[str, Traits] = {
    "maml": Traits(_MAML, 32, fixed_head=True, other_train_n_way=False),
    "fomaml": Traits(_MAML, 32, fixed_head=True, other_train_n_way=False, first_order=True),
    "metasgd": Traits(_MAML, 32, fixed_head=True, other_train_n_way=False, learn_inner_lr=True),
    "protonet": Traits("workbench.learners.protonet:ProtoNet", 64, fixed_head=False, other_train_n_way=True),
    "finetune": Traits("workbench.learners.finetune:Finetune", 64, fixed_head=False, other_train_n_way=False),
}
KINDS = tuple(TRAITS)
DATA_FORMATS = ("folder", "omniglot", "miniimagenet")
VECTORIZE = ("auto", "vmap", "loop")
#: Fields of the baseline command few-shot kinds accept but do not use, with the neutral values
#: they may carry (anything else is an error rather than silently ignored) …
_SHARED_UNUSED = {"labels": (None,), "scheduler": (None,), "pil_ops": ([], None), "transforms": ([], None),
                  "eval_transforms": ([], None), "early_stopping": (None, False)}
#: … and the ones whose value does not matter here.
_SHARED_IGNORED = ("criterion", "batch_size", "epochs", "num_workers", "top_k", "cache")


class MetaSplit(Split):
    """Shares of *classes* for meta-train / meta-val / meta-test."""

    train: Fraction = 0.65
    val: Fraction = 0.1
    test: Fraction = 0.25


class Glyphs(Section):
    alphabets: list[str] | None = None
    max_per_alphabet: at_least(1, none=True) = None  # type: ignore[valid-type]
    seed: Seed = 0

    @field_validator("alphabets", mode="before")
    @classmethod
    def _known(cls, v: Any) -> Any:
        from ..data.glyphs import ALPHABETS

        if v is None:
            return v
        if not isinstance(v, list) or not v:
            raise ConfigError("", f"expected a list of alphabet names, got {show(v)}", v)
        for i, a in enumerate(v):
            if a not in ALPHABETS:
                raise ConfigError(f"[{i}]", f"unknown alphabet {a!r}", a, list(ALPHABETS),
                                  close_matches(str(a), list(ALPHABETS)))
        return v


class Episodes(Section):
    n_way: at_least(2) = 5  # type: ignore[valid-type]
    k_shot: at_least(1) = 1  # type: ignore[valid-type]
    q_query: at_least(1) = 15  # type: ignore[valid-type]
    meta_batch: at_least(1) = 16  # type: ignore[valid-type]
    #: Rotations as new meta-train classes; null = on for the glyph benchmark and Omniglot, off
    #: for other folders (a rotated class can be a held-out one: 6 → 9).
    rotate: Annotated[bool | None, expect("true, false or null", lambda v: v is None or isinstance(v, bool))] = None
    train_n_way: at_least(2, none=True) = None  # type: ignore[valid-type]
    test_n_way: at_least(2, none=True) = None  # type: ignore[valid-type]
    test_k_shot: at_least(1, none=True) = None  # type: ignore[valid-type]
    test_q_query: at_least(1, none=True) = None  # type: ignore[valid-type]


class Conv4Params(Section):
    hidden: at_least(1, none=True) = None  # type: ignore[valid-type]


def _conv4(v: Any) -> Any:
    v = {"preset": v} if isinstance(v, str) else v
    if not isinstance(v, Mapping):
        raise ConfigError("", f"expected an object with 'preset' and 'params', got {show(v)}", v)
    if v.get("layers") is not None:
        raise ConfigError("layers", "few-shot kinds use the Conv-4 preset, not a layer list", v["layers"], ["conv4"])
    if v.get("preset", "conv4") != "conv4":
        raise ConfigError("preset", f"unknown few-shot backbone {v['preset']!r}", v["preset"], ["conv4"])
    out = {k: x for k, x in v.items() if k != "layers"}
    if isinstance(out.get("params"), Mapping):
        bad = [k for k in out["params"] if k != "hidden"]
        if bad:
            raise ConfigError(f"params.{bad[0]}", f"unknown Conv-4 parameter {bad[0]!r} (channels, image size and"
                              " classes come from the command)", bad[0], ["hidden"])
    return out


class Conv4Spec(Section):
    preset: Literal["conv4"] = "conv4"
    params: Conv4Params = Field(default_factory=Conv4Params)


class MamlOptions(Section):
    inner_steps: at_least(0) = 1  # type: ignore[valid-type]
    inner_lr: number_at_least(0) = 0.4  # type: ignore[valid-type]
    test_inner_steps: at_least(0, none=True) = 3  # type: ignore[valid-type]
    test_inner_lr: number_at_least(0, none=True) = None  # type: ignore[valid-type]
    vectorize: Annotated[Literal[VECTORIZE], choice(VECTORIZE)] = "auto"  # type: ignore[valid-type]
    fast_bn: Annotated[bool | Literal["auto"], choice((True, False, "auto"))] = "auto"

    @model_validator(mode="after")
    def _vmap_needs_fast_bn(self) -> "MamlOptions":
        if self.fast_bn is False and self.vectorize != "loop":
            raise ConfigError("vectorize", "fast_bn=false needs vectorize 'loop' (vmap over nn.BatchNorm2d gives"
                              " wrong second-order gradients)", self.vectorize, ["loop"])
        return self


class FinetuneOptions(Section):
    batch_size: at_least(1) = 64  # type: ignore[valid-type]
    head_steps: at_least(1) = 100  # type: ignore[valid-type]
    head_lr: number_at_least(0) = 0.01  # type: ignore[valid-type]


def _check_optimizer(c: Component) -> Component:
    from ..registry import optimizers

    table = optimizers()
    if c.name not in table:
        raise unknown_name("name", c.name, list(table), "optimizer")
    allowed = [p for p in inspect.signature(table[c.name]).parameters if p not in ("self", "params")]
    for k in c.params:
        if k not in allowed:
            raise ConfigError(f"params.{k}", f"{c.name} has no parameter {k!r}", k, allowed, close_matches(k, allowed))
    return c


class FewShotCommand(Command):
    """A validated few-shot training command (``from_dict`` / ``to_dict`` round-trip through JSON)."""

    recipe = "workbench.learners.episode_recipe:EpisodeRecipe"

    kind: Annotated[Literal[KINDS], choice(KINDS)] = "maml"  # type: ignore[valid-type]
    # (before-validators run last-first: null becomes "glyphs", then the check)
    data: Annotated[str, expect("'glyphs' or a folder path", lambda v: isinstance(v, str) and bool(v)),
                    BeforeValidator(lambda v: "glyphs" if v is None else v)] = "glyphs"
    data_format: Annotated[Literal[DATA_FORMATS], choice(DATA_FORMATS)] = "folder"  # type: ignore[valid-type]
    glyphs: Glyphs = Field(default_factory=Glyphs)
    image_size: Annotated[int | None,  # square only: [h, h] from a baseline-style command is h
                          expect(f"an integer from 4 to {MAX_IMAGE_SIDE}",
                                 lambda v: v is None or (isinstance(v, int) and 4 <= v <= MAX_IMAGE_SIDE)),
                          BeforeValidator(lambda v: v[0] if isinstance(v, list) and len(v) == 2 and v[0] == v[1]
                                          else v)] = None
    channels: Annotated[int | None, expect("1 (grayscale) or 3 (RGB)",
                                           lambda v: v is None or (isinstance(v, int) and v in (1, 3)))] = None
    split: MetaSplit = Field(default_factory=MetaSplit)
    split_by: Annotated[Literal["class", "group"], choice(("class", "group"))] = "class"
    episodes: Episodes = Field(default_factory=Episodes)
    model: Annotated[Conv4Spec, BeforeValidator(_conv4)] = Field(default_factory=Conv4Spec)
    optimizer: Component = Field(default_factory=lambda: Component("Adam", {"lr": 1e-3}))
    maml: MamlOptions = Field(default_factory=MamlOptions)
    finetune: FinetuneOptions = Field(default_factory=FinetuneOptions)
    steps: at_least(1) = 1000  # type: ignore[valid-type]
    val_every: at_least(1, none=True) = None  # type: ignore[valid-type]
    val_episodes: at_least(0) = 100  # type: ignore[valid-type]
    test_episodes: at_least(0) = 600  # type: ignore[valid-type]

    @model_validator(mode="before")
    @classmethod
    def _shared_fields(cls, d: Any) -> Any:
        if not isinstance(d, Mapping):
            return d
        for k, neutral in _SHARED_UNUSED.items():
            if k in d and d[k] not in neutral:
                raise ConfigError(k, f"{k!r} is not used by few-shot kinds (leave it out)", d[k])
        return {k: v for k, v in d.items() if k not in _SHARED_UNUSED and k not in _SHARED_IGNORED}

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, v: Component) -> Component:
        return _check_optimizer(v)

    @model_validator(mode="after")
    def _defaults_and_kind_rules(self) -> "FewShotCommand":
        t, e = self.traits, self.episodes
        mini = self.data_format == "miniimagenet"
        self.image_size = self.image_size or (84 if mini else 28)
        self.channels = self.channels or (3 if mini else 1)
        self.model.params.hidden = self.model.params.hidden or t.hidden
        self.val_every = self.val_every or min(100, self.steps)
        if not t.other_train_n_way and e.train_n_way not in (None, e.n_way):
            raise ConfigError("episodes.train_n_way", f"only ProtoNet trains with another N than it tests (kind"
                              f" {self.kind!r})", e.train_n_way)
        if t.fixed_head and e.test_n_way not in (None, e.n_way):
            raise ConfigError("episodes.test_n_way", "MAML's head is n_way wide: test_n_way must equal n_way",
                              e.test_n_way, [e.n_way])
        return self

    # -- derived ----------------------------------------------------------------------
    @property
    def traits(self) -> Traits:
        return TRAITS[self.kind]

    @property
    def learner(self) -> str:
        return self.traits.learner

    @property
    def first_order(self) -> bool:
        return self.traits.first_order

    def display_name(self) -> str:
        return f"{self.kind}-{self.episodes.n_way}w{self.episodes.k_shot}s"

    @property
    def run_name(self) -> str:
        return self.name or self.display_name()

    def meta_batch_images(self, split: str = "train") -> int:
        """Images in one step's batch of tasks: meta-training, or a batch of test episodes."""
        e = self.episodes
        if split == "train":
            return e.meta_batch * (e.train_n_way or e.n_way) * (e.k_shot + e.q_query)
        return min(16, e.meta_batch) * (e.test_n_way or e.n_way) * ((e.test_k_shot or e.k_shot)
                                                                    + (e.test_q_query or e.q_query))

    def validate(self, n_labels: int | None = None) -> "FewShotCommand":  # type: ignore[override]
        """Checks beyond the field types: one step's tasks fit in this machine's memory."""
        from .dryrun import check_episode_memory

        check_episode_memory(self)
        return self

    def check(self, data: Any = None) -> "FewShotCommand":
        """The data exists (the glyph benchmark is generated on demand)."""
        from pathlib import Path

        where = self.data if data is None else data
        if isinstance(where, str) and where != "glyphs" and not Path(where).expanduser().is_dir():
            raise ConfigError("data", f"{where!r} is neither 'glyphs' nor an existing folder", where, ["glyphs"])
        return super().check(data)


__all__ = ["FewShotCommand", "TRAITS", "Traits", "KINDS"]
