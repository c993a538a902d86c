"""Atomic file writes: a reader (or a resumed run) never sees half a file.

Training can be killed at any instant (Ctrl-C, SIGTERM from a scheduler, `kill -9`, a power cut).
If a checkpoint or metrics file were written in place, a kill mid-write would leave a truncated
file that poisons the next `--resume`. Every file archspec writes therefore goes to a temporary
file in the *same directory* (so the final rename never crosses a filesystem), is flushed and
fsync'ed, and then `os.replace`d over the target, which POSIX and Windows perform atomically:
the target is always either the complete old version or the complete new one.

No torch import at module level: `atomic_torch_save` imports it when called, so the fast
commands (`validate`, `--help`) can use the text helpers without paying for torch.
"""

from __future__ import annotations

import errno
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every OS/filesystem allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_mode(target: Path) -> int:
    """The permissions a plain `open(path, "w")` would give: the old file's, else 0o666 minus umask.

    `mkstemp` creates 0600 files; without this, run directories would be unreadable to the
    colleagues (or the web server) that a normal write would have let read them.
    """
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically (temp file in the same dir, fsync, os.replace).

    The temporary file is removed if anything goes wrong before the rename, so failed writes
    leave no litter. Returns the target path.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    mode = _file_mode(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException as exc:
        # BaseException too: a KeyboardInterrupt mid-write must not leave a stray temp file.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(target)  # "No space left on device" alone does not say where
        raise
    _fsync_dir(directory)
    return target


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk (or the user's quota) is full: a condition to report, not a bug."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (see `atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> Path:
    """Write `obj` as JSON (UTF-8, trailing newline) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=True) + "\n")


def torch_save_bytes(obj: Any) -> bytes:
    """Serialise `obj` with `torch.save` into memory (so one payload can be written to several files)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """`torch.save(obj, path)`, but atomic: serialise to memory, then `atomic_write_bytes`."""
    return atomic_write_bytes(path, torch_save_bytes(obj))
