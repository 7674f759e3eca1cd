"""What this machine can run — checked before a run exists, never at parse time.

A command is parsed the same everywhere (a GPU run's record opens on a laptop), but whether it
can *train here* depends on the machine: its usable CPU cores (affinity and cgroup quota), its
memory, its accelerators and the installed Lightning plugins. :func:`check_trainer` answers
that for a command's ``trainer`` options:

- the accelerator exists here (``gpu`` on a machine without one is an error, not a crash later);
- strategy and precision construct (``deepspeed`` / ``transformer-engine`` installed, ``fsdp``
  on a GPU) — by building the ``pl.Trainer`` they describe once (≈15 ms, nothing launched);
- no more processes than the machine has: ``devices`` ≤ usable cores on the CPU (each CPU
  "device" is a process) and ≤ the GPU count; ``num_nodes`` > 1 only inside a multi-node launch
  (otherwise Lightning waits for nodes that never come); :func:`check_threads`: a command's
  ``threads`` at most the usable cores.

:func:`clamp_workers` caps DataLoader workers at the usable cores (a warning, and the record's
``adjusted`` field says what was asked and what was used: workers do not change results).
"""
from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..registry import ConfigError, why


def _cgroup_cpus() -> float | None:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else max(1.0, int(quota) / int(period))


def usable_cpus() -> int:
    """CPU cores this process may run on (affinity mask and cgroup quota, not the host's count)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_cpus()
    return max(1, min(n, int(quota)) if quota else n)


def memory_bytes(accelerator: str = "cpu") -> int:
    """Memory a model may use: the GPU's when ``accelerator`` resolves to CUDA here, else physical
    RAM (or the cgroup limit when lower)."""
    if resolved_accelerator(accelerator) == "cuda" and available("cuda"):
        import torch

        return int(torch.cuda.get_device_properties(0).total_memory)
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            total = min(total, int(limit))
    except (OSError, ValueError):
        pass
    return int(total)


def gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB"


@lru_cache(maxsize=None)
def available(accelerator: str) -> bool:
    """Whether Lightning can use ``accelerator`` on this machine (``auto`` and ``cpu`` always)."""
    import torch

    if accelerator in ("gpu", "cuda"):
        return torch.cuda.is_available()
    if accelerator == "mps":
        return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if accelerator == "tpu":
        try:
            from pytorch_lightning.accelerators import XLAAccelerator

            return bool(XLAAccelerator.is_available())
        except Exception:
            return False
    return True


def resolved_accelerator(accelerator: str) -> str:
    """What ``auto`` means here (Lightning's order: CUDA, then MPS, then CPU)."""
    if accelerator != "auto":
        return "cuda" if accelerator == "gpu" else accelerator
    return next((a for a in ("cuda", "mps") if available(a)), "cpu")


def device_count(accelerator: str) -> int:
    """Devices of that accelerator here (CPU: usable cores — each CPU device is a process)."""
    import torch

    acc = resolved_accelerator(accelerator)
    if acc == "cuda":
        return torch.cuda.device_count() if available("cuda") else 0
    if acc in ("mps", "tpu"):
        return 1 if available(acc) else 0
    return usable_cpus()


def _in_multinode_launch() -> bool:
    from lightning_fabric.plugins.environments import (KubeflowEnvironment, LSFEnvironment, MPIEnvironment,
                                                       SLURMEnvironment, TorchElasticEnvironment)

    for env in (SLURMEnvironment, TorchElasticEnvironment, KubeflowEnvironment, LSFEnvironment, MPIEnvironment):
        try:
            if env.detect():
                return True
        except Exception:
            continue
    return False


def check_trainer(options: Any, path: str = "trainer") -> None:
    """Raise a :class:`ConfigError` (every problem at once) when ``options`` cannot train on this machine."""
    problems: list[ConfigError] = []
    acc = options.accelerator
    if acc != "auto" and not available(acc):
        here = ["auto", "cpu"] + [a for a in ("gpu", "cuda", "mps") if a != acc and available(a)]
        problems.append(ConfigError(f"{path}.accelerator", f"{acc!r} is not available on this machine", acc, here))
    else:
        problems += _device_problems(options, path)
    if options.num_nodes > 1 and not _in_multinode_launch():
        problems.append(ConfigError(f"{path}.num_nodes", f"{options.num_nodes} nodes asked for, but this process"
                                    " was not started by a multi-node launcher (SLURM, torchrun, MPI …); Lightning"
                                    " would wait for the other nodes forever", options.num_nodes, [1]))
    if not problems:
        problems += _construct(options, path)
    if problems:
        raise ConfigError.collect(problems)


def _device_problems(options: Any, path: str) -> list[ConfigError]:
    d, acc = options.devices, resolved_accelerator(options.accelerator)
    have = device_count(acc)
    where = f"{path}.devices"
    if isinstance(d, list):
        if acc == "cpu":
            return [ConfigError(where, "a list of device indices needs a GPU; on the CPU give a process count",
                                d, ["auto", *range(1, have + 1)])]
        bad = [i for i in d if not 0 <= i < have]
        if bad or len(set(d)) != len(d):
            return [ConfigError(where, f"device index {bad[0] if bad else d} is not one of this machine's {have}"
                                f" {acc} device(s)", d, list(range(have)))]
        return []
    if d == -1 and acc == "cpu":
        return [ConfigError(where, "-1 (every device) needs a GPU; on the CPU give a process count", d,
                            ["auto", *range(1, have + 1)])]
    if isinstance(d, int) and d > have:
        unit = "usable CPU cores (each CPU device is a training process)" if acc == "cpu" else f"{acc} device(s)"
        return [ConfigError(where, f"{d} devices asked for; this machine has {have} {unit}", d,
                            ["auto", *range(1, have + 1)])]
    return []


def _construct(options: Any, path: str) -> list[ConfigError]:
    """Build the ``pl.Trainer`` the options describe (nothing is launched or written).

    On failure each option is tried alone (with the device setting), so the error names the one
    at fault: a strategy or precision plugin that is not installed, a batch limit Lightning refuses.
    """
    kwargs = options.trainer_kwargs()
    error = _trainer_error(kwargs)
    if error is None:
        return []
    base = {k: kwargs[k] for k in ("accelerator", "devices", "num_nodes") if k in kwargs}
    alone = {k: _trainer_error({**base, k: v}) for k, v in kwargs.items() if k not in base}
    blamed = {k: e for k, e in alone.items() if e is not None}
    if not blamed:  # only the combination fails (or the device setting itself)
        keys = [k for k in ("strategy", "precision") if k in kwargs] if _trainer_error(base) is None else []
        blamed = {k: error for k in keys or ["devices"]}
    return [ConfigError(f"{path}.{k}", f"Lightning cannot use {k} {kwargs.get(k)!r} here: {e}", kwargs.get(k))
            for k, e in blamed.items()]


def _trainer_error(kwargs: dict[str, Any]) -> str | None:
    import pytorch_lightning as pl

    from .. import runtime

    runtime.quiet_lightning()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                       enable_model_summary=False, **kwargs)
    except Exception as exc:
        return why(exc)
    return None


def check_threads(threads: int | None, path: str = "threads") -> None:
    """A job's intra-op thread count is at most the usable cores (``threads: 100000`` would have
    OpenMP start that many threads; beyond the cores they only stall each other)."""
    have = usable_cpus()
    if threads is not None and threads > have:
        raise ConfigError(path, f"{threads} intra-op threads asked for; this machine has {have} usable CPU cores",
                          threads, list(range(1, have + 1)))


def clamp_workers(asked: int) -> tuple[int, dict[str, Any] | None]:
    """``(workers to use, what the record says about it or None)`` — at most the usable cores."""
    have = usable_cpus()
    if asked <= have:
        return asked, None
    note = {"asked": asked, "used": have, "why": f"this machine has {have} usable CPU cores"}
    warnings.warn(f"num_workers {asked} → {have}: {note['why']} (more worker processes only compete for them)",
                  stacklevel=3)
    return have, note
