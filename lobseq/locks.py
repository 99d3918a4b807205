"""One run at a time: an advisory `fcntl.flock` on a lock file.

The kernel drops a flock when its holder dies (crash, kill -9, reboot), so a
lock file left by a dead process never blocks: the next run takes it. The
pid and start time written inside are only for the message a blocked run
prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from lobseq.errors import LockHeld


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    pid, since = info.get("pid"), info.get("started")
    return f"pid {pid}" + (f", started {since}" if since else "") if pid else "another process"


@contextlib.contextmanager
def run_lock(path: str | Path, what: str = "run") -> Iterator[Path]:
    """Hold an exclusive lock on `path` for the block; raise `LockHeld` if taken.

    Never waits: a scheduler that finds the lock held should try again later
    (the CLI exits 75).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(f"another {what} is in progress ({_holder(path)})", file=path,
                           fix="wait for it to finish; a lock from a dead process is released "
                               "automatically") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(),
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
