"""archspec.figures: the one figures module (run curves, overlays, bands, lr curves) and how it writes files."""

from __future__ import annotations

import math
import random

import pytest

from archspec.errors import ArchspecError
from archspec.figures import (
    Curves,
    band_figure,
    figure_bytes,
    figure_format,
    lr_figure,
    metric_series,
    overlay_figure,
    run_figure,
    shared_limits,
    smooth,
    smoothing_window,
    step_series,
    write_figure,
)


def metrics(accs, train_accs=None, losses=None) -> list[dict]:
    train_accs = train_accs or [a + 0.1 for a in accs]
    losses = losses or [2.0 - a for a in accs]
    return [{"epoch": i + 1, "train_loss": loss, "test_loss": loss + 0.1, "train_acc": tr, "test_acc": a}
            for i, (a, tr, loss) in enumerate(zip(accs, train_accs, losses, strict=True))]


def steps(losses, lrs=None, per_epoch=4) -> list[dict]:
    lrs = lrs or [0.1] * len(losses)
    return [{"step": i + 1, "epoch": i // per_epoch + 1, "loss": loss, "lr": lr}
            for i, (loss, lr) in enumerate(zip(losses, lrs, strict=True))]


# --- data -----------------------------------------------------------------------------------------


def test_smoothing_has_no_lag_and_keeps_straight_lines_and_ends():
    line = [3.0 - 0.01 * i for i in range(200)]
    assert smooth(line) == pytest.approx(line)  # a centred symmetric mean reproduces a straight stretch
    assert smooth([5.0] * 50) == pytest.approx([5.0] * 50)
    rng = random.Random(0)
    noisy = [1.0 + rng.gauss(0, 0.5) for _ in range(400)]
    smoothed = smooth(noisy)
    assert smoothed[0] == pytest.approx(noisy[0]) and smoothed[-1] == pytest.approx(noisy[-1])  # ends: their own
    spread = sum((v - 1.0) ** 2 for v in smoothed[30:-30]) / 340
    assert spread < 0.25 * 0.5**2 / 5  # a window of 21: the noise variance drops about 21x
    assert smoothing_window(400) == 21 and smoothing_window(30) == 1 and smoothing_window(10**7) == 501
    assert smooth([1.0, 5.0, 3.0], window=1) == [1.0, 5.0, 3.0]
    assert smooth([1.0, 5.0, 3.0], window=3) == [1.0, 3.0, 3.0]


def test_series_skip_missing_values_and_put_steps_on_the_epoch_axis():
    rows = [{"epoch": 1, "test_acc": 0.5}, {"epoch": 2, "test_acc": None}, {"epoch": 3, "test_acc": math.nan},
            {"epoch": 4, "test_acc": True}, {"epoch": 5, "test_acc": 0.7}]
    assert metric_series(rows, "test_acc") == ([1, 5], [0.5, 0.7])
    rows = steps([2.0, 1.5, None, 1.0, 0.8, 0.7], per_epoch=4)
    assert step_series(rows) == ([0.25, 0.5, 1.0, 1.25, 1.5], [2.0, 1.5, 1.0, 0.8, 0.7])
    assert step_series(rows, "lr")[0] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5]


def test_shared_limits_ignore_a_diverged_spike_and_log_an_lr_sweep():
    calm = [Curves(f"r{i}", metrics([0.3, 0.6, 0.8]), steps([2.0 - 0.01 * k for k in range(100)], [10.0**-i] * 100))
            for i in range(1, 4)]
    blown = Curves("blown", metrics([0.1, 0.1, 0.1]), steps([2.0] * 99 + [1e6], [0.5] * 100))
    limits = shared_limits([*calm, blown])
    assert limits["loss"][0] == 0 and 2.0 < limits["loss"][1] < 3.0  # the one 1e6 step does not set the scale
    assert limits["accuracy"] == (10, 91)  # 10% .. 90% (train) in 5-point steps, a point of headroom
    low, high = limits["lr"]
    assert 0 < low < 1e-3 and high > 0.5  # 0.001 .. 0.5 spans 500x: a positive lower end, a log axis
    same_lr = shared_limits([Curves("a", metrics([0.5]), steps([1.0] * 8, [0.1] * 8))])
    assert same_lr["lr"] == (0.0, pytest.approx(0.105))
    assert shared_limits([Curves("empty")]) == {}


# --- figures --------------------------------------------------------------------------------------


def _lines(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.lines}


def test_run_figure_draws_train_and_test_accuracy_on_one_axis_with_the_gap():
    run = Curves("r", metrics([0.5, 0.6, 0.7], train_accs=[0.55, 0.7, 0.9]), steps([2.0 - 0.02 * k for k in range(12)]))
    fig = run_figure(run, title="t", with_lr=True)
    loss_ax, acc_ax, lr_ax = fig.axes
    lines = _lines(acc_ax)
    assert list(lines["test"].get_ydata()) == pytest.approx([50, 60, 70])
    assert list(lines["train"].get_ydata()) == pytest.approx([55, 70, 90])
    assert lines["train"].get_linestyle() == "--"
    (gap,) = acc_ax.collections
    assert gap.get_label() == "gap +20.0 pts at epoch 3"
    # the per-step loss and the test loss per epoch; no raw layer under a window of 1 (12 steps)
    loss_lines = _lines(loss_ax)
    assert list(loss_lines["train, per step"].get_xdata()) == pytest.approx([k / 4 for k in range(1, 13)])
    assert list(loss_lines["test"].get_ydata()) == pytest.approx([1.6, 1.5, 1.4])
    assert len(lr_ax.lines) == 1
    shared = run_figure(run, limits={"loss": (0, 5), "accuracy": (0, 100), "lr": (1e-4, 1.0)}, with_lr=True)
    assert shared.axes[0].get_ylim() == (0, 5) and shared.axes[1].get_ylim() == (0, 100)
    assert shared.axes[2].get_yscale() == "log"


def test_a_run_without_steps_draws_its_loss_per_epoch():
    fig = run_figure(Curves("r", metrics([0.5, 0.6])))
    assert set(_lines(fig.axes[0])) == {"train", "test"} and len(fig.axes) == 2


def test_lr_figure_holds_each_rate_for_its_step():
    fig = lr_figure([0.1, 0.1, 0.05, 0.05], 2, title="lr")
    (line,) = fig.axes[0].lines
    assert line.get_drawstyle() == "steps-post"
    assert list(line.get_xdata()) == [0.0, 0.5, 1.0, 1.5, 2.0]  # step i runs from (i-1)/2 to i/2 epochs
    assert list(line.get_ydata()) == [0.1, 0.1, 0.05, 0.05, 0.05]


def test_overlay_lists_runs_in_the_order_given_and_logs_a_spread_lr():
    runs = [Curves(f"lr={lr}", metrics([0.4, 0.5]), steps([2.0] * 8, [lr] * 8)) for lr in (0.001, 0.01, 0.1)]
    fig = overlay_figure(runs, title="sweep")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["lr=0.001", "lr=0.01", "lr=0.1"]
    assert len(fig.axes) == 3 and fig.axes[2].get_yscale() == "log"
    colours = [line.get_color() for line in fig.axes[0].lines[::2]]
    assert colours == ["C0", "C1", "C2"]
    no_steps = overlay_figure([Curves("a", metrics([0.4]))])
    assert len(no_steps.axes) == 2  # no lr panel when no run recorded its rates


def test_band_figure_spans_the_runs_of_each_group():
    runs = [Curves("a", metrics([0.5, 0.6], losses=[2.0, 1.0])), Curves("b", metrics([0.5, 0.6], losses=[3.0, 0.5]))]
    ax = band_figure({"net": runs}).axes[0]
    assert list(ax.lines[0].get_ydata()) == [2.0, 0.5] and list(ax.lines[1].get_ydata()) == [3.0, 1.0]


# --- writing --------------------------------------------------------------------------------------


def test_figure_format_reads_the_suffix_or_the_option(tmp_path):
    assert figure_format("a.png") == "png" and figure_format("a.SVG") == "svg" and figure_format("a") == "png"
    assert figure_format("a", "pdf") == "pdf" and figure_format("a.pdf", "PDF") == "pdf"
    with pytest.raises(ArchspecError, match="the file name says png but --format says svg"):
        figure_format("a.png", "svg")
    with pytest.raises(ArchspecError, match='unknown figure format "gif"'):
        figure_format("a", "gif")
    with pytest.raises(ArchspecError, match="cannot tell the image format"):
        figure_format("a.jpg")


def test_write_figure_is_atomic_reproducible_and_says_what_went_wrong(tmp_path):
    def fig():
        return run_figure(Curves("r", metrics([0.5, 0.6])))

    for fmt, magic in (("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF-")):
        path = write_figure(fig(), tmp_path / f"f.{fmt}", dpi=40)
        assert path.read_bytes()[:len(magic)] == magic
        if fmt != "png":  # same data, same bytes: no dates, fixed ids
            assert figure_bytes(fig(), fmt) == path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png", "f.svg"]  # no temp files left
    import matplotlib.image

    small = matplotlib.image.imread(tmp_path / "f.png").shape
    large = matplotlib.image.imread(write_figure(fig(), tmp_path / "f80.png", dpi=80)).shape
    assert large[:2] == pytest.approx((2 * small[0], 2 * small[1]), abs=2)
    with pytest.raises(ArchspecError, match="the folder for the figure does not exist"):
        write_figure(fig(), tmp_path / "missing" / "f.png")
    assert write_figure(fig(), tmp_path / "made" / "f.png", make_folder=True, dpi=20).is_file()
