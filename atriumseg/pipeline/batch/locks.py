"""Per-case locks, so that one process at a time works on a case of an output folder.

Shards of a job array writing into one folder, or the same batch started twice, must never write the
same case at once. Before a case is read, the runner takes an exclusive ``flock`` on
``OUTDIR/.atriumseg/locks/CASE.lock`` (the file holds its PID and host name) and keeps it until the
case's record is written. The kernel drops the lock when its process ends, however it ends (``kill -9``
included), so a lock is never stale: the lock file a dead process leaves behind is simply taken again.
A case locked by another process is skipped with the reason "being processed by PID n". This holds
wherever ``flock`` works between the processes involved: one machine's disks, and NFS, whose Linux
client turns ``flock`` into POSIX locks shared by every client.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from atriumseg.pipeline.io.writing import process_running

LOCKS = Path(".atriumseg") / "locks"


class CaseBusy(Exception):
    """A case another process holds; the message says which process ("being processed by PID n")."""


class CaseLock:
    """An exclusive claim on one case of an output folder, held until :meth:`release` (or the process ends)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def release(self) -> None:
        """Give the case up: the lock file is removed while still locked, then closed. Idempotent."""
        if self._fd < 0:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = -1


def _holder(fd: int, patience_s: float = 1.0) -> str:
    """Who holds a lock file, from the PID it writes right after locking. Until it has (the file is empty,
    or still names the dead process that held it before), the file is read again for up to ``patience_s``."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            owner = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
            pid, host = int(owner["pid"]), str(owner["host"])
        except (ValueError, KeyError, TypeError, OSError):
            pid, host = 0, ""
        here = host == socket.gethostname()
        if pid and (not here or process_running(pid)):
            return f"being processed by PID {pid}" + ("" if here else f" on {host}")
        if time.monotonic() > deadline:
            return "being processed by another process"
        time.sleep(0.01)


def lock_case(out_dir: Path, case: str) -> CaseLock:
    """Lock ``case`` in ``out_dir`` for this process, or raise :class:`CaseBusy` naming the holder."""
    path = Path(out_dir) / LOCKS / f"{case}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise CaseBusy(holder) from None
        try:  # the holder may have released (and removed) the file between our open and our lock
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        opened = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode("utf-8"), 0)
    return CaseLock(path, fd)
