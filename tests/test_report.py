"""archspec report: one self-contained HTML page (no external URL), escaped, with a header naming
what made the runs, the comparison, the layer tables and every run's curves on shared y ranges;
rendered in headless Chromium when one is installed."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

import archspec
from archspec.errors import ArchspecError
from archspec.experiments.report import build_html, write_report
from archspec.experiments.runs import find_runs

from .test_compare import SPEC, metrics_rows, recipe_dict, summary, train_tiny, write_run

pytestmark = pytest.mark.usefixtures("no_run_plots")  # no test here looks at a run's curves.png / lr.png


class Page(HTMLParser):
    """Collects every tag, its attributes and the visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """Two real runs (lr 0.01 / 0.001), plus a hand-written run that was killed before its summary."""
    tmp = tmp_path_factory.mktemp("report")
    root = tmp / "runs"
    for lr in ("0.01", "0.001"):
        assert train_tiny(tmp, root / f"lr{lr}", overrides=[f"optimizer.lr={lr}"]).status == "completed"
    write_run(root, "killed", recipe=recipe_dict(), spec=SPEC, metrics=metrics_rows([0.2, 0.3]))
    return root


def test_report_is_self_contained_and_complete(runs_root, tmp_path):
    out = write_report(find_runs([runs_root]), tmp_path / "report.html", title="LR study")
    page = out.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    doc = parse(page)
    for tag, attrs in doc.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:image/png;base64,", "data:image/svg+xml;base64,", "#")), value[:40]
        assert tag not in ("script", "link", "iframe", "object")
    anchors = {attrs["id"] for _, attrs in doc.tags if attrs.get("id")}
    for _, attrs in doc.tags:
        if attrs.get("href"):
            assert attrs["href"][1:] in anchors  # every in-page link has a target

    text = " ".join(doc.text)
    assert "LR study" in text and "Comparison" in text and "Architectures" in text
    for name in ("lr0.01", "lr0.001", "killed"):
        assert name in text
    assert "optimizer.lr" in text  # the differing option
    assert "incomplete (missing summary.json" in text  # the killed run is marked
    # the layer table of the tiny spec (from archspec.summarize) and its total
    for layer in ("conv1", "bn1", "dropout1", "linear1"):
        assert layer in text
    assert "380" in text

    images = [attrs["src"] for tag, attrs in doc.tags if tag == "img"]
    # the overlay, and one figure per run (the killed one too: it has metrics)
    assert len(images) == 1 + 3
    for src in images:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_report_header_names_archspec_torch_device_and_seeds(tmp_path):
    """What made the runs: archspec's version, and each run's torch, device and seed (summary.json,
    else recipe.yaml); values that differ are listed with their counts."""
    root = tmp_path / "runs"
    write_run(root, "a", recipe=recipe_dict(seed=3), spec=SPEC,
              summary=summary(0.5, 1.0, torch="2.14.1+cu130", device="cuda:0", seed=3))
    write_run(root, "b", recipe=recipe_dict(seed=11), spec=SPEC,
              summary=summary(0.6, 1.0, torch="2.14.1+cu130", device="cpu", seed=11))
    write_run(root, "c", recipe=recipe_dict(seed=2), spec=SPEC, summary=summary(0.7, 1.0, torch="2.14.1+cu130"))
    doc = parse(build_html(find_runs([root])))
    rows = {}
    header = doc.text[doc.text.index("made by"):]
    for key, value in zip(header[0:10:2], header[1:10:2], strict=True):
        rows[key] = value
    assert rows["made by"].startswith(f"archspec {archspec.__version__}, ")
    assert rows["runs"] == "3" and rows["torch"] == "2.14.1+cu130"
    assert rows["device"] == "cpu (1 run), cuda:0 (1 run), not recorded (1 run)"  # unknowns last
    assert rows["seeds"] == "2, 3, 11"  # numeric order; run c's from its recipe.yaml


def test_run_figures_share_their_y_ranges(runs_root):
    """Every run's loss, accuracy and lr panels have the same limits, so the pictures compare."""
    from archspec.experiments.compare import compare
    from archspec.experiments.report import run_figures

    figures = run_figures(compare(find_runs([runs_root])))
    assert len(figures) == 3 and all(fig is not None for fig in figures)
    for panel in range(2):
        limits = {fig.axes[panel].get_ylim() for fig in figures}
        assert len(limits) == 1, (panel, limits)
    lr_limits = {fig.axes[2].get_ylim() for fig in figures if fig.axes[2].lines}
    assert len(lr_limits) == 1
    low, high = next(iter(limits))
    assert 0 <= low < high <= 100


def test_report_can_embed_svg_figures(runs_root, tmp_path):
    page = write_report(find_runs([runs_root]), tmp_path / "r.html", fmt="svg").read_text()
    srcs = [attrs["src"] for tag, attrs in parse(page).tags if tag == "img"]
    assert len(srcs) == 4 and all(src.startswith("data:image/svg+xml;base64,") for src in srcs)
    assert all(b"<svg" in base64.b64decode(src.split(",", 1)[1])[:400] for src in srcs)
    with pytest.raises(ArchspecError, match="png or svg"):
        build_html(find_runs([runs_root]), fmt="pdf")


def test_user_strings_are_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    write_run(tmp_path / "runs", "run-" + evil.replace("/", "_"), recipe=recipe_dict(description=evil),
              spec={**SPEC, "description": evil}, summary=summary(0.5, 1.0, recipe=evil, dataset='"><img src=x>'))
    page = build_html(find_runs([tmp_path / "runs"]), title=evil)
    assert "<script>" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;alert(1)&lt;" in page
    doc = parse(page)
    assert not any(tag == "script" for tag, _ in doc.tags)
    assert all(attrs.get("src", "data:").startswith("data:") for tag, attrs in doc.tags if tag == "img")


def test_two_versions_of_a_spec_get_two_layer_tables(tmp_path):
    wide = json.loads(json.dumps(SPEC))
    wide["layers"][0]["conv"]["out"] = 8
    write_run(tmp_path, "narrow", recipe=recipe_dict(), spec=SPEC, summary=summary(0.5, 1.0))
    write_run(tmp_path, "wide", recipe=recipe_dict(), spec=wide, summary=summary(0.6, 1.0))
    text = " ".join(parse(build_html(find_runs([tmp_path]))).text)
    assert "tiny (version 2)" in text
    counts = {archspec.summarize(archspec.load_spec(tmp_path / name / "spec.yaml")).total_params
              for name in ("narrow", "wide")}
    assert len(counts) == 2
    for count in counts:
        assert f"{count:,}" in text


def test_a_spec_that_does_not_load_is_noted_not_fatal(tmp_path):
    write_run(tmp_path, "bad", recipe=recipe_dict(), spec={"name": "bad", "layers": [{"nope": 1}]},
              summary=summary(0.5, 1.0))
    text = " ".join(parse(build_html(find_runs([tmp_path]))).text)
    assert "layer table unavailable" in text


def test_cli_report_and_its_errors(runs_root, cli, tmp_path):
    out = tmp_path / "r.html"
    result = cli("report", runs_root / "lr0.01", "-o", out, "--format", "svg", "--dpi", "80")
    assert result.exit_code == 0, result.stderr
    assert out.read_text().startswith("<!DOCTYPE html>") and "data:image/svg+xml" in out.read_text()
    bad = cli("report", runs_root, "-o", out, "--format", "pdf")
    assert bad.exit_code == 2 and "png or svg" in bad.stderr
    missing = cli("report", runs_root, "-o", tmp_path / "no" / "r.html")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    not_run = cli("report", tmp_path / "nothing-here", "-o", out)
    assert not_run.exit_code == 2 and "no such run directory" in not_run.stderr
    with pytest.raises(ArchspecError):
        build_html([])


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary (apt-get install chromium)")
def test_report_renders_in_headless_chromium(runs_root, tmp_path):
    import matplotlib.image

    page = write_report(find_runs([runs_root]), tmp_path / "report.html")
    shot = Path(os.environ.get("ARCHSPEC_REPORT_SHOT", tmp_path / "shot.png"))  # set it to keep the picture
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
           Path(page).resolve().as_uri()]
    subprocess.run(cmd, check=False, capture_output=True, timeout=120)
    assert shot.is_file(), "chromium wrote no screenshot"
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert pixels.std() > 0.05  # text, tables and plots: far from a blank page
