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
