"""The learning-rate range test: the ramp, the suggestion rule, a real test run and the command."""

from __future__ import annotations

import math
import textwrap

import pytest

import archspec
from archspec.errors import ArchspecError
from archspec.figures import smooth
from archspec.recipes import load_recipe
from archspec.train.lr_find import STOP_FACTOR, lr_find, lr_ramp, suggest

# The MNIST digits shipped inside archspec: unlike `synthetic` (separable prototypes, whose loss an
# absurd learning rate drives to 0) their loss really explodes at the top of the range.
SPEC = """
name: tinymlp
dataset: mnist-mini
layers:
  - flatten
  - linear: 32
  - relu
  - linear: classes
"""


def test_the_ramp_is_exponential_from_start_to_end():
    ramp = lr_ramp(1e-6, 1.0, 7)
    assert ramp == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], rel=1e-9)
    for start, end, steps, flag in [(0, 1, 10, "--start"), (-1e-3, 1, 10, "--start"), (1e-3, 1e-3, 10, "--end"),
                                    (1e-3, math.inf, 10, "--end"), (1e-3, 1, 1, "--steps")]:
        with pytest.raises(ArchspecError, match=flag):
            lr_ramp(start, end, steps)


def test_suggestion_is_the_steepest_descent_before_the_minimum():
    lrs = lr_ramp(1e-6, 1.0, 61)
    # a loss that falls fastest at lr 1e-3 (per unit of log lr), bottoms out at ~3e-2 and then rises
    loss = [2.0 - math.tanh(math.log10(lr) + 3) + (3.0 * (math.log10(lr) + 1.5) ** 2 if lr > 3e-2 else 0.0)
            for lr in lrs]
    steepest, lowest = suggest(lrs, loss)
    assert steepest == pytest.approx(1e-3, rel=0.13)  # within one step of the grid (10 steps a decade)
    assert lowest == pytest.approx(lrs[min(range(len(loss)), key=loss.__getitem__)])
    assert 1e-2 < lowest < 1e-1
    # a flat curve (noise of 1%) has no suggestion: its dips mean nothing
    flat = [2.0 + 0.02 * math.sin(7 * i) for i in range(len(lrs))]
    assert suggest(lrs, flat) == (None, None)


def test_a_real_range_test_records_each_step_and_stops_when_the_loss_explodes(tmp_path):
    (tmp_path / "tiny.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    spec = archspec.load_spec(tmp_path / "tiny.yaml")
    recipe = load_recipe("quick", batch_size=32)
    result = lr_find(spec, recipe, start=1e-5, end=1e3, steps=40, device="cpu", limit_train=1024)
    taken = len(result.lrs)
    assert 5 < taken < 40  # adam at lr 100+ blows up before the end
    assert result.lrs == pytest.approx(lr_ramp(1e-5, 1e3, 40)[:taken])
    assert len(result.losses) == taken and all(math.isfinite(v) for v in result.losses)
    assert abs(result.losses[0] - math.log(10)) < 0.5  # an untrained 10-class model: cross-entropy near ln 10
    assert "passed 4x its lowest" in result.stop_reason or "NaN/inf" in result.stop_reason
    assert result.smoothed == pytest.approx(smooth(result.losses, max(3, taken // 10)))
    assert result.suggested is not None and 1e-5 < result.suggested < result.lrs[-1]
    assert result.min_lr is not None and result.suggested <= result.min_lr
    # the stop rule: the running (EMA, bias-corrected) loss at the last step exceeds 4x its lowest
    running, lowest, ema = [], math.inf, 0.0
    for i, value in enumerate(result.losses, start=1):
        ema = 0.9 * ema + 0.1 * value
        running.append(ema / (1 - 0.9 ** i))
        lowest = min(lowest, running[-1])
    if "passed" in result.stop_reason:
        assert running[-1] > STOP_FACTOR * lowest and all(r <= STOP_FACTOR * min(running[:i + 1])
                                                          for i, r in enumerate(running[:-1]))


def test_lr_find_command_prints_the_suggestion_and_writes_the_plot(tmp_path, cli):
    (tmp_path / "tiny.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    out = tmp_path / "plots" / "lrf.svg"
    (tmp_path / "plots").mkdir()
    result = cli("lr-find", tmp_path / "tiny.yaml", "--recipe", "quick", "--steps", "40", "--start", "1e-5",
                 "--end", "1000", "--limit-train", "1024", "--batch-size", "32", "--device", "cpu", "-o", out)
    assert result.exit_code == 0, result.output
    assert "suggested lr: " in result.output and "steepest descent" in result.output
    assert out.read_text().lstrip().startswith("<?xml") and "wrote" in result.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["lrf.svg"]

    bad = cli("lr-find", tmp_path / "tiny.yaml", "--start", "1", "--end", "0.1", "--device", "cpu",
              "-o", tmp_path / "x.png")
    assert bad.exit_code == 2 and "--end" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "x.png").exists()
    wrong = cli("lr-find", tmp_path / "tiny.yaml", "-o", tmp_path / "x.bmp")
    assert wrong.exit_code == 2 and "cannot tell the image format" in wrong.output
