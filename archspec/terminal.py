"""How wide archspec's output is: one rule for every command.

* `COLUMNS` is set: that many columns, on a terminal or not (the user, or the CI, said so).
* A terminal: its width, read at every print, so a resized window is followed.
* A file or a pipe (`> log.txt`, `| less`, a CI log): no limit. A log line is never wrapped in
  the middle of a sentence or a token, and a table is printed at its natural width, because a
  file has no right edge and a pager scrolls sideways.

rich's own default holds non-terminal output to 80 columns, which split `optimizer.lr=1e-3` into
`optimizer.lr=1e` / `-3` in `sweep --dry-run` and cut table cells in CI logs. `AutoWidthConsole`
is a rich `Console` that applies the rule above instead; an explicit `width=` still wins (tests,
library callers that print into a buffer).
"""

from __future__ import annotations

import os

from rich.console import Console, ConsoleDimensions

PIPE_WIDTH = 10_000  # "no limit" for files and pipes; a rich Table still prints at its natural width


def columns_from_environment() -> int | None:
    """`COLUMNS` as a number of columns, or None when unset or not a positive integer."""
    value = os.environ.get("COLUMNS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


class AutoWidthConsole(Console):
    """A rich Console whose width follows the module's rule at every print (see the docstring above).

    rich reads `COLUMNS` once, when a Console is made; the CLI's consoles are made at import, so
    this one reads it again at every print, as it reads the terminal size.
    """

    def __init__(self, *args, width: int | None = None, **kwargs) -> None:
        super().__init__(*args, width=width, **kwargs)
        self._width = width  # rich copied COLUMNS into _width at construction: drop it, read it live

    @property
    def size(self) -> ConsoleDimensions:
        dims = super().size
        if self._width is not None:
            return dims
        columns = columns_from_environment()
        if columns is not None:
            return ConsoleDimensions(columns, dims.height)
        if not self.is_terminal:
            return ConsoleDimensions(PIPE_WIDTH, dims.height)
        return dims

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


def wider_view(console: Console, width: int) -> Console:
    """A console writing to the same file with the same colours, but `width` columns wide.

    For a table that cannot fit the terminal without cutting a value: it is printed wider and
    the terminal wraps the long lines, which keeps every value whole.
    """
    return Console(file=console.file, width=width, force_terminal=console.is_terminal,
                   color_system=console.color_system, no_color=console.no_color, highlight=False,
                   soft_wrap=False)
