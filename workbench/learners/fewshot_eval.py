"""Testing a few-shot run: mean accuracy ± 95% CI over N-way K-shot episodes of held-out classes.

Tasks come from the split stored in the run (never re-drawn) and are reproducible from
``(seed, index)`` (default: the run's seed). They go through ``trainer.test`` like every other
test (:func:`workbench.training.run_test`); each episode's accuracy is the learner's
:meth:`~workbench.learners.episodic.EpisodicModule.adapt` on the support set, scored on the
queries. The result, with the per-episode accuracies, goes into the run summary under
``fewshot_eval["<split>_<N>way<K>shot"]``; the command's own setting also sets
``test_accuracy`` / ``test_ci95``.
"""
from __future__ import annotations

import math
import time
from typing import Any, Sequence

from ..commands import parse
from ..registry import ConfigError
from .recipe import TestPlan

#: Episodes per test when none are asked for (the papers' count).
DEFAULT_EPISODES = 600


def mean_ci95(accs: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% confidence half-width (1.96 · std / √n, the papers' convention)."""
    import numpy as np

    a = np.asarray(accs, dtype=float)
    if len(a) == 0:
        return math.nan, math.nan
    sd = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return float(a.mean()), 1.96 * sd / math.sqrt(len(a))


def episode_test_plan(module: Any, record: dict[str, Any], data: Any = None, limit: int | None = None, *,
                      episodes: int | None = None, n_way: int | None = None, k_shot: int | None = None,
                      q_query: int | None = None, split: str = "test", seed: int | None = None) -> TestPlan:
    """The test of one few-shot run (``limit`` = ``episodes``, as the CLI's ``--limit``)."""
    from torch.utils.data import DataLoader

    from .. import runtime
    from ..data.episodes import STREAMS, EpisodeDataset, EpisodeSampler
    from .fewshot_data import build_source

    cmd = parse(record["config"])
    episodes = episodes or limit or DEFAULT_EPISODES
    if episodes < 1:
        raise ConfigError("episodes", f"expected a positive number of episodes, got {episodes}", episodes)
    splits = record.get("splits") or {}
    if split not in splits:
        raise ConfigError("split", f"run {record['id']} stores no {split!r} split", split, sorted(splits))
    e = cmd.episodes
    n = n_way or e.test_n_way or e.n_way
    k = k_shot or e.test_k_shot or e.k_shot
    q = q_query or e.test_q_query or e.q_query
    if cmd.traits.fixed_head and n != e.n_way:
        raise ConfigError("n_way", f"this {cmd.kind} run was meta-trained {e.n_way}-way and scores {e.n_way}-way "
                          f"tasks only; meta-train a {n}-way model", n, [e.n_way])
    try:
        source = build_source(cmd, data)[0]
    except (ConfigError, FileNotFoundError) as exc:
        raise FileNotFoundError(f"run {record['id']}: its data {cmd.data!r} is not here ({exc}); pass data=") from None
    sampler = EpisodeSampler(source, splits[split], n, k, q, seed=cmd.seed if seed is None else seed,
                             stream=STREAMS[split])
    loader = DataLoader(EpisodeDataset(sampler, episodes), batch_size=min(16, e.meta_batch),
                        generator=runtime.generator(runtime.derive_seed(sampler.seed, "test", split)))
    key = f"{split}_{n}way{k}shot"
    default = n == (e.test_n_way or e.n_way) and k == (e.test_k_shot or e.k_shot) and split == "test"
    t0 = time.monotonic()
    result: dict[str, Any] = {}

    def finish(m: Any) -> dict[str, Any]:
        accs = list(m.test_episode_accuracies)
        mean, ci = mean_ci95(accs)
        result.update(split=split, n_way=n, k_shot=k, q_query=q, episodes=episodes, seed=sampler.seed, mean=mean,
                      ci95=ci, seconds=round(time.monotonic() - t0, 2), accuracies=[round(a, 4) for a in accs])
        evals = {**((record.get("summary") or {}).get("fewshot_eval") or {}), key: dict(result)}
        summary: dict[str, Any] = {"fewshot_eval": evals}
        if default:
            summary.update(test_accuracy=mean, test_ci95=ci, test_episodes=episodes)
        return summary

    def lines(summary: dict[str, Any]) -> list[str]:
        return [f"{n}-way {k}-shot accuracy {result['mean']:.3f} ± {result['ci95']:.3f} (95% CI) over {episodes}"
                " episodes"]

    config = {"episodes": episodes, "n_way": n, "k_shot": k, "q_query": q, "split": split}
    return TestPlan(config, {"dataloaders": loader}, finish, lines, details=lambda m: dict(result))
