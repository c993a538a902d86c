"""`archspec report`: one self-contained HTML page for a set of runs.

Self-contained means the page can be mailed, attached to a report or opened offline years later:
CSS is inline, every image is a base64 `data:` URI, and there is no external URL anywhere (no
fonts, scripts or stylesheets fetched from a CDN). Every string that comes from a user (spec and
run names, recipe values, error messages) goes through `html.escape`, so a spec named
``<script>`` is shown, not executed.

Sections: the comparison table (as `archspec compare` prints it) and the overlaid curves; each
distinct spec's layer table (`archspec.summarize`); then every run's own curves (its curves.png,
or drawn from its metrics when the picture is missing).
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

from archspec.errors import ArchspecError
from archspec.experiments.compare import STAT_COLUMNS, Comparison, compare, format_cell, formatted_rows
from archspec.experiments.runs import Run
from archspec.io import atomic_write_text

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       margin: 0 auto; max-width: 1400px; padding: 24px 32px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; margin: 32px 0 8px;
     border-bottom: 1px solid #d0d7de; padding-bottom: 4px; } h3 { font-size: 16px; margin: 20px 0 6px; }
.meta { color: #57606a; margin-bottom: 16px; }
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


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


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


def _curves_png(run: Run) -> bytes | None:
    """The run's curves.png, or the same figure drawn from its metrics when the file is missing."""
    picture = run.path / "curves.png"
    if picture.is_file():
        try:
            return picture.read_bytes()
        except OSError:
            pass
    if not run.metrics:
        return None
    import tempfile

    from archspec.train.plots import plot_curves

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "curves.png"
        plot_curves(run.metrics, target, title=f"{run.spec_name} + {run.recipe_name}")
        return target.read_bytes()


def _run_html(run: Run, row: dict[str, Any]) -> str:
    facts = [("spec", run.spec_name), ("recipe", run.recipe_name), ("dataset", run.dataset or "-")]
    facts += [(header, format_cell(key, row)) for key, header in STAT_COLUMNS.items()]
    head = "".join(f"<th>{_e(k)}</th>" for k, _ in facts)
    cells = "".join(f"<td>{_e(v)}</td>" for _, v in facts)
    problems = f'<p class="problem">{_e("; ".join(run.problems))}</p>' if run.problems else ""
    png = _curves_png(run)
    picture = _img(png, f"curves of {run.name}") if png else '<p class="note">no metrics yet</p>'
    return (f'<div class="run" id="run-{_e(_anchor(run.name))}"><h3>{_e(run.name)}</h3>{problems}'
            f'<div class="scroll"><table><tr>{head}</tr><tr>{cells}</tr></table></div>{picture}</div>')


def build_html(runs: list[Run], *, title: str = "archspec report", sort: str | None = None) -> str:
    """The whole page as a string."""
    from archspec.experiments.figures import figure_png, overlay_figure

    if not runs:
        raise ArchspecError("no runs to report")
    table = compare(runs, sort=sort)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{len(runs)} run{"s" if len(runs) != 1 else ""}, generated '
        f"{_e(time.strftime('%Y-%m-%d %H:%M'))} by archspec</p>",
        "<h2>Comparison</h2>",
        _compare_html(table),
    ]
    if table.options:
        parts.append('<p class="note">option columns: only the recipe/spec settings that differ between '
                     "these runs</p>")
    if any(run.metrics for run in table.runs):
        parts.append(_img(figure_png(overlay_figure(table.runs, table.labels())), "overlaid curves of all runs"))

    parts.append("<h2>Architectures</h2>")
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

    parts.append("<h2>Runs</h2>")
    for run, row in zip(table.runs, table.rows, strict=True):
        parts.append(_run_html(run, row))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(runs: list[Run], out: str | Path, *, title: str = "archspec report", sort: str | None = None) -> Path:
    """Render and atomically write the report; returns its path."""
    out = Path(out)
    if not out.parent.is_dir():
        raise ArchspecError("the folder for the report does not exist", file=str(out.parent))
    page = build_html(runs, title=title, sort=sort)
    try:
        return atomic_write_text(out, page)
    except OSError as exc:
        raise ArchspecError(f"cannot write the report: {exc.strerror or exc}", file=str(out)) from None
