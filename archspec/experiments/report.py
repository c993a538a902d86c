"""`archspec report`: one self-contained HTML page for a set of runs.

Self-contained means the page can be mailed, attached to a report or opened offline years later:
CSS is inline, every image is a base64 `data:` URI, and there is no external URL anywhere (no
fonts, scripts or stylesheets fetched from a CDN). Every string that comes from a user (spec and
run names, recipe values, error messages) goes through `html.escape`, so a spec named
``<script>`` is shown, not executed.

Sections: a header naming what made the runs (archspec and torch versions, devices, seeds); the
comparison table (as `archspec compare` prints it) and the overlaid accuracy, loss and learning-rate
curves; for runs that are trials of an `archspec tune` study, the study's Optuna figures
(experiments.study_figures); each distinct spec's layer table (`archspec.summarize`); then every
run's own figure (loss, train/test accuracy, learning rate), all drawn with the same y ranges so
runs compare at a glance.
Figures are PNG (at `dpi`) or SVG (sharp at any zoom, for copying into a paper).
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

from archspec.atomic_write import atomic_write_text
from archspec.errors import ArchspecError
from archspec.experiments.compare import STAT_COLUMNS, Comparison, compare, format_cell, formatted_rows
from archspec.experiments.runs import Run, natural_key
from archspec.figures import DEFAULT_DPI

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       margin: 0 auto; max-width: 1400px; padding: 24px 32px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; margin: 32px 0 8px;
     border-bottom: 1px solid #d0d7de; padding-bottom: 4px; } h3 { font-size: 16px; margin: 20px 0 6px; }
.meta { color: #57606a; margin-bottom: 16px; }
table.provenance { font-size: 13px; color: #57606a; margin-top: 0; }
table.provenance th { background: none; font-weight: 600; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; } tr:nth-child(even) td { background: #fbfcfd; }
.status-completed { color: #1a7f37; font-weight: 600; } .status-diverged { color: #cf222e; font-weight: 600; }
.status-interrupted, .status-running, .status-incomplete { color: #9a6700; font-weight: 600; }
.problem { color: #cf222e; } .note { color: #57606a; font-style: italic; }
img { max-width: 100%; border: 1px solid #d0d7de; border-radius: 4px; }
.run { margin-bottom: 24px; } .scroll { overflow-x: auto; max-width: 100%; } code { background: #f6f8fa; padding: 1px 4px; border-radius: 3px; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


REPORT_FORMATS = ("png", "svg")  # what an <img> shows in every browser (a PDF does not embed)
_MIME = {"png": "image/png", "svg": "image/svg+xml"}


def _img(data: bytes, fmt: str, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:{_MIME[fmt]};base64,{encoded}">'


def _distinct(values: list[Any]) -> str:
    """"a" when every run agrees, else "a (2 runs), b (1 run)"; runs that did not record it count too."""
    counts: dict[str, int] = {}
    for value in values:
        text = "not recorded" if value in (None, "") else str(value)
        counts[text] = counts.get(text, 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    ordered = sorted(counts.items(), key=lambda item: (item[0] == "not recorded", natural_key(item[0])))
    return ", ".join(f"{text} ({n} run{'s' if n != 1 else ''})" for text, n in ordered)


def _seed(run: Run) -> Any:
    seed = run.summary.get("seed")
    return seed if seed is not None else (run.recipe or {}).get("seed")


def _provenance_html(runs: list[Run]) -> str:
    """What made this page and the runs in it: the archspec version, and the torch versions, devices
    and seeds the runs recorded in summary.json (the seed from recipe.yaml when there is none)."""
    import archspec

    seeds = sorted({_seed(run) for run in runs if _seed(run) is not None}, key=natural_key)
    missing = sum(1 for run in runs if _seed(run) is None)
    seed_text = ", ".join(str(seed) for seed in seeds) or "not recorded"
    if seeds and missing:
        seed_text += f" (not recorded for {missing} run{'s' if missing != 1 else ''})"
    facts = [
        ("made by", f"archspec {archspec.__version__}, {time.strftime('%Y-%m-%d %H:%M')}"),
        ("runs", str(len(runs))),
        ("torch", _distinct([run.summary.get("torch") for run in runs])),
        ("device", _distinct([run.summary.get("device") for run in runs])),
        ("seeds", seed_text),
    ]
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    return f'<table class="provenance">{cells}</table>'


def _compare_html(table: Comparison) -> str:
    head = "".join(f"<th>{_e(header)}</th>" for _, header in table.columns)
    body = []
    for row, cells in zip(table.rows, formatted_rows(table), strict=True):
        tds = []
        for (key, _), text in zip(table.columns, cells, strict=True):
            if key == "status":
                tds.append(f'<td class="status-{_e(row.get("status"))}">{_e(text)}</td>')
            elif key in STAT_COLUMNS:
                tds.append(f'<td class="num">{_e(text)}</td>')
            elif key == "run":
                tds.append(f'<td><a href="#run-{_e(_anchor(text))}">{_e(text)}</a></td>')
            else:
                tds.append(f"<td>{_e(text)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _anchor(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)


def _spec_key(run: Run) -> str:
    return json.dumps(run.spec, sort_keys=True, default=str)


def _layer_table_html(run: Run) -> str:
    """The per-layer table of the run's resolved spec, or a note saying why there is none."""
    from archspec.layers import fmt_shape
    from archspec.spec.loader import load_spec
    from archspec.summary import human, summarize

    path = run.path / "spec.yaml"
    try:
        spec = load_spec(path)
        summary = summarize(spec)
    except ArchspecError as e:
        return f'<p class="problem">layer table unavailable: {_e(e)}</p>'
    rows = []
    for row in summary.layers:
        name = "\u00a0\u00a0" * row.depth + row.name.split(".")[-1]
        rows.append(f'<tr><td class="num">{_e(row.index)}</td><td>{_e(name)}</td><td>{_e(row.kind)}</td>'
                    f'<td class="num">{_e(fmt_shape(tuple(row.output_shape)))}</td>'
                    f'<td class="num">{row.params:,}</td><td class="num">{_e("" if row.macs == 0 else human(row.macs))}'
                    "</td></tr>")
    return (f"<p>{_e(fmt_shape(tuple(spec.input_shape)))} \u2192 {_e(fmt_shape(tuple(spec.output_shape)))}, "
            f"<b>{summary.total_params:,}</b> parameters ({summary.trainable_params:,} trainable), "
            f"{_e(human(summary.macs))} MACs per sample</p>"
            "<table><thead><tr><th>#</th><th>layer</th><th>kind</th><th>output</th><th>params</th><th>MACs</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def run_figures(table: Comparison) -> list:
    """Each run's figure (loss | accuracy | learning rate), None for a run without metrics; all with
    the same y ranges (`shared_limits` over the runs), so a lower curve means a lower number."""
    from archspec.figures import run_figure, shared_limits

    curves = [run.curves() for run in table.runs]
    limits = shared_limits([c for c in curves if c.metrics])
    return [run_figure(c, title=f"{run.spec_name} + {run.recipe_name}", limits=limits, with_lr=True)
            if c.metrics else None for run, c in zip(table.runs, curves, strict=True)]


def _run_html(run: Run, row: dict[str, Any], figure: str) -> str:
    facts = [("spec", run.spec_name), ("recipe", run.recipe_name), ("dataset", run.dataset or "-"),
             ("seed", "-" if _seed(run) is None else _seed(run))]
    facts += [(header, format_cell(key, row)) for key, header in STAT_COLUMNS.items()]
    head = "".join(f"<th>{_e(k)}</th>" for k, _ in facts)
    cells = "".join(f"<td>{_e(v)}</td>" for _, v in facts)
    problems = f'<p class="problem">{_e("; ".join(run.problems))}</p>' if run.problems else ""
    return (f'<div class="run" id="run-{_e(_anchor(run.name))}"><h3>{_e(run.name)}</h3>{problems}'
            f'<div class="scroll"><table><tr>{head}</tr><tr>{cells}</tr></table></div>{figure}</div>')


def _architectures_html(table: Comparison) -> list[str]:
    """One layer table per distinct spec (runs of two edited versions of one spec name get two)."""
    parts = ["<h2>Architectures</h2>"]
    seen: dict[str, str] = {}
    for run in table.runs:
        if run.spec is None:
            continue
        key = _spec_key(run)
        if key in seen:
            continue
        name = run.spec_name
        taken = sum(1 for label in seen.values() if label.split(" (")[0] == name)
        label = name if not taken else f"{name} (version {taken + 1})"
        seen[key] = label
        users = [r.name for r in table.runs if r.spec is not None and _spec_key(r) == key]
        parts.append(f"<h3>{_e(label)}</h3><p class=\"meta\">used by: {_e(', '.join(users))}</p>")
        parts.append(_layer_table_html(run))
    if not seen:
        parts.append('<p class="note">no run has a spec.yaml</p>')
    return parts


def _studies_html(runs: list[Run], fmt: str, dpi: int) -> list[str]:
    """For runs that are trials of an `archspec tune` study: the study's own figures (Optuna's)."""
    from archspec.experiments.study_figures import (
        FIGURES,
        open_study,
        studies_of,
        study_figures,
        trial_counts,
    )

    parts = []
    for folder in studies_of(runs):
        parts.append(f"<h2>Search: {_e(folder)}</h2>")
        study = open_study(folder)
        if study is None:
            parts.append('<p class="note">this folder holds an Optuna study; install archspec[tune] to draw it</p>')
            continue
        parts.append(f'<p class="meta">{_e(trial_counts(study))}</p>')
        for name, data in study_figures(study, fmt, dpi=dpi).items():
            title = FIGURES[name][0]
            parts.append(f"<h3>{_e(title)}</h3>{_img(data, fmt, title)}")
    return parts


def build_html(runs: list[Run], *, title: str = "archspec report", sort: str | None = None, fmt: str = "png",
               dpi: int = DEFAULT_DPI) -> str:
    """The whole page as a string, its figures embedded as `fmt` (png or svg)."""
    from archspec.figures import figure_bytes, overlay_figure

    if not runs:
        raise ArchspecError("no runs to report")
    if fmt not in REPORT_FORMATS:
        raise ArchspecError(f'the report embeds png or svg figures, not "{fmt}"', path="--format")
    table = compare(runs, sort=sort)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _provenance_html(table.runs),
        "<h2>Comparison</h2>",
        _compare_html(table),
    ]
    if table.options:
        parts.append('<p class="note">option columns: only the recipe/spec settings that differ between '
                     "these runs</p>")
    if any(run.metrics for run in table.runs):
        overlay = figure_bytes(overlay_figure(table.curves()), fmt, dpi=dpi)
        parts.append(_img(overlay, fmt, "overlaid curves of all runs"))
    parts += _studies_html(table.runs, fmt, dpi)
    parts += _architectures_html(table)
    parts.append("<h2>Runs</h2>")
    for run, row, fig in zip(table.runs, table.rows, run_figures(table), strict=True):
        figure = ('<p class="note">no metrics yet</p>' if fig is None
                  else _img(figure_bytes(fig, fmt, dpi=dpi), fmt, f"curves of {run.name}"))
        parts.append(_run_html(run, row, figure))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(runs: list[Run], out: str | Path, *, title: str = "archspec report", sort: str | None = None,
                 fmt: str = "png", dpi: int = DEFAULT_DPI) -> Path:
    """Render and atomically write the report; returns its path."""
    out = Path(out)
    if not out.parent.is_dir():
        raise ArchspecError("the folder for the report does not exist", file=str(out.parent))
    page = build_html(runs, title=title, sort=sort, fmt=fmt, dpi=dpi)
    try:
        return atomic_write_text(out, page)
    except OSError as exc:
        raise ArchspecError(f"cannot write the report: {exc.strerror or exc}", file=str(out)) from None
