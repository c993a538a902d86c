"""Shared test helpers: write small spec files and run the CLI in-process."""

from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TIMING = ("epoch_seconds", "images_per_second")  # the metrics columns that differ between identical runs


def write_file(folder: Path, name: str, text: str) -> Path:
    """Write `text`, dedented, to folder/name (parents made) and return the path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def write(tmp_path):
    """write("name.yaml", "yaml text") -> Path, dedented."""
    return lambda name, text: write_file(tmp_path, name, text)


def quiet_console() -> Console:
    """A console whose output goes nowhere visible (wide, so no line of a run's table wraps)."""
    return Console(file=io.StringIO(), width=200)


def without_timing(rows: list[dict]) -> list[dict]:
    """metrics.csv rows without their wall-clock columns: what two runs of the same seed share exactly."""
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def child_env(**overrides: str) -> dict[str, str]:
    """The environment for a `python -m archspec` child process: this checkout's archspec first on the
    path, one torch thread unless the caller's environment says otherwise, then `overrides`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(overrides)
    return env


@pytest.fixture
def cli():
    """cli("count", "x.yaml") -> typer Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from archspec.cli import app

    runner = CliRunner()

    def _run(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return _run


# --- the suite's tiny classifier ------------------------------------------------------------------------------
#
# Most training tests need *a* model that trains in well under a second on the CPU, not a particular one: one
# 4-channel conv on synthetic 3x8x8 images, 4 classes. The switches are the variants tests need on purpose:
# BatchNorm (running statistics: per-rank under DDP, eval mode in checkpoints), dropout (RNG state that a
# resume must restore), a larger image (the device-side crop path), no pooling.


def tiny_spec_text(name: str = "tiny", *, size: int = 8, bn: bool = False, pool: int | None = 2,
                   dropout: float | None = None) -> str:
    """The tiny spec's YAML (not indented; `conv: {out: 4, kernel: 3, padding: 1}` is its first layer)."""
    layers = ["conv: {out: 4, kernel: 3, padding: 1}", *(["bn"] if bn else []), "relu",
              *([f"pool: {pool}"] if pool else []), "flatten", *([f"dropout: {dropout}"] if dropout else []),
              "linear: classes"]
    head = [f"name: {name}", "dataset: synthetic", f"input: [3, {size}, {size}]", "classes: 4", "layers:"]
    return "\n".join(head + [f"  - {layer}" for layer in layers]) + "\n"


def tiny_recipe_text(epochs: int = 2, *, name: str = "tinyrecipe", optimizer: str = "{name: adam, lr: 0.01}",
                     seed: int = 3, **keys: str | int) -> str:
    """A recipe for the tiny spec: Adam at 0.01, batches of 16, seed 3; `keys` adds top-level lines
    (`schedule="{type: cosine}"` -> `schedule: {type: cosine}`) for the tests that need more."""
    lines = [f"name: {name}", f"epochs: {epochs}", "batch_size: 16", f"optimizer: {optimizer}", f"seed: {seed}",
             *(f"{key}: {value}" for key, value in keys.items())]
    return "\n".join(lines) + "\n"


TINY_SPEC = tiny_spec_text()
TINY_RECIPE = tiny_recipe_text()

# mnist-mini (shipped inside archspec: real digits, no download) with its conv width as a spec var, for
# sweeps and studies that vary `vars.width`.
TINY_MNIST_SPEC = """\
name: tinymnist
dataset: mnist-mini
vars: {width: 8}
layers:
  - conv: {out: width, kernel: 3, padding: 1}
  - relu
  - pool: 4
  - flatten
  - linear: classes
"""

# A slower run for the tests that start, stop or kill a real training process: each epoch takes a
# noticeable fraction of a second.
SLOW_SPEC = """\
name: slow
dataset: synthetic
input: [3, 16, 16]
classes: 4
layers:
  - conv: {out: 16, kernel: 3, padding: 1}
  - relu
  - conv: {out: 16, kernel: 3, padding: 1}
  - relu
  - pool: 2
  - flatten
  - linear: classes
"""


@pytest.fixture
def tiny_spec(tmp_path) -> Path:
    """TINY_SPEC written to tmp_path/tiny.yaml."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path


@pytest.fixture
def tiny_recipe(tmp_path) -> Path:
    """TINY_RECIPE (2 epochs) written to tmp_path/recipe.yaml."""
    path = tmp_path / "recipe.yaml"
    path.write_text(TINY_RECIPE)
    return path


@pytest.fixture
def no_run_plots(monkeypatch):
    """Runs skip drawing curves.png and lr.png at their end: matplotlib's ~0.5 s a figure is most of a tiny
    run's time. For tests that never look at those figures (test_train and test_figures do, and keep them)."""
    from archspec.train.observers import Plots

    monkeypatch.setattr(Plots, "_draw", staticmethod(lambda run: None))
