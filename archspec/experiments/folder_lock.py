"""One owner per sweep or study folder, and a way for remote workers to check they see that folder.

A sweep or a study writes many run directories (and a study its SQLite file) in one folder. Two
commands doing that at once would train the same cells twice and overwrite each other's files, so
the command takes an exclusive `flock` on `FOLDER/.archspec.lock` for as long as it runs. The
kernel drops the lock when the process ends in any way, `kill -9` included, which is what lets
`tune` treat a trial still marked "running" in its study as abandoned: nobody else can own it.

The lock file also carries a token (host, pid, random part). A Ray task that is about to write a
run directory first reads the token back: if it cannot, the folder it was told to write to is not
the driver's folder on this node (no shared file system there), and the task says so instead of
writing run directories where nobody will find them.

The token is written in place, not with the atomic rename every other file gets: renaming would
give the path a new inode that our lock does not cover. It is written once, under the lock, and
read only after the driver has handed out work.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from archspec.errors import ArchspecError

LOCK_NAME = ".archspec.lock"


class FolderLock:
    """The held lock of one folder; `token` identifies this owner. Release with `close()` (or `with`)."""

    def __init__(self, folder: Path, handle, token: str) -> None:
        self.folder = folder
        self.token = token
        self._handle = handle

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the flock
            self._handle = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def lock_folder(folder: str | Path) -> FolderLock:
    """Create `folder` if needed and take its lock; an ArchspecError names the owner if it is taken."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole run
    except OSError as exc:
        raise ArchspecError(f"cannot create the folder: {exc.strerror or exc}", file=str(folder)) from None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no flock; the token is still written
        fcntl = None
    if fcntl is not None:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise ArchspecError(f"another archspec command is using this folder ({owner})", file=str(folder),
                                hint="wait for it to finish, or use another --out") from None
    token = f"{socket.gethostname()} pid {os.getpid()} {secrets.token_hex(4)}"
    handle.seek(0)
    handle.truncate()
    handle.write(token + "\n")
    handle.flush()
    os.fsync(handle.fileno())
    return FolderLock(folder, handle, token)


def check_visible(folder: str | Path, token: str) -> None:
    """Raise unless `folder` here is the folder the owner with `token` locked (run on a worker)."""
    try:
        seen = (Path(folder) / LOCK_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        seen = ""
    if seen != token:
        raise ArchspecError(f"the output folder is not visible on worker node {socket.gethostname()}",
                            file=str(folder),
                            hint="on a multi-node Ray cluster, --out must be on a file system shared by every "
                                 "node and mounted at the same path")
