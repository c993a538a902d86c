"""Graceful stop on Ctrl-C / SIGTERM: finish the current batch, save, tell the user how to resume.

Python's default SIGINT handler raises KeyboardInterrupt wherever the interpreter happens to be,
possibly in the middle of an optimizer step or a checkpoint write. Here the first SIGINT or
SIGTERM only sets a flag that the loop checks between batches (a plain bool: no device sync).
A second Ctrl-C means "stop now": it raises KeyboardInterrupt at once (files are still safe
because every write is atomic).
"""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """Context manager that turns SIGINT/SIGTERM into `self.requested = True` while active."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def request(self, reason: str = "stop") -> None:
        """Ask the loop to stop after the current batch (also usable without a signal)."""
        self.requested = True
        self.signal_name = self.signal_name or reason

    def _handle(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> StopRequest:
        # Signal handlers can only be installed from the main thread (e.g. not in a notebook worker).
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._previous[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):  # pragma: no cover - unusual embedding
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
