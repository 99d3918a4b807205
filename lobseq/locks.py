"""One run at a time: a local `fcntl.flock`, or a PostgreSQL advisory lock across hosts.

Local (the default): an advisory `fcntl.flock` on a lock file. The kernel drops a
flock when its holder dies (crash, kill -9, reboot), so a lock file left by a dead
process never blocks: the next run takes it. The pid and start time written inside
are only for the message a blocked run prints.

Across hosts: when a lock database is configured (`LOBSEQ_LOCK_URI=postgresql://...`,
a pipeline's `lock_uri:`, or `lock_database(uri)` for a block), the lock is
`pg_try_advisory_lock` on a stable 64-bit hash of the lock's name, held by one
connection for the whole block. PostgreSQL releases it when that connection ends,
so a holder that dies (kill -9, a crashed host once TCP keepalive gives up) frees it.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from lobseq.errors import LobseqError, LockHeld

LOCK_URI_ENV = "LOBSEQ_LOCK_URI"
_lock_uri: contextvars.ContextVar[str | None] = contextvars.ContextVar("lobseq_lock_uri",
                                                                        default=None)
logger = logging.getLogger("lobseq.locks")
# The server notices a vanished client host after ~idle + interval * count seconds.
_KEEPALIVE = "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"


def lock_uri() -> str | None:
    """The lock database in force: `lock_database(...)`'s, else `$LOBSEQ_LOCK_URI`, else None."""
    return _lock_uri.get() or os.environ.get(LOCK_URI_ENV) or None


@contextlib.contextmanager
def lock_database(uri: str | None) -> Iterator[None]:
    """Use `uri` as the lock database for the block (None: leave the setting as it is)."""
    token = _lock_uri.set(uri) if uri else None
    try:
        yield
    finally:
        if token is not None:
            _lock_uri.reset(token)


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (the same on every host and Python version)."""
    return int.from_bytes(hashlib.sha256(f"lobseq:{name}".encode()).digest()[:8], "big", signed=True)


def redact(uri: str) -> str:
    """`uri` without its password."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", uri)


@contextlib.contextmanager
def run_lock(path: str | Path, what: str = "run", *, name: str | None = None,
             uri: str | None = None) -> Iterator[Path]:
    """Hold an exclusive lock for the block; raise `LockHeld` if another holder has it.

    With a lock database (`uri`, else `lock_uri()`) the lock is the advisory lock
    `name` (default: the lock file's name) in that database; otherwise a flock on
    `path`. Never waits: a scheduler that finds the lock held should try again
    later (the CLI exits 75).
    """
    uri = uri or lock_uri()
    if uri:
        with advisory_lock(uri, name or Path(path).stem, what):
            yield Path(path)
        return
    with file_lock(path, what):
        yield Path(path)


# ------------------------------------------------------------------ local: fcntl.flock


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    pid, since = info.get("pid"), info.get("started")
    return f"pid {pid}" + (f", started {since}" if since else "") if pid else "another process"


@contextlib.contextmanager
def file_lock(path: str | Path, what: str = "run") -> Iterator[Path]:
    """An exclusive `fcntl.flock` on `path` for the block; `LockHeld` if taken."""
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


# ------------------------------------------------------------------ across hosts: PostgreSQL


def _dsn(uri: str) -> str:
    """A libpq URI: `postgresql+psycopg2://` (SQLAlchemy's spelling) becomes `postgresql://`."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise LobseqError(f"lock database {redact(uri)!r} is not a PostgreSQL URI",
                          field=LOCK_URI_ENV, fix="use postgresql://USER@HOST:PORT/DB (the "
                          "password in PGPASSWORD or ~/.pgpass), or unset it for the local lock")
    return f"postgresql://{rest}"


def _connect(uri: str, what: str):
    try:
        import psycopg2
    except ImportError:
        raise LobseqError("a lock database needs psycopg2", field=LOCK_URI_ENV,
                          fix="pip install 'lobseq[team]', or unset it for the local lock") from None
    label = f"lobseq {what} pid {os.getpid()}@{socket.gethostname()}"[:63]
    try:
        conn = psycopg2.connect(_dsn(uri), application_name=label, connect_timeout=10,
                                keepalives=1, keepalives_idle=30, keepalives_interval=10,
                                keepalives_count=3, options=_KEEPALIVE)
    except psycopg2.Error as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise LobseqError(f"cannot reach the lock database {redact(uri)}: {first}",
                          field=LOCK_URI_ENV, fix="start it or correct the URI (no run "
                          "starts without its lock); unset it to use the local lock") from None
    conn.autocommit = True
    return conn


def _pg_holder(cur, key: int) -> str:
    """Who holds advisory lock `key`: its application name (lobseq's pid@host), address, start."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    cur.execute("SELECT a.application_name, a.client_addr, a.backend_start FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
                "AND l.granted AND l.objsubid = 1 AND l.classid = %s::bigint::oid "
                "AND l.objid = %s::bigint::oid", (unsigned >> 32, unsigned & 0xFFFFFFFF))
    row = cur.fetchone()
    if row is None:
        return "another session"
    app, addr, since = row
    return (app or "another session") + (f" from {addr}" if addr else "") + \
        (f", since {since:%Y-%m-%d %H:%M:%S}" if since else "")


@contextlib.contextmanager
def advisory_lock(uri: str, name: str, what: str = "run") -> Iterator[None]:
    """`pg_try_advisory_lock(lock_key(name))` on one connection held for the block."""
    key = lock_key(name)
    conn = _connect(uri, what)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            if not cur.fetchone()[0]:
                raise LockHeld(f"another {what} is in progress ({_pg_holder(cur, key)})",
                               file=redact(uri),
                               fix="wait for it to finish; the lock is released when its holder's "
                                   "connection ends (also when the holder dies)")
        try:
            yield
        finally:
            _release(conn, key, name)
    finally:
        conn.close()


def _release(conn, key: int, name: str) -> None:
    import psycopg2

    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
            held = cur.fetchone()[0]
    except psycopg2.Error as e:
        held = False
        logger.warning("lost the connection holding lock %r before the end (%s): another host "
                       "may have taken it meanwhile", name, str(e).strip().splitlines()[0])
    if not held:
        logger.warning("lock %r was no longer held at the end of the block", name)
