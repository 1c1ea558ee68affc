"""One compile at a time per output directory: a lock beside it, ``<output.dir>.lock``, that names
its holder (host, pid, start time), so that a second compile refuses with one line saying who.

Local and shared file systems: an exclusive ``flock`` on the lock file, held for the whole compile
and released by the kernel when the holder dies (even by ``kill -9``), so a stale lock file never
blocks a rerun. On NFS, Linux maps ``flock`` to POSIX byte-range locks, which work across clients
of NFSv4 (and of NFSv3 with a running lock manager, ``nlockmgr``); a mount with ``nolock`` (and
some parallel file systems mounted without ``flock``) locks only within one client: there, two
compiles on different machines into one directory are not detected. A file system that refuses
locks altogether (ENOLCK, EOPNOTSUPP) is reported in the log and the compile goes on unlocked.

Object stores (``s3://``, ``gs://``): a lock object with a lease. The holder creates it with
create-if-absent (``If-None-Match: *`` on S3) and renews it every ``RENEW_S`` seconds; a lock whose
lease ran out (its holder stopped renewing: killed, or cut off) or whose holder is a dead process
on this host is taken over. A store without create-if-absent falls back to check-then-write, which
two compiles starting within the same moment can both pass.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import threading
import time

from shardsmith import storage
from shardsmith.errors import ShardsmithError

SUFFIX = ".lock"
LEASE_S = 120.0  # an object-store lock not renewed for this long is free
RENEW_S = 30.0
UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def busy(final: str, info: dict | None, lock_path: str) -> ShardsmithError:
    """The one-line refusal of a second compile, naming the holder."""
    who = (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}" if info
           else "a process that has not written its name yet")
    return ShardsmithError(f"another compile is writing '{final}' ({who}); wait for it to finish or stop it "
                           f"(lock: {lock_path})", "output.dir")


def output_lock(final: str, storage_options: dict | None = None, log=print):
    """The lock of output directory ``final`` (a local path or a URL), not yet taken."""
    if storage.is_url(final):
        return LeaseLock(final, storage_options, log)
    return FileLock(final, log)


class FileLock:
    """An exclusive, non-blocking ``flock`` on ``<final>.lock``; the file is removed on release."""

    def __init__(self, final: str, log=print):
        self.final, self.path, self.log = final, final + SUFFIX, log
        self.fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _parse(os.pread(fd, 4096, 0))
                os.close(fd)
                raise busy(self.final, info, self.path) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno not in UNSUPPORTED:
                    raise
                self.log(f"{self.path}: this file system does not support locks ({exc.strerror}); "
                         "a concurrent compile into the same directory would not be detected")
                return
            if self._same_file(fd):  # not unlinked by a releasing holder between our open and flock
                break
            os.close(fd)
        if not _ours(os.pread(fd, 4096, 0)):
            os.close(fd)
            raise not_ours(self.path)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder()).encode(), 0)
        self.fd = fd

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it: a waiter re-checks the inode
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None


class LeaseLock:
    """A lock object ``<final>.lock`` with a lease that a daemon thread renews."""

    def __init__(self, final: str, storage_options: dict | None = None, log=print):
        self.final, self.url, self.log = final, final + SUFFIX, log
        self.fs, self.path = storage.filesystem(self.url, storage_options)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.info: dict | None = None

    def acquire(self) -> None:
        current = self._read()
        if current == {}:
            raise not_ours(self.url)
        if current is not None:
            if not _stale(current):
                raise busy(self.final, current, self.url)
            self.log(f"{self.url}: taking over the lock of a compile that stopped ({current.get('host')}, "
                     f"pid {current.get('pid')})")
            self.fs.rm(self.path)
        self.info = holder()
        try:
            self._write(create=True)
        except FileExistsError:
            raise busy(self.final, self._read(), self.url) from None
        self._thread = threading.Thread(target=self._renew, name="shardsmith-lease", daemon=True)
        self._thread.start()

    def _read(self) -> dict | None:
        """The holder's record; None when there is no lock object, {} when it is not ours."""
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        if not _ours(data):
            return {}
        return _parse(data) if data else {"pid": None, "host": None}

    def _write(self, create: bool = False) -> None:
        doc = dict(self.info, expires=time.time() + LEASE_S)
        data = json.dumps(doc).encode()
        if create:
            try:
                self.fs.pipe_file(self.path, data, mode="create")
                return
            except (TypeError, NotImplementedError, ValueError):  # no create-if-absent on this store
                if self.fs.exists(self.path):
                    raise FileExistsError(self.url) from None
        self.fs.pipe_file(self.path, data)

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_S):
            try:
                self._write()
            except OSError as exc:  # a missed renewal is retried; the lease outlasts several
                self.log(f"{self.url}: could not renew the lock ({exc})")

    def release(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        try:
            self.fs.rm(self.path)
        except FileNotFoundError:
            pass


def not_ours(path: str) -> ShardsmithError:
    return ShardsmithError(f"'{path}' exists and is not a shardsmith lock; move it away or choose another output.dir",
                           "output.dir")


def _ours(data: bytes) -> bool:
    """Empty (a holder killed before it wrote its name) or a holder record of ours."""
    doc = _parse(data) if data else {"pid": None, "host": None}
    return doc is not None and {"pid", "host"} <= set(doc)


def _parse(data: bytes) -> dict | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _stale(info: dict) -> bool:
    """A lease that ran out, or a holder that is a dead process on this host."""
    if float(info.get("expires", 0)) < time.time():
        return True
    return info.get("host") == socket.gethostname() and not _alive(info.get("pid"))


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True
    return True
