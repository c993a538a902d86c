"""curves.png and lr.png for a run, drawn with matplotlib's object API (no pyplot global state).

Using `Figure` + the Agg canvas directly means plotting never opens a window, never fights
with whatever backend the user's environment selected, and is safe to call every epoch.
Images are rendered into memory and written atomically like every other run file.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archspec.io import atomic_write_bytes


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if value is not None and isinstance(value, (int, float)) and math.isfinite(value):
            xs.append(int(row["epoch"]))
            ys.append(float(value))
    return xs, ys


def plot_curves(rows: Sequence[dict[str, Any]], path: Path, *, title: str = "") -> None:
    """One figure, three panels: loss (train and test), train accuracy, test accuracy, per epoch."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.8))
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.13, top=0.82, wspace=0.25)
    loss_ax, train_ax, test_ax = fig.subplots(1, 3)
    for key, label in (("train_loss", "train"), ("test_loss", "test")):
        xs, ys = _series(rows, key)
        if xs:
            loss_ax.plot(xs, ys, marker="o", markersize=3, label=label)
    loss_ax.set(title="loss", xlabel="epoch", ylabel="loss")
    if loss_ax.lines:
        loss_ax.legend(loc="best")
    for ax, key, name in ((train_ax, "train_acc", "train accuracy"), (test_ax, "test_acc", "test accuracy")):
        xs, ys = _series(rows, key)
        if xs:
            ax.plot(xs, [100.0 * y for y in ys], marker="o", markersize=3)
        ax.set(title=name, xlabel="epoch", ylabel="accuracy (%)")
    for ax in (loss_ax, train_ax, test_ax):
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_lr(lr_per_step: Sequence[float], steps_per_epoch: int, path: Path, *, title: str = "") -> None:
    """The learning rate actually used at every optimizer step, against (fractional) epoch."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 3.8))
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.13, top=0.9)
    ax = fig.subplots()
    per_epoch = max(1, int(steps_per_epoch))
    xs = [i / per_epoch for i in range(len(lr_per_step))]
    ax.plot(xs, list(lr_per_step), linewidth=1.2)
    ax.set(title=title or "learning rate", xlabel="epoch", ylabel="learning rate")
    ax.grid(True, alpha=0.3)
    _save(fig, path)
