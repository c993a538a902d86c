"""Readable output at any width: tables never cut a value, piped output is never wrapped mid-token.

The CLI's consoles follow one rule (archspec.terminal): COLUMNS when set, else the terminal's
width, else no limit. Each check below looks for the real values (parameter counts, learning
rates, accuracies) whole in what was printed, at 60 and 80 columns and piped.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
from rich.console import Console
from typer.testing import CliRunner

import archspec
from archspec.cli import app
from archspec.tables import Column, fit_table, leaner_layouts, print_table
from archspec.terminal import PIPE_WIDTH, AutoWidthConsole

from .conftest import ROOT
from .test_compare import SPEC, TINY_RECIPE, TINY_SPEC, metrics_rows, recipe_dict, summary, write_run

pytestmark = pytest.mark.usefixtures("no_run_plots")  # no test here looks at a run's curves.png / lr.png

WIDTHS = (60, 80)


def run_cli(*args, columns: int | None):
    """The CLI in-process with stdout not a terminal, with COLUMNS set (or removed)."""
    env = {"COLUMNS": None if columns is None else str(columns)}
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def longest_line(text: str) -> int:
    return max((len(line.rstrip()) for line in text.splitlines()), default=0)


# --- the width rule ----------------------------------------------------------------------------


def test_width_follows_columns_then_terminal_then_no_limit(monkeypatch):
    monkeypatch.setenv("COLUMNS", "63")
    assert AutoWidthConsole(file=io.StringIO()).width == 63
    assert AutoWidthConsole(file=io.StringIO(), force_terminal=True).width == 63
    monkeypatch.delenv("COLUMNS")
    assert AutoWidthConsole(file=io.StringIO()).width == PIPE_WIDTH  # a file or pipe: no limit
    assert AutoWidthConsole(file=io.StringIO(), width=90).width == 90  # an explicit width wins
    console = AutoWidthConsole(file=io.StringIO())
    monkeypatch.setenv("COLUMNS", "71")  # read at every print, not once at construction
    assert console.width == 71


# --- the table fitter ----------------------------------------------------------------------------


def _columns():
    return [Column("#", ["1", "22"], justify="right"),
            Column("name", ["a fairly long description of a thing", "short"], wrap=True),
            Column("params", ["1,181,184", "37,754,880"], justify="right"),
            Column("MACs", ["301.99M", "2.42G"], justify="right")]


def _printed(width: int, layouts) -> str:
    out = io.StringIO()
    print_table(Console(file=out, width=width, color_system=None), layouts)
    return out.getvalue()


def test_fitter_drops_low_value_columns_before_wrapping_text():
    layouts = leaner_layouts(_columns(), ("#", "MACs"))
    wide, needed = fit_table(Console(width=200), layouts)
    assert [c.header for c in wide.columns] == ["#", "name", "params", "MACs"] and needed <= 200
    narrower, _ = fit_table(Console(width=58), layouts)
    assert [c.header for c in narrower.columns] == ["name", "params", "MACs"]  # dropped, nothing wrapped
    text = _printed(58, layouts)
    assert "a fairly long description of a thing" in text
    squeezed = _printed(40, layouts)  # now the description wraps, between words
    assert "a fairly long description of a thing" not in squeezed and "description" in squeezed


@pytest.mark.parametrize("width", range(12, 90, 7))
def test_fitter_never_cuts_a_value_at_any_width(width):
    text = _printed(width, leaner_layouts(_columns(), ("#", "MACs")))
    for value in ("1,181,184", "37,754,880", "description"):  # the columns that are never dropped
        assert value in text, (width, text)
    if "MACs" in text:
        assert "301.99M" in text and "2.42G" in text
    assert "…" not in text


def test_rows_printed_one_at_a_time_line_up_through_samples():
    lines = []
    for i, value in enumerate(["0.5", "12.25"]):
        out = io.StringIO()
        print_table(Console(file=out, width=80), [[Column("loss", [value], justify="right", samples=("000.00",))]],
                    show_header=i == 0)
        lines.append(out.getvalue().splitlines()[-1])
    assert len(lines[0]) == len(lines[1])


# --- count ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize("name", ["variant2.yaml", "airbench.yaml", "resnet18.yaml"])
def test_count_shows_every_number_whole(name, columns):
    result = run_cli("count", ROOT / "specs" / name, columns=columns)
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert longest_line(text) <= columns, text
    summary = archspec.summarize(archspec.load_spec(ROOT / "specs" / name))
    for row in summary.layers:
        assert f"{row.params:,}" in text
        assert str(row.output_shape[0]) in text
    assert f"{summary.total_params:,}" in text and "…" not in text
    assert re.search(r"fp32 size [\d.]+ MB", text) and re.search(r"MACs/sample [\d.]+[KMG]", text)  # items whole
    kinds = " ".join(text.split())  # a kind may wrap between words, never inside one
    for row in summary.layers:
        for word in row.kind.split():
            assert word in kinds


def test_count_piped_is_not_held_to_80_columns():
    result = run_cli("count", ROOT / "specs" / "variant2.yaml", columns=None)
    rows = [line for line in result.stdout.splitlines() if "conv_bn(out=1024)" in line or "conv_bn(out=2048)" in line]
    # every column whole on the row's own line, through MACs and the saved-memory column
    assert len(rows) == 4 and all(re.search(r"\[\d+, 8, 8\] .* \d+\.\d\d[MG] +\d+\.\d+ [KMG]B$", row.rstrip())
                                  for row in rows), rows


def test_piped_count_through_a_real_pipe(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "archspec", "count", str(ROOT / "specs" / "airbench.yaml")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.strip().startswith("4 ") or " group3 " in line)
    assert "1,180,672 (1,180,160 tr.)" in row  # whole, on the layer's own line
    assert longest_line(proc.stdout) > 80


# --- compare -------------------------------------------------------------------------------------


@pytest.fixture
def lr_runs(tmp_path):
    root = tmp_path / "runs"
    for i, (lr, acc) in enumerate([(0.001, 0.7852), (0.003, 0.7), (0.01, 0.6)]):
        write_run(root, f"tiny-sgd-2025010{i}-120000", recipe=recipe_dict(optimizer__lr=lr), spec=SPEC,
                  summary=summary(acc, 30.0 * (i + 1), images_per_second=12345.6), metrics=metrics_rows([acc]))
    other = dict(SPEC, name="a_much_longer_spec_name")
    write_run(root, "mixed-run", recipe=recipe_dict(optimizer__lr=0.01, schedule__type="cosine"), spec=other,
              summary=summary(0.9, 20.0, spec="a_much_longer_spec_name", recipe="adam_heavy", status="interrupted"),
              metrics=metrics_rows([0.9]))
    return root


@pytest.mark.parametrize("columns", WIDTHS)
def test_compare_shows_every_number_whole(lr_runs, columns):
    result = run_cli("compare", lr_runs, columns=columns)
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert longest_line(text) <= columns, text
    for value in ("0.001", "0.003", "0.01", "78.52%", "70.00%", "60.00%", "90.00%", "a_much_longer_spec_name",
                  "adam_heavy", "cosine", "interrupted"):
        assert re.search(rf"(?<![\w.]){re.escape(value)}(?![\w%])", text), (value, text)
    assert "…" not in text


def test_compare_piped_keeps_every_column(lr_runs):
    text = run_cli("compare", lr_runs, columns=None).stdout
    header = next(line for line in text.splitlines() if "final" in line)
    for name in ("spec", "recipe", "lr", "schedule", "train loss", "test loss", "time", "img/s", "status"):
        assert name in header


# --- sweep --dry-run -----------------------------------------------------------------------------


@pytest.fixture
def sweep_files(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(textwrap.dedent(TINY_SPEC).lstrip())
    recipe = tmp_path / "tinyrecipe.yaml"
    recipe.write_text(textwrap.dedent(TINY_RECIPE).lstrip())
    return spec, recipe


@pytest.mark.parametrize("columns", [*WIDTHS, None])
def test_sweep_dry_run_never_splits_a_grid_value(sweep_files, tmp_path, columns):
    spec, recipe = sweep_files
    result = run_cli("sweep", spec, "--recipe", recipe, "--grid", "optimizer.lr=1e-3,3e-3,1e-2",
                     "--grid", "optimizer.weight_decay=0,5e-4", "--out", tmp_path / "s", "--dry-run", columns=columns)
    assert result.exit_code == 0, result.stderr
    for lr in ("1e-3", "3e-3", "1e-2"):
        assert f"optimizer.lr={lr}" in result.stdout
    assert "optimizer.weight_decay=5e-4" in result.stdout
    if columns is None:  # piped: one line per cell, its run directory on it
        rows = [line for line in result.stdout.splitlines() if "optimizer.lr=" in line]
        assert len(rows) == 6 and all("tiny_lr=" in row for row in rows)
    else:
        assert longest_line(result.stdout) <= columns


# --- train ---------------------------------------------------------------------------------------


def _train(tmp_path, console, **kwargs):
    from archspec.recipes import load_recipe
    from archspec.train.loop import train

    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(textwrap.dedent(TINY_SPEC).lstrip())
    recipe = load_recipe("quick", overrides=["epochs=2", "batch_size=16", "optimizer.lr=0.00123"])
    return train(archspec.load_spec(spec_path), recipe, device="cpu", runs_root=tmp_path / "runs", limit_train=64,
                 limit_test=32, console=console, **kwargs)


def _frames(raw: str) -> list[str]:
    """The lines a terminal showed: escape codes removed, carriage returns split."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    return [frame for frame in re.split(r"[\r\n]", text) if frame.strip()]


@pytest.mark.parametrize("width", WIDTHS)
def test_train_on_a_narrow_terminal_shows_every_number_whole(tmp_path, monkeypatch, width):
    import archspec.train.report as report

    monkeypatch.setattr(report, "STATS_EVERY_S", 0.0)  # refresh the bar's numbers at every step
    out = io.StringIO()
    result = _train(tmp_path, Console(file=out, width=width, force_terminal=True, color_system=None))
    frames = _frames(out.getvalue())
    too_long = [f for f in frames if len(f.rstrip()) > width]
    assert all(str(result.run_dir) in f for f in too_long), too_long  # only a path longer than the line
    bars = [f for f in frames if f.startswith("epoch ") and " eta " in f]
    assert bars and all(re.search(r"\d+/4 \d+:\d\d eta (\d+:\d\d|-:--)", f) for f in bars)  # steps, elapsed, ETA
    assert any("loss " in f for f in bars)
    for frame in bars:  # every shown number is whole: an lr is 1.23e-03, never 1.23e-
        assert not re.search(r"lr \S*$", frame) or re.search(r"lr \d\.\d\de-\d\d$", frame.rstrip())
    text = "\n".join(frames)
    for row in result.metrics:
        assert f"{row['train_loss']:.4f}" in text and f"{100 * row['test_acc']:.2f}%" in text
    assert "1.23e-03" in text and f"{result.params:,}" in text
    assert "data synthetic (64 train / 32 test)" in text  # the header wraps between items only
    assert str(result.run_dir) in text  # the summary keeps the run directory whole


def test_train_piped_prints_plain_lines_and_a_heartbeat(tmp_path, monkeypatch):
    import archspec.train.report as report

    out = io.StringIO()
    monkeypatch.setattr(report, "monotonic", _fake_clock(step=1.0))
    _train(tmp_path, AutoWidthConsole(file=out), log_every=2.5)
    lines = out.getvalue().splitlines()
    beats = [line for line in lines if re.match(r"epoch \d/2  step \d/4  loss ", line)]
    assert beats, lines
    assert all(" elapsed " in line and " eta " in line and "lr 1.23e-03" in line for line in beats)
    assert "\x1b" not in out.getvalue()
    assert any(line.startswith("summary: status completed") for line in lines)


def _fake_clock(step: float):
    """A monotonic clock that advances `step` seconds at every read (a slow run, instantly)."""
    now = [0.0]

    def tick() -> float:
        now[0] += step
        return now[0]

    return tick


def test_no_heartbeat_when_log_every_is_zero(tmp_path, monkeypatch):
    import archspec.train.report as report

    out = io.StringIO()
    monkeypatch.setattr(report, "monotonic", _fake_clock(step=100.0))
    _train(tmp_path, AutoWidthConsole(file=out), log_every=0)
    assert not [line for line in out.getvalue().splitlines() if "  step " in line]


@pytest.mark.parametrize("columns", WIDTHS)
def test_cli_train_at_narrow_columns_prints_whole_lines(tmp_path, columns):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(textwrap.dedent(TINY_SPEC).lstrip())
    result = run_cli("train", spec, "--recipe", "quick", "--epochs", "1", "--lr", "0.00123", "--limit-train", "64",
                     "--limit-test", "32", "--device", "cpu", "--runs-dir", tmp_path / "runs", columns=columns)
    assert result.exit_code == 0, result.stderr
    summary_file = json.loads(next((tmp_path / "runs").glob("*/summary.json")).read_text())
    assert f"{summary_file['params']:,}" in result.stdout and "lr 1.23e-03" in result.stdout
    assert f"{100 * summary_file['final_test_acc']:.2f}%" in result.stdout


# --- dataset downloads ---------------------------------------------------------------------------


def test_a_download_reports_progress_in_a_log(tmp_path, monkeypatch, capsys):
    import archspec.data.datasets as datasets
    import archspec.data.download_progress as progress

    from .test_data import Download, _cifar_tarball, md5

    archive, _ = _cifar_tarball(tmp_path)
    monkeypatch.setitem(datasets.DOWNLOADS, "cifar10", (
        Download("cifar-10-python.tar.gz", md5(archive), (archive.as_uri(),), archive=True),))
    monkeypatch.setattr(progress, "monotonic", _fake_clock(step=20.0))  # every chunk is "20 s later"
    datasets.load_dataset("cifar10", "test", data_dir=tmp_path / "data", download=True)
    err = capsys.readouterr().err
    size = archive.stat().st_size
    assert re.search(r"downloading cifar-10-python.tar.gz: [\d.]+ (B|kB) of [\d.]+ (B|kB) \(100%\), ", err), err
    assert f"downloaded cifar-10-python.tar.gz ({size / 1e3:.1f} kB in " in err or f"({size} B in " in err


def test_a_download_on_a_terminal_draws_a_bar():
    from archspec.data.download_progress import DownloadProgress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    with DownloadProgress("big.tar.gz", 3_000_000, stream=out) as bar:
        for _ in range(3):
            bar.advance(1_000_000)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "big.tar.gz" in text and "3.0 MB" in text and "downloaded big.tar.gz (3.0 MB in" in text
