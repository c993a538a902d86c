"""What a run prints: a live bar per epoch, a table row per epoch, a summary panel at the end.

Two renderings of the same events. On a terminal, rich draws a live progress bar (step count,
elapsed time and the epoch's ETA, then as many of loss, accuracy, lr and images/s as the width
leaves room for, each whole) above which each finished epoch leaves one aligned table row. When
stdout is a file or a pipe (CI logs, `> train.log`, a test harness) it prints plain lines with no
escape codes and no bar, one per epoch, plus a heartbeat line every `log_every` seconds inside an
epoch, so a long CPU epoch is not a silent log. `quiet` keeps only the final summary.

The in-epoch numbers refresh by time, not by step count: an epoch of eight 7-second steps still
shows its loss after the first steps, and a fast GPU epoch does not redraw hundreds of times a second.
"""

from __future__ import annotations

import contextlib
import math
from time import monotonic  # one name, so that tests can replace the clock
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from archspec.tables import Column, leaner_layouts, print_items, print_table

STATS_EVERY_S = 2.0  # the live bar's loss/acc/lr/img/s: at most this stale
DEFAULT_LOG_EVERY_S = 30.0  # non-terminal heartbeat inside an epoch (`train --log-every`)
BAR_MIN, BAR_MAX = 10, 40  # the bar's width; the stats take what is left on the line

# Epoch-row columns: (header, a widest typical value). Rows are printed one at a time, so the
# columns are sized for these samples and line up from the first epoch to the last.
_ROW_SAMPLES = (("train loss", "0.0000"), ("train acc", "100.00%"), ("test loss", "0.0000"),
                ("test acc", "100.00%"), ("lr", "0.00e+00"), ("time", "59m59s"), ("img/s", "00,000"))
_ROW_DROP_ORDER = ("img/s", "train acc", "time")


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


def _clock(seconds: float | None) -> str:
    """1:02, 1:02:03; `-:--` while unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _stat_fields(loss: float, acc: float, lr: float, ips: float) -> list[str]:
    """The in-epoch numbers, most useful first: a narrow line keeps the first ones, each whole."""
    return [f"loss {loss:.4f}", f"acc {100 * acc:.1f}%", f"lr {lr:.2e}", f"{ips:,.0f} img/s"]


def _first_that_fit(fields: list[str], room: int) -> str:
    shown: list[str] = []
    for field in fields:
        if len("  ".join([*shown, field])) > room:
            break
        shown.append(field)
    return "  ".join(shown)


class _TimesColumn(ProgressColumn):
    """Elapsed time and the epoch's ETA, `1:02 eta 3:10`: shown at every width."""

    def render(self, task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        return Text(f"{_clock(elapsed)} eta {_clock(task.time_remaining)}", style="progress.elapsed")


class _NoBar:
    """Stand-in when nothing is shown inside an epoch (quiet): every update is free."""

    def step(self, n: int = 1) -> None:
        pass

    def due(self) -> bool:
        return False

    def stats(self, **_: Any) -> None:
        pass


class _Bar:
    """The live bar of one epoch on a terminal."""

    def __init__(self, progress: Progress, bar: BarColumn, task, console: Console) -> None:
        self._progress, self._bar, self._task, self._console = progress, bar, task, console
        self._shown = -math.inf
        self._fit("")

    def step(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def due(self) -> bool:
        """True when the numbers shown are STATS_EVERY_S old (the loop then reads the device once)."""
        return monotonic() - self._shown >= STATS_EVERY_S

    def stats(self, *, loss: float, acc: float, lr: float, ips: float) -> None:
        self._fit(None, _stat_fields(loss, acc, lr, ips))
        self._progress.refresh()  # show them now, not at the next tick of the live display
        self._shown = monotonic()

    def _fit(self, text: str | None, fields: list[str] | None = None) -> None:
        """Size the bar and pick the stats so the line fits the console: no field is ever cut."""
        task = next(t for t in self._progress.tasks if t.id == self._task)
        fixed = (len(task.description) + 2 * len(str(task.total)) + 1
                 + len(_TimesColumn().render(task).plain) + 2 + 4)  # ETA may grow a digit; 4 gaps
        if text is None:
            text = _first_that_fit(fields or [], self._console.width - fixed - BAR_MIN - 1)
        self._bar.bar_width = max(BAR_MIN, min(BAR_MAX, self._console.width - fixed - len(text) - 1))
        self._progress.update(self._task, stats=text)


class _Heartbeat:
    """A plain line every `every` seconds inside an epoch, for logs (no terminal, no bar)."""

    def __init__(self, reporter: Reporter, epoch: int, epochs: int, steps: int, every: float) -> None:
        self._reporter, self._epoch, self._epochs, self._steps, self._every = reporter, epoch, epochs, steps, every
        self._start = self._last = monotonic()
        self._done = 0

    def step(self, n: int = 1) -> None:
        self._done += n

    def due(self) -> bool:
        return monotonic() - self._last >= self._every

    def stats(self, *, loss: float, acc: float, lr: float, ips: float) -> None:
        if not self.due():
            return
        now = monotonic()
        elapsed = now - self._start
        eta = elapsed / self._done * (self._steps - self._done) if self._done else None
        self._reporter._plain(
            f"epoch {self._epoch}/{self._epochs}  step {self._done}/{self._steps}  "
            + "  ".join(_stat_fields(loss, acc, lr, ips)) + f"  elapsed {_secs(elapsed)}  eta {_secs(eta)}")
        self._last = now


class Reporter:
    """Prints run events on `console`; `progress` toggles the live bar, `quiet` keeps only the summary.

    `log_every` (seconds): the heartbeat interval when the console is not a terminal.
    """

    def __init__(self, console: Console | None = None, *, progress: bool = True, quiet: bool = False,
                 log_every: float = DEFAULT_LOG_EVERY_S) -> None:
        self.console = console or Console()
        self.quiet = quiet
        self.fancy = bool(self.console.is_terminal) and not quiet
        self.show_bar = self.fancy and progress
        self.log_every = float(log_every)
        self._progress: Progress | None = None
        self._bar_column: BarColumn | None = None
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
        self._bar_column = BarColumn(bar_width=BAR_MAX)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), self._bar_column, MofNCompleteColumn(), _TimesColumn(),
            TextColumn("{task.fields[stats]}"), console=self.console, transient=True,
        )
        try:
            with self._progress:
                yield self
        finally:
            self._progress = None

    @contextlib.contextmanager
    def epoch(self, epoch: int, epochs: int, steps: int):
        """What shows one epoch's training steps: a bar (terminal), a heartbeat (log), or nothing."""
        if self._progress is None or self._bar_column is None:
            quiet_here = self.quiet or self.fancy or self.log_every <= 0
            yield _NoBar() if quiet_here else _Heartbeat(self, epoch, epochs, steps, self.log_every)
            return
        task = self._progress.add_task(f"epoch {epoch}/{epochs}", total=steps, stats="")
        try:
            yield _Bar(self._progress, self._bar_column, task, self.console)
        finally:
            self._progress.remove_task(task)

    # -- events --------------------------------------------------------------------------------

    def header(self, info: dict[str, Any]) -> None:
        if self.quiet:
            return
        if self.fancy:  # wrapped between items, never inside one ("data synthetic (512 train / 128 test)")
            print_items(self.console, [Text.assemble((str(k), "bold"), f" {v}") for k, v in info.items()], gap="  ")
        else:
            self._plain("train: " + ", ".join(f"{k} {v}" for k, v in info.items()))

    def note(self, text: str, *, style: str = "yellow", always: bool = True) -> None:
        """A warning or notice; shown even when quiet unless `always` is False."""
        if self.quiet and not always:
            return
        if self.fancy:
            self.console.print(text, style=style, markup=False, highlight=False)
        else:
            self._plain(text)

    def epoch_row(self, row: dict[str, Any], epochs: int) -> None:
        if self.quiet:
            return
        cells = (f"{row['epoch']}/{epochs}", _num(row.get("train_loss")), _pct(row.get("train_acc")),
                 _num(row.get("test_loss")), _pct(row.get("test_acc")), _num(row.get("lr"), ".2e"),
                 _secs(row.get("epoch_seconds")), f"{row.get('images_per_second') or 0.0:,.0f}")
        if not self.fancy:
            self._plain("epoch {}  train_loss {}  train_acc {}  test_loss {}  test_acc {}  lr {}  time {}  "
                        "{} img/s".format(*cells))
            return
        columns = [Column("epoch", [cells[0]], justify="right", samples=(f"{epochs}/{epochs}",))]
        columns += [Column(header, [cell], justify="right", samples=(sample,))
                    for (header, sample), cell in zip(_ROW_SAMPLES, cells[1:], strict=True)]
        print_table(self.console, leaner_layouts(columns, _ROW_DROP_ORDER), show_header=self._rows_printed == 0)
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
        title = escape(f"{summary.get('spec')} + {summary.get('recipe')} on {summary.get('dataset')}")
        key_width = max(len(k) for k, _ in lines)
        longest = max(len(word) for _, v in lines for word in v.split())
        if key_width + 2 + longest + 4 > self.console.width:  # a panel would cut the run dir: plain lines
            self.console.print(f"[bold]{title}[/]", highlight=False)
            for key, value in lines:
                self.console.print(f"[bold]{key}[/] {escape(value)}", highlight=False, soft_wrap=True)
            return
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for key, value in lines:
            grid.add_row(key, escape(value))
        colour = {"completed": "green", "interrupted": "yellow", "diverged": "red"}.get(summary.get("status"), "white")
        self.console.print(Panel(grid, title=title, border_style=colour, expand=False))

