"""The one error type users see.

Every problem with user input (a spec, a recipe, a dataset path, a checkpoint) is raised as an
`ArchspecError`. The CLI prints it as a single line and exits with code 2, never a traceback.
The message format is ``file:line:col: path.to.key: what is wrong`` so editors can jump to it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ArchspecError(Exception):
    """A user-facing error: where (file, line, column, key path) and what.

    `hint` is an optional second line (the offending source line and a caret, or advice).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.path = path
        self.hint = hint

    def location(self) -> str:
        parts = []
        if self.file:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
                if self.col is not None:
                    where += f":{self.col}"
            parts.append(where)
        if self.path:
            parts.append(self.path)
        return ": ".join(parts)

    def __str__(self) -> str:
        loc = self.location()
        return f"{loc}: {self.message}" if loc else self.message


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean "x"?)' suffix for a misspelt name, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), sorted(set(choices)), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""
