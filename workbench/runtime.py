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
that runs the job (torch keeps one OpenMP setting per thread, so it never leaks into another
job's thread). The budget (:func:`threads_for_job`): the user's ``threads`` wins; otherwise the
cores are shared evenly among the jobs running when this one starts (thread jobs of this process
and the subprocess jobs it started, :func:`job_slot`), and the record stores the count used.
Oversubscribing the cores with multi-threaded jobs is what to avoid: OpenMP threads spin and
stall at every operator's barrier when a core is taken away (a 0.35 s MAML step took 2–12 s).
Meta-learners run their tasks on single-threaded workers instead
(:mod:`workbench.learners.taskparallel`), whose numbers do not depend on the thread count.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator

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


def cpu_cores() -> int:
    """Cores workbench jobs of this process share: its CPU affinity, at most ``WORKBENCH_THREADS``
    when that is set (e.g. 1 in the test suite), at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    cap = os.environ.get("WORKBENCH_THREADS", "")
    if cap.strip().isdigit() and int(cap) > 0:
        n = min(n, int(cap))
    return max(1, n)


#: Thread counts of the jobs running now: thread jobs of this process and subprocess jobs it started.
_RUNNING: dict[int, int] = {}
_RUNNING_LOCK = threading.Lock()
_LOCAL = threading.local()


def running_jobs() -> int:
    """How many jobs this process runs (or started as subprocesses) right now."""
    with _RUNNING_LOCK:
        return len(_RUNNING)


def threads_for_job(requested: int | None, running: int | None = None) -> int:
    """The intra-op thread count a job runs with: the user's ``requested`` count if given, else
    an even share of the cores among the jobs running now and this one (at least 1).

    The share is decided once, when the job starts, and stored in its record
    (``runtime.threads``): results are bit-identical at a fixed count, so a run reproduces by
    asking for that count. ``running``: the number of other jobs (default: :func:`running_jobs`).
    """
    if requested is not None and (isinstance(requested, bool) or not isinstance(requested, int) or requested < 1):
        raise ValueError(f"threads = {requested!r}: expected a positive integer or None")
    if requested is not None:
        return requested
    others = running_jobs() if running is None else running
    return max(1, cpu_cores() // (others + 1))


def set_thread_count(n: int) -> None:
    """``torch.set_num_threads(n)`` for the calling thread, made to stick.

    torch initialises a thread's OpenMP count lazily, at the thread's first parallel operator,
    from the count *last set in any thread*. A fresh thread that only calls ``set_num_threads(1)``
    is therefore switched to another job's count (say 2) as soon as that job sets it and this
    thread runs its first parallel operator (tests/training/test_threads.py shows it). Asking for
    the count first runs that lazy initialisation now, so the setting below is the last word.
    """
    import torch

    torch.get_num_threads()
    torch.set_num_threads(n)


def reserve_threads(threads: int) -> Callable[[], None]:
    """Count a job as running (with ``threads``) until the returned function is called."""
    token = object()
    with _RUNNING_LOCK:
        _RUNNING[id(token)] = threads

    def release() -> None:
        with _RUNNING_LOCK:
            _RUNNING.pop(id(token), None)
    return release


@contextmanager
def job_slot(threads: int) -> Iterator[int]:
    """Count a job as running (with ``threads``) for the budget of the jobs that start meanwhile."""
    release = reserve_threads(threads)
    try:
        yield threads
    finally:
        release()


def requested_threads() -> int | None:
    """The explicit ``threads`` of the job running in this thread (None: the default share)."""
    return getattr(_LOCAL, "requested", None)


@contextmanager
def job_threads(requested: int | None) -> Iterator[int]:
    """Run the body as a job with its thread budget (:func:`threads_for_job`) set for *this*
    thread, counted among the running jobs; yields the count.

    torch keeps one intra-op setting per thread, so the job's count never reaches another
    job's thread, and the caller's count is restored afterwards.
    """
    import torch

    n = threads_for_job(requested)
    tune_allocator()
    before, before_req = torch.get_num_threads(), getattr(_LOCAL, "requested", None)
    _LOCAL.requested = requested
    set_thread_count(n)
    try:
        with job_slot(n):
            yield n
    finally:
        _LOCAL.requested = before_req
        set_thread_count(before)  # also if the job changed it (a learner on the task pool runs with 1)


_ALLOCATOR_TUNED = False


def tune_allocator() -> None:
    """Let glibc keep freed large blocks for reuse instead of unmapping them (once per process).

    A Conv-4 step allocates and frees many 1–8 MB activation maps; with glibc's default
    thresholds each one comes back as fresh pages the kernel must fault in and zero (measured:
    a MAML task took 20–25 % longer). ``WORKBENCH_MALLOC_TUNE=0`` leaves the allocator alone.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or os.environ.get("WORKBENCH_MALLOC_TUNE", "1") == "0":
        return
    _ALLOCATOR_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        # mallopt(M_MMAP_THRESHOLD=-3, 32 MiB: glibc's maximum), mallopt(M_TRIM_THRESHOLD=-1, 256 MiB)
        libc.mallopt(-3, 32 << 20)
        libc.mallopt(-1, 256 << 20)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass
