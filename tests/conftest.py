"""Shared test helpers: write small spec files and run the CLI in-process."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture
def write(tmp_path):
    """write("name.yaml", "yaml text") -> Path, dedented."""

    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"))
        return p

    return _write


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


def tiny_recipe_text(epochs: int = 2) -> str:
    """A recipe for the tiny spec: Adam at 0.01, batches of 16, seed 3."""
    return f"name: tinyrecipe\nepochs: {epochs}\nbatch_size: 16\noptimizer: {{name: adam, lr: 0.01}}\nseed: 3\n"


TINY_SPEC = tiny_spec_text()
TINY_RECIPE = tiny_recipe_text()


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
