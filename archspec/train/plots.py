"""curves.png and lr.png of a run directory, drawn by `archspec.figures` (the one figures module).

The training loop calls these two functions with what it holds in memory; this module only knows
where the run directory keeps the rest (the per-step losses of steps.csv, which the loop rewrites
just before it draws) and which figure each file is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archspec.figures import Curves, lr_figure, run_figure, write_figure


def _steps_beside(path: Path) -> list[dict[str, Any]]:
    """The run's steps.csv rows (in the folder of `path`), or none when it has no readable one."""
    from archspec.train.rundir import read_steps_csv

    steps = Path(path).parent / "steps.csv"
    try:
        return read_steps_csv(steps) if steps.is_file() else []
    except (OSError, ValueError, KeyError, TypeError):
        return []


def plot_curves(rows: Sequence[dict[str, Any]], path: Path, *, title: str = "",
                steps: Sequence[dict[str, Any]] | None = None) -> None:
    """The run's loss (per step, smoothed, when recorded) and train/test accuracy on one axis.
    `steps`: the per-step rows; default: the steps.csv beside `path`."""
    steps = _steps_beside(path) if steps is None else steps
    write_figure(run_figure(Curves(label="", metrics=list(rows), steps=list(steps)), title=title), path)


def plot_lr(lr_per_step: Sequence[float], steps_per_epoch: int, path: Path, *, title: str = "") -> None:
    """The learning rate actually used at every optimizer step, against (fractional) epoch."""
    write_figure(lr_figure(lr_per_step, steps_per_epoch, title=title or "learning rate"), path)
