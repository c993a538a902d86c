"""How far a dataset download has got: a rich bar on a terminal, a plain line every few seconds
otherwise (a CI log, `2> log.txt`).

CIFAR-10 is 170 MB. One "downloading ..." line followed by minutes of silence looks like a hang
in a terminal and in a log alike. Everything goes to stderr, like the "downloading" line, so
stdout stays the command's own output.
"""

from __future__ import annotations

import sys
from time import monotonic  # one name, so that tests can replace the clock

LOG_EVERY_S = 10.0  # plain-line interval when stderr is not a terminal


def _size(n: float) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} B"


class DownloadProgress:
    """`with DownloadProgress(name, total) as p: p.advance(len(chunk))`; `total` None when unknown."""

    def __init__(self, name: str, total: int | None, *, stream=None) -> None:
        self.name, self.total, self.done = name, total, 0
        self._stream = stream if stream is not None else sys.stderr
        self._bar = None
        self._task = None
        self._start = self._last = monotonic()

    def __enter__(self) -> DownloadProgress:
        if getattr(self._stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=Console(file=self._stream), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.name, total=self.total)
        return self

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.advance(self._task, n)
        elif monotonic() - self._last >= LOG_EVERY_S:
            self._line()
            self._last = monotonic()

    def _line(self) -> None:
        elapsed = max(monotonic() - self._start, 1e-9)
        of = f" of {_size(self.total)} ({100 * self.done / self.total:.0f}%)" if self.total else ""
        print(f"downloading {self.name}: {_size(self.done)}{of}, {_size(self.done / elapsed)}/s",
              file=self._stream, flush=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._bar is not None:
            self._bar.stop()
        if exc_type is None:
            print(f"downloaded {self.name} ({_size(self.done)} in {monotonic() - self._start:.0f}s)",
                  file=self._stream, flush=True)
