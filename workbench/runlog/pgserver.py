"""A throwaway local PostgreSQL server (tests, benchmarks, trying the team backend on one machine).

``with local_server() as url: RunLog(url)`` runs ``initdb`` into a temporary folder, starts
``postgres`` on a free 127.0.0.1 port and removes everything afterwards. The server binaries
come from Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``) or ``PATH``.
PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user.
Durability is traded for speed (``fsync=off``): it is for throwaway data only.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class ServerUnavailable(RuntimeError):
    """No PostgreSQL server could be started here (the message says why)."""


def find_bin() -> Path | None:
    """Folder holding ``initdb``/``pg_ctl``, newest version first; None when not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]), reverse=True)
    return Path(cands[0]).parent if cands else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_server(timeout: float = 60.0) -> Iterator[str]:
    """Start a scratch server; yields its URL (``postgresql://postgres@127.0.0.1:PORT/postgres``)."""
    bindir = find_bin()
    if bindir is None:
        raise ServerUnavailable("PostgreSQL server binaries (initdb) not found; install Debian's postgresql package")
    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="workbench-pg-"))
    try:
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerUnavailable("running as root and there is no 'postgres' user to run the server as") from None
            if shutil.which("runuser") is None:
                raise ServerUnavailable("running as root and runuser(1) is missing")
            os.chown(root, pw.pw_uid, pw.pw_gid)
            prefix = ["runuser", "-u", "postgres", "--"]
        data, port = root / "data", _free_port()

        def run(*cmd: str) -> None:
            r = subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=timeout)
            if r.returncode != 0:
                raise ServerUnavailable(f"{Path(cmd[0]).name} failed: {(r.stderr or r.stdout).strip()[-500:]}")

        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
            "--locale=C", "--no-sync")
        opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
                " -c synchronous_commit=off -c max_connections=200")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "server.log"), "-w",
            "-t", str(int(timeout)), "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=timeout)
    finally:
        shutil.rmtree(root, ignore_errors=True)
