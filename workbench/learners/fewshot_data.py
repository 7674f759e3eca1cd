"""Few-shot data: an image source, class-disjoint splits, rotations, episodes.

:func:`build_source` turns a command's ``data`` (``"glyphs"``, a folder, Omniglot, mini-ImageNet,
or an in-memory source) into an image source; :func:`make_splits` fixes the meta-train / val /
test classes from the seed; :func:`rotation_policy` decides whether rotated meta-train classes
are used (and which are left out because they look like a held-out class);
:func:`make_datamodule` yields the episodes. The recipe that trains on them is
:mod:`.episode_recipe`; testing is :mod:`.fewshot_eval`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..commands import FewShotCommand
from ..registry import ConfigError

#: Data a rotation of one class cannot turn into another (their class rules say so).
ROTATION_SAFE_FORMATS = ("omniglot",)


def build_source(cmd: FewShotCommand, data: Any = None) -> tuple[Any, dict[str, str] | None]:
    """The image source a command trains on, and the predefined class → split map (if any).

    ``data`` overrides ``cmd.data``: a folder path, a :class:`~workbench.data.episodes.TensorSource`
    / ``FolderSource``, or :class:`~workbench.data.glyphs.Glyphs`.
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
        return load_glyphs(seed=g.seed, alphabets=g.alphabets, max_per_alphabet=g.max_per_alphabet).to_source(), None
    if cmd.data_format == "omniglot":
        from ..data.omniglot import omniglot_source

        return omniglot_source(where, image_size=cmd.image_size), None
    if cmd.data_format == "miniimagenet":
        from ..data.omniglot import miniimagenet_source

        return miniimagenet_source(where, image_size=cmd.image_size)
    if not Path(where).expanduser().is_dir():
        raise ConfigError("data", f"{where!r} is neither 'glyphs' nor an existing folder", where, ["glyphs"])
    try:
        return FolderSource(where, image_size=cmd.image_size, channels=cmd.channels,
                            min_per_class=cmd.episodes.k_shot + 1), None
    except ValueError as exc:  # every class has fewer than k_shot + 1 images (or none at all)
        raise ConfigError("episodes.k_shot", f"{exc} with at least k_shot + 1 = {cmd.episodes.k_shot + 1} images",
                          cmd.episodes.k_shot) from None


def make_splits(cmd: FewShotCommand, source: Any, predefined: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """The class-disjoint splits for a command (a pure function of the seed and the class list)."""
    from ..data.episodes import split_classes

    s = cmd.split
    return split_classes(source.classes, seed=cmd.seed, fractions=(s.train, s.val, s.test),
                         groups=source.groups, by=cmd.split_by, predefined=predefined)


def rotation_policy(cmd: FewShotCommand, source: Any, splits: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Whether meta-training uses rotated classes, which rotations are left out, and why.

    Default (``episodes.rotate`` null): on for the glyph benchmark and Omniglot, off for other
    data — a rotated class of a photo or digit folder can be another class (6 → 9). When on for
    data whose classes are not known to be rotation-distinct, every rotated meta-train class is
    checked against the held-out classes and the look-alikes are left out
    (:func:`workbench.data.episodes.rotation_collisions`).
    """
    from ..data.episodes import rotation_collisions

    safe = getattr(source, "rotation_distinct", False) or cmd.data_format in ROTATION_SAFE_FORMATS
    asked = cmd.episodes.rotate
    on = safe if asked is None else asked
    if not on:
        why = "off (episodes.rotate false)" if asked is False else \
            "off by default for this data: a rotated class can be another class (6 → 9)"
        return {"on": False, "why": why, "excluded": []}
    if safe:
        return {"on": True, "why": "on: the data's classes are distinct under rotation", "excluded": []}
    held = list(splits.get("val", [])) + list(splits.get("test", []))
    excluded = rotation_collisions(source, splits.get("train", []), held)
    return {"on": True, "why": f"on: rotated meta-train classes checked against {len(held)} held-out classes,"
                               f" {len(excluded)} look-alike(s) left out", "excluded": excluded}


def make_datamodule(cmd: FewShotCommand, source: Any, splits: Mapping[str, Sequence[str]], rotation: Mapping[str, Any],
                    flat: bool = False) -> Any:
    """Meta-batches of tasks for a command (or plain image batches when ``flat``)."""
    from ..data.episodes import EpisodicDataModule

    e = cmd.episodes
    return EpisodicDataModule(
        source, splits, n_way=e.n_way, k_shot=e.k_shot, q_query=e.q_query, meta_batch=e.meta_batch,
        train_tasks=cmd.steps * e.meta_batch, val_episodes=cmd.val_episodes, test_episodes=cmd.test_episodes,
        seed=cmd.seed, rotate=rotation["on"], exclude=rotation["excluded"], test_n_way=e.test_n_way,
        test_k_shot=e.test_k_shot, test_q_query=e.test_q_query, train_n_way=e.train_n_way,
        flat_batch_size=cmd.finetune.batch_size if flat else None)
