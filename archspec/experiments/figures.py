"""Figures over several runs: overlaid curves (compare --plot) and the min-max loss band (sweep --band).

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, never a window), rendered
into memory, and written atomically like every other file archspec writes. matplotlib is imported
inside the functions so that importing this module costs nothing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from archspec.errors import ArchspecError
from archspec.experiments.runs import Run
from archspec.io import atomic_write_bytes


def figure_png(fig, *, dpi: int = 110) -> bytes:
    """A matplotlib Figure as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def write_png(data: bytes, path: str | Path) -> Path:
    """Write PNG bytes atomically; a missing folder or a permission problem is a one-line error."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ArchspecError("the folder for the figure does not exist", file=str(path.parent))
    try:
        return atomic_write_bytes(path, data)
    except OSError as exc:
        raise ArchspecError(f"cannot write figure: {exc.strerror or exc}", file=str(path)) from None


def overlay_figure(runs: Sequence[Run], labels: Sequence[str], *, title: str = ""):
    """Test accuracy (left) and loss (right: train solid, test dashed) of every run, one colour per run.

    One legend entry per run, outside the axes, so a sweep of a dozen runs still leaves room for the curves.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 4.8), layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        colour = f"C{i % 10}"
        xs, ys = run.series("test_acc")
        acc_ax.plot(xs, [100.0 * y for y in ys], marker="o", markersize=3, color=colour, label=label)
        xs, ys = run.series("train_loss")
        loss_ax.plot(xs, ys, marker="o", markersize=3, color=colour)
        xs, ys = run.series("test_loss")
        loss_ax.plot(xs, ys, linestyle="--", marker="x", markersize=3, color=colour)
    acc_ax.set(title="test accuracy", xlabel="epoch", ylabel="accuracy (%)")
    loss_ax.set(title="loss (solid: train, dashed: test)", xlabel="epoch", ylabel="loss")
    for ax in (acc_ax, loss_ax):
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(loc="outside right upper", fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def band_figure(groups: dict[str, Sequence[Run]], *, key: str = "train_loss", title: str = "",
                per_step: bool = True):
    """Per group (one spec across the sweep grid), the band between the lowest and highest curve.

    This is the loss-landscape figure of the VGG-A with/without BatchNorm study: a narrow band
    means training behaves similarly whatever the learning rate. With `per_step` and `key`
    "train_loss", a group whose runs all have per-step losses (steps.csv) gets the band of the
    mini-batch losses step by step, as the study drew it; otherwise the band of the per-epoch
    values. At each point the band spans the runs that reached it (a diverged run stops
    contributing where it stopped).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.subplots()
    any_steps = False
    for i, (label, runs) in enumerate(groups.items()):
        step_curves = [run.step_series() for run in runs] if per_step and key == "train_loss" else []
        use_steps = bool(step_curves) and all(xs for xs, _ in step_curves)
        by_x: dict[float, list[float]] = {}
        for xs_ys in step_curves if use_steps else (run.series(key) for run in runs):
            for x, y in zip(*xs_ys, strict=True):
                by_x.setdefault(x, []).append(y)
        if not by_x:
            continue
        any_steps |= use_steps
        xs = sorted(by_x)
        low = [min(by_x[x]) for x in xs]
        high = [max(by_x[x]) for x in xs]
        colour = f"C{i % 10}"
        what = "per step" if use_steps else "per epoch"
        ax.fill_between(xs, low, high, color=colour, alpha=0.3, label=f"{label} ({len(runs)} runs, {what})")
        marker = {} if use_steps else {"marker": "o", "markersize": 3}
        ax.plot(xs, low, color=colour, linewidth=0.6 if use_steps else 1, **marker)
        ax.plot(xs, high, color=colour, linewidth=0.6 if use_steps else 1, **marker)
    name = "training loss per step" if any_steps else key.replace("_", " ")
    ax.set(title=title or f"{name}: min-max band across the sweep", xlabel="epoch", ylabel=name)
    ax.grid(True, alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if ax.collections:
        ax.legend(loc="best")
    return fig
