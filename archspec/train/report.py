"""What a run prints: a live bar per epoch, a table row per epoch, a summary panel at the end.

Two renderings of the same events. On a terminal, rich draws a live progress bar (loss,
accuracy, lr, images/s) above which each finished epoch leaves one aligned table row. When stdout
is a file or a pipe (CI logs, `> train.log`, a test harness) it prints plain lines with no escape
codes and no bar, one per epoch, so logs stay greppable. `quiet` keeps only the final summary.
"""

from __future__ import annotations

import contextlib
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

_COLUMNS = (("epoch", 7), ("train loss", 10), ("train acc", 9), ("test loss", 9), ("test acc", 8),
            ("lr", 9), ("time", 7))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.2f}%"


def _num(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(round(value)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class _NoBar:
    """Stand-in when no live bar is shown: every update is free."""

    def step(self, n: int = 1) -> None:
        pass

    def stats(self, **_: Any) -> None:
        pass


class _Bar:
    def __init__(self, progress: Progress, task) -> None:
        self._progress = progress
        self._task = task

    def step(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def stats(self, *, loss: float, acc: float, lr: float, ips: float) -> None:
        self._progress.update(self._task, stats=f"loss {loss:.4f}  acc {100 * acc:5.1f}%  lr {lr:.2e}  "
                                                f"{ips:,.0f} img/s")


class Reporter:
    """Prints run events on `console`; `progress` toggles the live bar, `quiet` keeps only the summary."""

    def __init__(self, console: Console | None = None, *, progress: bool = True, quiet: bool = False) -> None:
        self.console = console or Console()
        self.quiet = quiet
        self.fancy = bool(self.console.is_terminal) and not quiet
        self.show_bar = self.fancy and progress
        self._progress: Progress | None = None
        self._rows_printed = 0

    # -- plumbing ------------------------------------------------------------------------------

    def _plain(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def live(self):
        """Keep one live display for the whole run (rows print above it)."""
        if not self.show_bar:
            yield self
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
            console=self.console, transient=True,
        )
        try:
            with self._progress:
                yield self
        finally:
            self._progress = None

    @contextlib.contextmanager
    def epoch(self, epoch: int, epochs: int, steps: int):
        """A bar for one epoch's training steps (removed when the epoch ends)."""
        if self._progress is None:
            yield _NoBar()
            return
        task = self._progress.add_task(f"epoch {epoch}/{epochs}", total=steps, stats="")
        try:
            yield _Bar(self._progress, task)
        finally:
            self._progress.remove_task(task)

    # -- events --------------------------------------------------------------------------------

    def header(self, info: dict[str, Any]) -> None:
        if self.quiet:
            return
        if self.fancy:
            parts = [f"[bold]{escape(str(k))}[/] {escape(str(v))}" for k, v in info.items()]
            self.console.print("  ".join(parts), highlight=False)
        else:
            self._plain("train: " + ", ".join(f"{k} {v}" for k, v in info.items()))

    def note(self, text: str, *, style: str = "yellow", always: bool = True) -> None:
        """A warning or notice; shown even when quiet unless `always` is False."""
        if self.quiet and not always:
            return
        if self.fancy:
            self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)
        else:
            self._plain(text)

    def epoch_row(self, row: dict[str, Any], epochs: int) -> None:
        if self.quiet:
            return
        cells = (f"{row['epoch']}/{epochs}", _num(row.get("train_loss")), _pct(row.get("train_acc")),
                 _num(row.get("test_loss")), _pct(row.get("test_acc")), _num(row.get("lr"), ".2e"),
                 _secs(row.get("epoch_seconds")))
        if not self.fancy:
            self._plain("epoch {}  train_loss {}  train_acc {}  test_loss {}  test_acc {}  lr {}  time {}  "
                        "{:,.0f} img/s".format(*cells, row.get("images_per_second") or 0.0))
            return
        table = Table(box=None, show_header=self._rows_printed == 0, header_style="bold", pad_edge=False)
        for name, width in _COLUMNS:
            table.add_column(name, justify="right", min_width=width, max_width=width + 4, no_wrap=True)
        table.add_row(*cells)
        self.console.print(table)
        self._rows_printed += 1

    def summary(self, summary: dict[str, Any]) -> None:
        best = summary.get("best_test_acc")
        best_text = "-" if best is None else f"{_pct(best)} (epoch {summary.get('best_epoch')})"
        lines = [
            ("status", str(summary.get("status"))),
            ("best test acc", best_text),
            ("final test acc", _pct(summary.get("final_test_acc"))),
            ("epochs", f"{summary.get('epochs')}/{summary.get('epochs_planned')}"),
            ("total time", _secs(summary.get("train_seconds"))
             + (f" (compiling {_secs(summary['compile_seconds'])})" if summary.get("compile_seconds") else "")),
            ("params", f"{summary.get('params'):,}"),
            ("throughput", f"{summary.get('images_per_second') or 0:,.0f} img/s"),
            ("run dir", str(summary.get("run_dir"))),
        ]
        if not self.fancy:
            self._plain("summary: " + ", ".join(f"{k} {v}" for k, v in lines))
            return
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for key, value in lines:
            grid.add_row(key, escape(value))
        colour = {"completed": "green", "interrupted": "yellow", "diverged": "red"}.get(summary.get("status"), "white")
        title = escape(f"{summary.get('spec')} + {summary.get('recipe')} on {summary.get('dataset')}")
        self.console.print(Panel(grid, title=title, border_style=colour, expand=False))
