"""One process owns a run directory at a time: a lock file, held with an OS lock.

Why a lock: two `archspec train` processes on the same run directory (a job submitted twice with
the same --run-dir, or a resume started while the run still trains) would interleave their
checkpoints and metrics, and both would report success. The owner holds an exclusive `flock` on
RUN_DIR/.archspec.lock while it trains; the file names its pid and host, so a second process
can say who owns the run. The operating system drops the lock when its owner dies (kill -9 and
power cuts included), so a lock file left behind by a dead process is stale by construction -
no pid check, which a reused pid would fool - and the next process takes it over, and says so. (`flock` works on local disks and, on Linux, on
NFS; where `fcntl` does not exist, e.g. Windows, runs are not locked.) The lock file is removed
on release, so a finished run directory holds only the run's files.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from archspec.errors import ArchspecError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".archspec.lock"


def _owner_text() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n"


def _read_owner(path: Path) -> dict:
    try:
        owner = json.loads(path.read_text(encoding="utf-8")[:4096])
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


class RunLock:
    """The ownership of one run directory (see the module docstring); a context manager."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.fd: int | None = None
        self.took_over: dict = {}  # the previous owner, when its lock file was left behind

    def acquire(self) -> RunLock:
        """Take the lock, or raise an ArchspecError naming the process that holds it."""
        if fcntl is None:  # pragma: no cover - Windows
            return self
        while self.fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ArchspecError(f"run directory is not writable: {exc.strerror or exc}", file=str(self.run_dir),
                                    hint="choose another --runs-dir / --run-dir, or fix its permissions") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._in_use() from None
            if not self._same_file(fd):  # the owner removed the file as we opened it: try again
                os.close(fd)
                continue
            self.took_over = self._left_behind(fd)
            os.ftruncate(fd, 0)
            os.write(fd, _owner_text().encode("utf-8"))
            self.fd = fd
        return self

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _left_behind(self, fd: int) -> dict:
        """The owner recorded in a lock file nobody holds: a process that died without releasing it."""
        owner = _read_owner(self.path)
        if owner and not (owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()):
            return owner
        return {}

    def _in_use(self) -> ArchspecError:
        owner = _read_owner(self.path)
        who = f"process {owner.get('pid', '?')} on {owner.get('host', '?')}"
        if owner.get("since"):
            who += f" (since {owner['since']})"
        return ArchspecError(f"this run directory is in use by {who}", file=str(self.run_dir),
                             hint="one process trains a run at a time: wait for it to finish, stop it, or "
                                  "choose another --run-dir")

    def release(self) -> None:
        """Give the directory up (idempotent)."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # before unlocking: a waiter that opened the old file sees it is gone
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def stale_owner_note(lock: RunLock) -> str | None:
    """A line for the user when `lock` replaced one left behind by a process that ended without
    releasing it (killed, or its machine went down): the kernel, not a pid check, says it is gone,
    so a reused pid cannot keep a run locked forever."""
    owner = lock.took_over
    if not owner:
        return None
    return (f"note: took over {lock.run_dir} from process {owner.get('pid', '?')} on {owner.get('host', '?')}, "
            "which ended without releasing it")
