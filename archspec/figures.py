"""Every figure archspec draws, and the one way figures are written.

One module so that a run's own curves (train), the overlay of several runs (compare --plot, report),
the sweep's loss band (sweep --band), the report's per-run panels, a recipe's learning-rate curve
(recipes plot) and the learning-rate range test (lr-find) look alike and are written alike: the
same panels, colours, axis conventions and file handling.

It sits at the package root because every layer above the recipes draws with it (`recipes`,
`train`, `experiments`) and it depends on none of them: its inputs are plain data - metrics rows as
metrics.jsonl holds them, step rows as steps.csv holds them, lists of learning rates - never a Run
or a Recipe object.

Conventions:
- The x axis is always epochs. Per-step values sit at step / steps-per-epoch, so the last step of
  epoch 1 is at x = 1, where epoch 1's evaluation is drawn.
- Per-step training loss is drawn faintly as recorded and, on top, smoothed by a centred moving
  mean (`smooth`): the raw values show the noise, the smoothed line the trend, without lag.
- Train and test accuracy share one axis (test solid, train dashed) with the gap between them shaded,
  so over-fitting is visible at a glance.
- matplotlib's object API on the Agg canvas: no pyplot state, never a window, safe in any thread or
  backend. matplotlib is imported inside the functions, so importing this module costs nothing.
- Files are rendered into memory and written atomically, PNG, SVG or PDF; SVG and PDF carry no
  creation date, so the same data gives the same file.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archspec.atomic_write import atomic_write_bytes
from archspec.errors import ArchspecError

FORMATS = ("png", "svg", "pdf")
DEFAULT_DPI = 110
_SUFFIXES = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
_METADATA = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


@dataclass
class Curves:
    """What one run contributes to a figure: a legend label, its per-epoch metrics rows and its
    per-step rows (steps.csv: step, epoch, loss, lr; empty for runs that have none)."""

    label: str
    metrics: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)


# --- data -----------------------------------------------------------------------------------------


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def metric_series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of one per-epoch metric, skipping epochs where it is missing or not finite."""
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if _finite(value):
            xs.append(int(row.get("epoch", len(xs) + 1)))
            ys.append(float(value))
    return xs, ys


def steps_per_epoch(steps: Sequence[dict[str, Any]]) -> int:
    """How many steps epoch 1 had (steps.csv numbers epochs from 1); at least 1."""
    return max(1, sum(1 for row in steps if row.get("epoch") == 1))


def step_series(steps: Sequence[dict[str, Any]], key: str = "loss") -> tuple[list[float], list[float]]:
    """(x in epochs, values) of one per-step column, skipping steps where it was not recorded."""
    per_epoch = steps_per_epoch(steps)
    xs, ys = [], []
    for row in steps:
        if _finite(row.get(key)):
            xs.append(row["step"] / per_epoch)
            ys.append(float(row[key]))
    return xs, ys


def smoothing_window(n: int) -> int:
    """The smoothing window for a curve of n points: odd, about a twentieth of the curve (so any
    curve keeps ~20 independent stretches of trend, whatever its length), 1 (no smoothing) to 501."""
    return 2 * max(0, min(250, n // 40)) + 1


def smooth(values: Sequence[float], window: int | None = None) -> list[float]:
    """Each point replaced by the mean of a window centred on it, narrowed symmetrically near the
    ends (the first and last points keep their own value).

    Why centred and symmetric: a trailing average (TensorBoard's exponential moving average) lags
    the data by about its window, which moves a steep loss descent to the right; a centred window
    has no lag, and because it is symmetric it reproduces any straight stretch of the curve exactly,
    so neither the descent nor the two ends are pulled off the data. Prefix sums make it O(n)."""
    n = len(values)
    half = (smoothing_window(n) if window is None else max(1, int(window))) // 2
    prefix = [0.0]
    for value in values:
        prefix.append(prefix[-1] + float(value))
    out = []
    for i in range(n):
        k = min(half, i, n - 1 - i)
        out.append((prefix[i + k + 1] - prefix[i - k]) / (2 * k + 1))
    return out


def _loss_values(curves: Curves) -> list[float]:
    values = smooth(step_series(curves.steps)[1])
    for key in ("test_loss",) if values else ("train_loss", "test_loss"):
        values += metric_series(curves.metrics, key)[1]
    return values


def shared_limits(runs: Sequence[Curves]) -> dict[str, tuple[float, float]]:
    """Common y ranges for a set of runs' panels, so their figures can be compared side by side.

    loss: 0 to a little above the 99th percentile of every plotted loss (one diverged run must not
    flatten everyone else's curves); accuracy: the 5-point steps around every plotted accuracy,
    within 0-100%; lr: 0 to a little above the largest rate, or, when the rates span more than a
    factor of 20 (an lr sweep), a range with a positive lower end, which `run_figure` draws on a log
    axis. A panel with no data has no entry."""
    limits: dict[str, tuple[float, float]] = {}
    losses = sorted(v for run in runs for v in _loss_values(run))
    if losses:
        top = losses[min(len(losses) - 1, int(0.99 * len(losses)))]
        limits["loss"] = (0.0, top * 1.05 if top > 0 else 1.0)
    accs = [100.0 * v for run in runs for key in ("train_acc", "test_acc") for v in metric_series(run.metrics, key)[1]]
    if accs:
        limits["accuracy"] = (max(0.0, 5 * math.floor(min(accs) / 5)), min(100.0, 5 * math.ceil(max(accs) / 5) + 1))
    lrs = [v for run in runs for v in step_series(run.steps, "lr")[1]]
    if lrs and _spread(lrs):
        limits["lr"] = (min(lrs) / 1.5, max(lrs) * 1.5)  # positive lower limit: a log axis
    elif lrs:
        limits["lr"] = (0.0, max(lrs) * 1.05 if max(lrs) > 0 else 1.0)
    return limits


# --- panels ---------------------------------------------------------------------------------------


def _style(ax, *, title: str, ylabel: str, limits: tuple[float, float] | None = None) -> None:
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if limits is not None:
        ax.set_ylim(*limits)


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")


def loss_panel(ax, run: Curves, *, colour: str = "C0", label: str | None = None, raw: bool = True) -> None:
    """Training loss (per step when recorded: faint raw values under the smoothed line; else per
    epoch) solid, test loss per epoch dashed with markers. `label` names the curves in a legend
    (None: "train"/"test" for a single run)."""
    xs, ys = step_series(run.steps)
    if xs:
        window = smoothing_window(len(ys))
        if raw and window > 1:
            ax.plot(xs, ys, color=colour, alpha=0.2, linewidth=0.6)
        what = f"train, per step (mean of {window})" if window > 1 else "train, per step"
        ax.plot(xs, smooth(ys, window), color=colour, linewidth=1.4, label=label if label is not None else what)
    else:
        ex, ey = metric_series(run.metrics, "train_loss")
        if ex:
            ax.plot(ex, ey, color=colour, marker="o", markersize=3, label=label if label is not None else "train")
    ex, ey = metric_series(run.metrics, "test_loss")
    if ex:
        ax.plot(ex, ey, color=colour, linestyle="--", marker="x", markersize=4,
                label=None if label is not None else "test")


def accuracy_panel(ax, run: Curves, *, colour: str = "C0", label: str | None = None, gap: bool = True) -> None:
    """Test accuracy solid, train accuracy dashed, on one axis; with `gap`, the generalisation gap
    between them shaded where both were measured, and the final gap named in the legend."""
    tx, ty = metric_series(run.metrics, "test_acc")
    rx, ry = metric_series(run.metrics, "train_acc")
    ax.plot(tx, [100 * v for v in ty], color=colour, marker="o", markersize=3,
            label=label if label is not None else "test")
    ax.plot(rx, [100 * v for v in ry], color=colour, linestyle="--", marker="o", markersize=2,
            label=None if label is not None else "train")
    both = sorted(set(tx) & set(rx))
    if gap and both:
        test, train = dict(zip(tx, ty, strict=True)), dict(zip(rx, ry, strict=True))
        last = both[-1]
        ax.fill_between(both, [100 * test[e] for e in both], [100 * train[e] for e in both], color=colour,
                        alpha=0.12, label=f"gap {100 * (train[last] - test[last]):+.1f} pts at epoch {last}")


def lr_panel(ax, run: Curves, *, colour: str = "C0", label: str | None = None) -> bool:
    """The learning rate each step used (steps-post: a rate holds until the next step). False when the
    run has no per-step rates."""
    xs, ys = step_series(run.steps, "lr")
    if not xs:
        return False
    step = 1.0 / steps_per_epoch(run.steps)  # step i ran from (i - 1) * step to i * step on the epoch axis
    ax.plot([x - step for x in xs] + [xs[-1]], ys + ys[-1:], color=colour, linewidth=1.2, drawstyle="steps-post",
            label=label)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    return True


def _spread(values: Sequence[float]) -> bool:
    """Positive values spanning more than a factor of 20: an lr sweep (1e-4 .. 1e-1), whose curves
    all but the largest would lie on the floor of a linear axis."""
    return bool(values) and min(values) > 0 and max(values) / min(values) > 20


def _figure(panels: int, *, width_per_panel: float = 5.0, height: float = 3.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_per_panel * panels, height), layout="constrained")
    axes = fig.subplots(1, panels)
    return fig, list(axes) if panels > 1 else [axes]


def run_figure(run: Curves, *, title: str = "", limits: dict[str, tuple[float, float]] | None = None,
               with_lr: bool = False):
    """One run: loss | accuracy (train and test) [| learning rate]. `limits` fixes the y ranges
    (`shared_limits` of a set of runs, so their figures compare at a glance)."""
    limits = limits or {}
    fig, axes = _figure(3 if with_lr else 2)
    loss_panel(axes[0], run)
    _style(axes[0], title="loss", ylabel="loss", limits=limits.get("loss"))
    accuracy_panel(axes[1], run)
    _style(axes[1], title="accuracy", ylabel="accuracy (%)", limits=limits.get("accuracy"))
    for ax in axes[:2]:
        _legend(ax)
    if with_lr:
        if not lr_panel(axes[2], run):
            axes[2].text(0.5, 0.5, "no steps.csv", ha="center", va="center", transform=axes[2].transAxes)
        lr_limits = limits.get("lr")
        if lr_limits is not None and lr_limits[0] > 0:
            axes[2].set_yscale("log")
        _style(axes[2], title="learning rate", ylabel="learning rate", limits=lr_limits)
        if lr_limits is None:
            axes[2].set_ylim(bottom=0)
    if title:
        fig.suptitle(title)
    return fig


def lr_figure(lrs: Sequence[float], steps_per_epoch_: int, *, title: str = "learning rate"):
    """The learning rate at every optimizer step of a run (or a recipe's planned schedule)."""
    per_epoch = max(1, int(steps_per_epoch_))
    steps = [{"step": i + 1, "epoch": i // per_epoch + 1, "lr": float(v)} for i, v in enumerate(lrs)]
    fig, (ax,) = _figure(1, width_per_panel=7.0)
    lr_panel(ax, Curves(label="", steps=steps))
    _style(ax, title=title, ylabel="learning rate")
    ax.set_ylim(bottom=0)  # a rate's size reads from zero (a constant rate is not a zoomed-in line)
    ax.title.set_fontsize(10)
    return fig


def lr_find_figure(lrs: Sequence[float], losses: Sequence[float], smoothed: Sequence[float], *,
                   suggested: float | None = None, min_lr: float | None = None, title: str = "lr range test"):
    """The learning-rate range test (archspec.train.lr_find): each step's loss against its learning
    rate on a log axis, faint, under the smoothed loss; the suggested rate (steepest descent) as a
    point on the curve, and a tenth of the rate at the minimum as a dashed line. The y range runs
    from 0 to half again the highest smoothed loss before its minimum, so the diverging last steps
    (up to several times that) do not flatten the descent, which is the part that matters."""
    fig, (ax,) = _figure(1, width_per_panel=7.0, height=4.2)
    ax.plot(lrs, losses, color="C0", alpha=0.25, linewidth=0.8, label="loss per step")
    ax.plot(lrs, smoothed, color="C0", linewidth=1.6, label="smoothed")
    if suggested is not None:
        at = min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i] / suggested)))
        ax.plot([suggested], [smoothed[at]], "o", color="C3", markersize=7,
                label=f"suggested {suggested:.2g} (steepest descent)")
    if min_lr is not None:
        ax.axvline(min_lr / 10, color="C2", linestyle="--", linewidth=1, label=f"minimum / 10: {min_lr / 10:.2g}")
    ax.set_xscale("log")
    ax.set(title=title, xlabel="learning rate (log scale)", ylabel="training loss")
    ax.grid(True, alpha=0.3)
    if smoothed:
        lowest = min(range(len(smoothed)), key=smoothed.__getitem__)
        top = max(smoothed[: lowest + 1])  # the descent; the diverging tail may run off the top
        ax.set_ylim(0, 1.5 * top if top > 0 else 1.0)
    _legend(ax)
    ax.title.set_fontsize(10)
    return fig


# --- several runs ---------------------------------------------------------------------------------


def overlay_figure(runs: Sequence[Curves], *, title: str = "", limits: dict[str, tuple[float, float]] | None = None):
    """Every run in one figure, one colour per run (in the order given, which is the legend's):
    accuracy (test solid, train dashed) | loss (train solid, per step and smoothed where recorded;
    test dashed) | learning rate, when any run recorded its per-step rates."""
    limits = limits or {}
    with_lr = any(step_series(run.steps, "lr")[0] for run in runs)
    fig, axes = _figure(3 if with_lr else 2, width_per_panel=4.6, height=3.8)
    for i, run in enumerate(runs):
        colour = f"C{i % 10}"
        accuracy_panel(axes[0], run, colour=colour, label=run.label, gap=False)
        loss_panel(axes[1], run, colour=colour, label=run.label, raw=False)
        if with_lr:
            lr_panel(axes[2], run, colour=colour)
    _style(axes[0], title="accuracy (solid: test, dashed: train)", ylabel="accuracy (%)",
           limits=limits.get("accuracy"))
    _style(axes[1], title="loss (solid: train, dashed: test)", ylabel="loss", limits=limits.get("loss"))
    if with_lr:
        _style(axes[2], title="learning rate", ylabel="learning rate", limits=limits.get("lr"))
        if _spread([v for run in runs for v in step_series(run.steps, "lr")[1]]):
            axes[2].set_yscale("log")
        elif "lr" not in limits:
            axes[2].set_ylim(bottom=0)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def _band_points(runs: Sequence[Curves], key: str, per_step: bool) -> tuple[dict[float, list[float]], bool]:
    """{x: the runs' values at x} for one group, per step when every run has per-step losses."""
    step_curves = [step_series(run.steps) for run in runs] if per_step and key == "train_loss" else []
    use_steps = bool(step_curves) and all(xs for xs, _ in step_curves)
    by_x: dict[float, list[float]] = {}
    for xs, ys in step_curves if use_steps else (metric_series(run.metrics, key) for run in runs):
        for x, y in zip(xs, ys, strict=True):
            by_x.setdefault(x, []).append(y)
    return by_x, use_steps


def band_figure(groups: dict[str, Sequence[Curves]], *, key: str = "train_loss", title: str = "",
                per_step: bool = True):
    """Per group (one spec across the sweep grid), the band between the lowest and highest curve.

    This is the loss-landscape figure of the VGG-A with/without BatchNorm study: a narrow band
    means training behaves similarly whatever the learning rate. With `per_step` and `key`
    "train_loss", a group whose runs all have per-step losses (steps.csv) gets the band of the
    mini-batch losses step by step, as the study drew it; otherwise the band of the per-epoch
    values. At each point the band spans the runs that reached it (a diverged run stops
    contributing where it stopped)."""
    fig, (ax,) = _figure(1, width_per_panel=8.0, height=4.8)
    any_steps = False
    for i, (label, runs) in enumerate(groups.items()):
        by_x, use_steps = _band_points(runs, key, per_step)
        if not by_x:
            continue
        any_steps |= use_steps
        xs = sorted(by_x)
        low, high = [min(by_x[x]) for x in xs], [max(by_x[x]) for x in xs]
        colour = f"C{i % 10}"
        what = "per step" if use_steps else "per epoch"
        ax.fill_between(xs, low, high, color=colour, alpha=0.3, label=f"{label} ({len(runs)} runs, {what})")
        marker = {} if use_steps else {"marker": "o", "markersize": 3}
        for edge in (low, high):
            ax.plot(xs, edge, color=colour, linewidth=0.6 if use_steps else 1, **marker)
    name = "training loss per step" if any_steps else key.replace("_", " ")
    _style(ax, title=title or f"{name}: min-max band across the sweep", ylabel=name)
    if ax.collections:
        ax.legend(loc="best")
    return fig


# --- writing --------------------------------------------------------------------------------------


def figure_format(path: str | Path, fmt: str | None = None) -> str:
    """The format to write `path` in: `fmt` when given (it must agree with a .png/.svg/.pdf suffix),
    else the suffix's; png for a name without a suffix. Any other suffix without `fmt` is an error
    rather than a PNG under a misleading name."""
    raw_suffix = Path(path).suffix.lower()
    suffix = _SUFFIXES.get(raw_suffix)
    if fmt is None:
        if raw_suffix and suffix is None:
            raise ArchspecError(f'cannot tell the image format of "{path}"; name it .png, .svg or .pdf, or pass '
                                "--format", file=str(path))
        return suffix or "png"
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ArchspecError(f'unknown figure format "{fmt}"; choose one of {", ".join(FORMATS)}', path="--format")
    if suffix is not None and suffix != fmt:
        raise ArchspecError(f"the file name says {suffix} but --format says {fmt}", file=str(path), path="--format")
    return fmt


def figure_bytes(fig, fmt: str = "png", *, dpi: int = DEFAULT_DPI) -> bytes:
    """A matplotlib Figure rendered in memory as PNG, SVG or PDF (dpi matters for PNG only)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "archspec"}):  # SVG element ids from a fixed salt, not random
        fig.savefig(buffer, format=fmt, dpi=dpi, metadata=_METADATA[fmt])
    return buffer.getvalue()


def write_figure(fig, path: str | Path, *, fmt: str | None = None, dpi: int = DEFAULT_DPI,
                 make_folder: bool = False) -> Path:
    """Render `fig` and write it to `path` atomically. A missing folder is an error unless
    `make_folder`; a write failure is a one-line error naming the file."""
    path = Path(path)
    data = figure_bytes(fig, figure_format(path, fmt), dpi=dpi)
    try:
        if make_folder:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.parent.is_dir():
            raise ArchspecError("the folder for the figure does not exist", file=str(path.parent))
        return atomic_write_bytes(path, data)
    except OSError as exc:
        raise ArchspecError(f"cannot write figure: {exc.strerror or exc}", file=str(path)) from None
