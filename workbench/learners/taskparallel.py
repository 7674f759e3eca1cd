"""Task-parallel meta-batches on CPU: the tasks of a meta-batch run on a shared pool of worker
threads, one intra-op thread each, and their results are combined in task order.

Why (measured on 2 cores, issue 17): a per-task MAML loop with 2 intra-op threads took 0.35 s
per meta-iteration on a quiet machine and 2–12 s whenever anything else ran — OpenMP threads
spin and stall at every operator's barrier when the cores are oversubscribed. The same tasks on
2 single-threaded workers stay near their quiet speed under load (the OS time-slices whole
tasks instead of stalling barriers) and are at least as fast when the machine is quiet.

**Same numbers whatever the parallelism.** Each task is computed with one intra-op thread and
the per-task results are summed in task order, so the meta-gradient is bit-identical for 1, 2
or 16 workers and for any load (only the summation order differs from a single backward over
the mean: agreement to rounding, ``tests/fewshot/test_fewshot_taskparallel.py``). A job can
therefore use whatever cores are free without giving up reproducibility.

**One pool per process** (:func:`pool`, as many workers as cores): concurrent jobs share it, so
two meta-learning jobs on 2 cores run their tasks interleaved on 2 threads instead of 4 threads
fighting over 2 cores, and a job that ends leaves its cores to the others at once.
"""
from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, TypeVar

import torch

from .. import runtime

T = TypeVar("T")
_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _one_thread() -> None:
    runtime.set_thread_count(1)  # per worker thread (torch keeps one intra-op setting per thread)


def pool() -> ThreadPoolExecutor:
    """The process-wide task pool: one worker per core, each with one intra-op thread."""
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        size = runtime.cpu_cores()
        if _POOL is None or _POOL_SIZE != size:  # first use, or the cores allowed changed
            if _POOL is not None:
                _POOL.shutdown(wait=False)  # running tasks finish; its threads then exit
            _POOL = ThreadPoolExecutor(size, thread_name_prefix="workbench-task", initializer=_one_thread)
            _POOL_SIZE = size
        return _POOL


@contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """Run the body with one intra-op thread in the calling thread (restored afterwards)."""
    before = torch.get_num_threads()
    if before != 1:
        runtime.set_thread_count(1)
    try:
        yield
    finally:
        if before != 1:
            runtime.set_thread_count(before)


def parallelism(requested: int | None = None) -> int:
    """How many tasks of one job run at once: ``requested`` (the job's ``threads``), else every core.

    Concurrent jobs share the one pool, so asking for every core never oversubscribes them.
    """
    return max(1, int(requested)) if requested is not None else runtime.cpu_cores()


def job_parallelism() -> int:
    """:func:`parallelism` for the job running in this thread (its explicit ``threads``, if any)."""
    return parallelism(runtime.requested_threads())


def run_tasks(fn: Callable[[int], T], n: int, parallel: int) -> list[T]:
    """``[fn(0), …, fn(n - 1)]`` with at most ``parallel`` running at once on :func:`pool`.

    Each call runs with one intra-op thread; with ``parallel <= 1`` they run here, in order.
    Keeping only ``parallel`` of a job's tasks in flight lets other jobs' tasks interleave.
    """
    if parallel <= 1 or n <= 1:
        with one_intra_op_thread():
            return [fn(i) for i in range(n)]
    ex = pool()
    results: list[T | None] = [None] * n
    pending: dict[Future, int] = {}
    nxt = 0
    try:
        while nxt < n or pending:
            while nxt < n and len(pending) < parallel:
                try:
                    fut = ex.submit(fn, nxt)
                except RuntimeError:  # the pool was replaced meanwhile (the allowed cores changed)
                    ex = pool()
                    fut = ex.submit(fn, nxt)
                pending[fut] = nxt
                nxt += 1
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                results[pending.pop(f)] = f.result()
    finally:
        for f in pending:
            f.cancel()
    return results  # type: ignore[return-value]


def sum_in_order(parts: Sequence[Sequence[torch.Tensor | None]], scale: float = 1.0) -> list[torch.Tensor | None]:
    """Element-wise sum of per-task gradient lists, task by task in order, times ``scale``."""
    out: list[torch.Tensor | None] = []
    for column in zip(*parts):
        acc = None
        for g in column:
            if g is not None:
                acc = g.clone() if acc is None else acc.add_(g)
        out.append(acc.mul_(scale) if acc is not None else None)
    return out


def with_gradients(value: torch.Tensor, leaves: Sequence[torch.Tensor],
                   grads: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """A scalar equal to ``value`` whose backward writes exactly ``grads`` into ``leaves``.

    Lets a training step that computed its gradients itself (in worker threads) return a loss
    to Lightning's automatic optimization — clipping, accumulation and DDP hooks still apply.
    """
    terms = [(p * g).sum() for p, g in zip(leaves, grads) if g is not None]
    if not terms:
        return value.detach()
    s = torch.stack(terms).sum()
    return value.detach() + (s - s.detach())
