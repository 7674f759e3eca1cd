"""Provenance helpers stored with every run: ids, timestamps, process identity, versions."""
from __future__ import annotations

import os
import platform
import secrets
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any


def utcnow() -> str:
    """ISO-8601 UTC timestamp with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    """A sortable id that stays unique across processes and hosts: UTC time + 40 random bits."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(5)


def proc_start_time(pid: int) -> str | None:
    """Start time of a process from /proc (tells a live pid from a reused one)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int, start: str | None) -> bool:
    """True when ``pid`` runs and (where /proc tells) is the process that started at ``start``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (OverflowError, ValueError):
        return False
    if start is not None and os.path.exists("/proc"):
        return proc_start_time(pid) == start
    return True


_ENV_CACHE: dict[str, Any] | None = None


def environment(seed: int | None = None) -> dict[str, Any]:
    """Versions and provenance stored with every run."""
    global _ENV_CACHE
    if _ENV_CACHE is None:
        from .._version import __version__  # not the package root: it re-exports, nothing imports from it

        env: dict[str, Any] = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "workbench": __version__,
        }
        for mod, key in (("torch", "torch"), ("lightning", "lightning"), ("pytorch_lightning", "lightning"),
                         ("torchvision", "torchvision")):
            if key in env:
                continue
            m = sys.modules.get(mod)
            if m is None:
                try:
                    from importlib.metadata import version

                    env[key] = version(mod.replace("_", "-"))
                except Exception:
                    continue
            else:
                env[key] = getattr(m, "__version__", None)
        env["git_commit"] = _git_commit()
        _ENV_CACHE = env
    out = dict(_ENV_CACHE)
    out["seed"] = seed
    return out


def _git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                           cwd=os.getcwd())
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None
