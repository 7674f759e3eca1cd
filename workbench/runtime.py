"""What a job needs from the process it runs in: its rank, quiet Lightning, its own randomness
and its thread count.

**Randomness.** torch's default generator is process-wide: model initialisation, dropout,
torchvision's random transforms and ``torch.randperm`` all draw from it, so two jobs training in
threads of one kernel would interleave their draws (and ``pl.seed_everything`` in one job would
reseed the other). A job therefore never draws from it freely. Everything random runs inside
:func:`seeded` — a process-wide lock around ``torch.random.fork_rng`` seeded with a number that
is a pure function of the job's seed (:func:`derive_seed`): model init with the command's seed,
each random transform with a seed drawn from the job's data order, each dropout call with a seed
from the layer's own generator. DataLoaders get their own ``torch.Generator``. The sections
under the lock are short (an init, one transform, one dropout mask), so jobs still train in
parallel.

**Threads.** Bit-identical results are promised at a fixed intra-op thread count only (reduction
order depends on it). :func:`job_threads` is the one place a job's count is set, for the thread
that runs the job (torch keeps one OpenMP setting per thread); a thread-budget policy plugs in at
:func:`threads_for_job`.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

#: Held while a job's randomness is swapped into torch's process-wide generator.
RNG_LOCK = threading.RLock()


def env_rank() -> int:
    """This process's global rank as the launcher told it (0 outside distributed runs)."""
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return max(int(os.environ.get("LOCAL_RANK", "0") or 0), int(os.environ.get("NODE_RANK", "0") or 0))


def quiet_lightning() -> None:
    """Keep Lightning's banner lines ("GPU available: …") out of whichever notebook cell runs."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                 "pytorch_lightning.accelerators.cuda", "lightning_fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*number of training batches.*",
                    ".*Total length of .* across ranks is zero.*", ".*sync_dist=True.*", ".*LeafSpec.*",
                    ".*defined a `validation_step` but have no `val_dataloader`.*"):
        warnings.filterwarnings("ignore", message=pattern)


def error_text(exc: BaseException) -> str:
    """``Type: first line of the message`` — what a failed run's record stores."""
    msg = str(exc).strip()
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def derive_seed(*parts: Any) -> int:
    """A 62-bit seed that is a pure function of ``parts`` (job seed, purpose, index …)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2


@contextmanager
def seeded(seed: int, device: Any = None) -> Iterator[None]:
    """Run the body with torch's default generator(s) set to ``seed``, then restore them.

    Holds :data:`RNG_LOCK`, so no other job's seeded section runs meanwhile; ``device`` (a
    ``torch.device``) also forks and seeds that CUDA device's generator.
    """
    import torch

    cuda = [] if device is None or torch.device(device).type != "cuda" else [torch.device(device).index or 0]
    with RNG_LOCK, torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(int(seed))
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(int(seed))
        yield


def generator(seed: int) -> Any:
    """A CPU ``torch.Generator`` seeded with ``seed`` (for DataLoaders and samplers)."""
    import torch

    return torch.Generator().manual_seed(int(seed))


def threads_for_job(requested: int | None) -> int | None:
    """The intra-op thread count a job runs with (``None``: keep the calling thread's).

    Today: what the command or the caller asked for. A per-job budget policy (issue 17)
    decides here.
    """
    if requested is not None and (isinstance(requested, bool) or not isinstance(requested, int) or requested < 1):
        raise ValueError(f"threads = {requested!r}: expected a positive integer or None")
    return requested


@contextmanager
def job_threads(requested: int | None) -> Iterator[int]:
    """Run the body with the job's intra-op thread count set for *this* thread; yields the count."""
    import torch

    n = threads_for_job(requested)
    before = torch.get_num_threads()
    if n is None or n == before:
        yield before
        return
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)  # new threads start from the last value set anywhere
