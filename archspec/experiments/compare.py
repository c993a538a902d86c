"""`archspec compare`: one row per run, and only the options that differ between the runs.

Runs of one study usually share almost every recipe setting; printing them all would hide the one
or two that matter. The resolved recipe.yaml of every run is flattened to dotted keys
(``optimizer.lr``, ``schedule.type``) and only keys whose values differ become columns. The same is
done for the resolved spec.yaml (prefixed ``spec.``), but only when at most `MAX_SPEC_COLUMNS`
keys differ: more than that means different architectures, which the spec column already says.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archspec.errors import ArchspecError, did_you_mean
from archspec.experiments.runs import Run, natural_key
from archspec.figures import DEFAULT_DPI, Curves

MAX_SPEC_COLUMNS = 3
MAX_LABEL_OPTIONS = 3  # plot legends name runs by their differing options only when there are few
# Keys that only document a run; they never count as a difference.
_RECIPE_IGNORED = frozenset({"name", "description", "overrides"})
_SPEC_IGNORED = frozenset({"name", "description", "recipe", "notes", "doc", "tags", "reference", "source"})

# Fixed columns after the option columns: key -> header.
STAT_COLUMNS: dict[str, str] = {
    "params": "params",
    "epochs": "epochs",
    "best_test_acc": "best acc",
    "best_epoch": "best ep",
    "final_test_acc": "final acc",
    "final_train_loss": "train loss",
    "final_test_loss": "test loss",
    "train_seconds": "time",
    "images_per_second": "img/s",
    "status": "status",
}
# --sort names: friendly alias -> column key.
SORT_ALIASES = {
    "test_acc": "final_test_acc", "acc": "final_test_acc", "final_acc": "final_test_acc",
    "best": "best_test_acc", "best_acc": "best_test_acc",
    "time": "train_seconds", "seconds": "train_seconds",
    "speed": "images_per_second", "images/s": "images_per_second", "img/s": "images_per_second",
    "train_loss": "final_train_loss", "test_loss": "final_test_loss", "loss": "final_test_loss",
    "name": "run",
}
# Bigger is better for these: sorted descending. Everything else ascending.
_DESCENDING = frozenset({"final_test_acc", "best_test_acc", "images_per_second"})


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}. Lists of plain values stay one value;
    lists holding mappings (spec layers, schedule phases) are indexed: "layers.3.conv.out"."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        if not data and prefix:
            out[prefix] = {}
    elif isinstance(data, list) and any(isinstance(v, dict | list) for v in data):
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}.{i}" if prefix else str(i)))
    else:
        out[prefix] = data
    return out


_MISSING = object()


def _differing(dicts: Sequence[dict[str, Any]], ignored: frozenset[str]) -> list[str]:
    """Dotted keys whose value is not the same in every dict (absent counts as a value), in first-seen order."""
    if len(dicts) < 2:
        return []
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(k for k in d if k.split(".")[0] not in ignored))
    out = []
    for key in keys:
        values = [json.dumps(d.get(key, _MISSING), sort_keys=True, default=lambda _: "<absent>") for d in dicts]
        if len(set(values)) > 1:
            out.append(key)
    return out


def differing_options(runs: Sequence[Run]) -> tuple[list[str], list[str], bool]:
    """(recipe keys, spec keys, dataset differs) that vary between runs; runs lacking a file are left out."""
    recipes = [flatten(r.recipe) for r in runs if r.recipe is not None]
    specs = [flatten(r.spec) for r in runs if r.spec is not None]
    recipe_keys = _differing(recipes, _RECIPE_IGNORED)
    # dataset, input and classes follow the dataset (its own "data" column), not the architecture
    spec_keys = _differing(specs, _SPEC_IGNORED | {"dataset", "input", "classes"})
    if len(spec_keys) > MAX_SPEC_COLUMNS:
        spec_keys = []
    datasets = {r.dataset for r in runs if r.dataset is not None}
    return recipe_keys, spec_keys, len(datasets) > 1


@dataclass
class Comparison:
    """The compare table: `columns` (key, header) and one dict of raw values per run."""

    columns: list[tuple[str, str]]
    rows: list[dict[str, Any]]
    options: list[str]  # the option column keys (recipe keys, "spec.*", "data")
    runs: list[Run]

    def labels(self) -> list[str]:
        """A short legend label per run: spec plus the differing options' values, or the run directory
        name when that would be long or would not tell the runs apart."""
        if len(self.options) > MAX_LABEL_OPTIONS:  # a legend of long labels would crowd out the plot
            return [row["run"] for row in self.rows]
        short = short_keys(self.options)
        labels = []
        for row in self.rows:
            parts = [f"{short[k]}={_plain_value(row.get(k))}" for k in self.options]
            spec_varies = len({r["spec"] for r in self.rows}) > 1
            text = " ".join(([row["spec"]] if spec_varies or not parts else []) + parts)
            labels.append(text or row["run"])
        if len(set(labels)) < len(labels):  # options don't tell them apart: use the directory names
            labels = [row["run"] for row in self.rows]
        return labels

    def legend_order(self) -> list[int]:
        """Row indices in the order a figure's legend lists the runs, whatever the table's --sort:
        by spec, then by the differing options' values (numbers by value, so lr 0.001, 0.003, 0.01,
        0.03 and not 0.001, 0.01, 0.003), then by run directory name."""
        def key(i: int) -> tuple:
            row = self.rows[i]
            return (natural_key(row["spec"]), *(value_key(row.get(k)) for k in self.options), natural_key(row["run"]))

        return sorted(range(len(self.rows)), key=key)

    def curves(self) -> list[Curves]:
        """Every run's figure data, labelled, in legend order."""
        labels = self.labels()
        return [self.runs[i].curves(labels[i]) for i in self.legend_order()]


def compare(runs: Sequence[Run], *, sort: str | None = None) -> Comparison:
    """Build the comparison of `runs`, optionally sorted by a column (see `SORT_ALIASES`)."""
    recipe_keys, spec_keys, data_differs = differing_options(runs)
    options = list(recipe_keys) + [f"spec.{k}" for k in spec_keys] + (["data"] if data_differs else [])
    rows = []
    for run in runs:
        recipe_flat = flatten(run.recipe) if run.recipe is not None else None
        spec_flat = flatten(run.spec) if run.spec is not None else None
        row: dict[str, Any] = {"run": run.name, "spec": run.spec_name, "recipe": run.recipe_name}
        for key in recipe_keys:
            row[key] = "?" if recipe_flat is None else recipe_flat.get(key)
        for key in spec_keys:
            row[f"spec.{key}"] = "?" if spec_flat is None else spec_flat.get(key)
        if data_differs:
            row["data"] = run.dataset
        row.update(run.stats())
        row["status"] = run.status
        row["problems"] = "; ".join(run.problems)
        rows.append(row)
    columns = [("run", "run"), ("spec", "spec"), ("recipe", "recipe")]
    columns += [(k, k) for k in options] + list(STAT_COLUMNS.items())
    table = Comparison(columns=columns, rows=rows, options=options, runs=list(runs))
    if sort:
        _sort(table, sort)
    return table


def value_key(value: Any, descending: bool = False) -> tuple:
    """How a column's values sort: numbers by value (negated for a descending column), strings that
    hold numbers by those numbers ("1e-3" before "0.01", "run-2" before "run-10"), missing values
    last whatever the direction."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (1, ())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, ((1, -value if descending else value),))
    return (0, natural_key(_plain_value(value)))


def _sort(table: Comparison, sort: str) -> None:
    key = SORT_ALIASES.get(sort, sort)
    known = [k for k, _ in table.columns]
    if key not in known:
        choices = sorted(set(known) | set(SORT_ALIASES))
        raise ArchspecError(f'cannot sort by "{sort}"{did_you_mean(sort, choices)}', path="--sort",
                            hint="sort keys: " + ", ".join(choices))
    descending = key in _DESCENDING

    pairs = sorted(zip(table.rows, table.runs, strict=True), key=lambda pair: value_key(pair[0].get(key), descending))
    table.rows = [p[0] for p in pairs]
    table.runs = [p[1] for p in pairs]


# --- formatting -----------------------------------------------------------------------------------


def _plain_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(round(value)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def format_cell(key: str, row: dict[str, Any]) -> str:
    """The human text of one cell (percentages, thousands separators, durations)."""
    value = row.get(key)
    if key == "epochs":
        planned = row.get("epochs_planned")
        if value is None:
            return "-"
        return f"{value}/{planned}" if planned is not None and planned != value else str(value)
    if key == "status":
        return f"{value} ({row['problems']})" if row.get("problems") else str(value)
    if value is None:
        return "-"
    if key in ("best_test_acc", "final_test_acc") and isinstance(value, int | float):
        return f"{100.0 * value:.2f}%"
    if key in ("final_train_loss", "final_test_loss") and isinstance(value, int | float):
        return f"{value:.4f}"
    if key == "train_seconds" and isinstance(value, int | float):
        return _seconds(float(value))
    if key in ("params", "images_per_second") and isinstance(value, int | float):
        return f"{value:,.0f}"
    return _plain_value(value)


def formatted_rows(table: Comparison) -> list[list[str]]:
    return [[format_cell(key, row) for key, _ in table.columns] for row in table.rows]


_STATUS_STYLE = {"completed": "green", "running": "cyan", "interrupted": "yellow", "diverged": "red"}


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Short names for dotted option keys, for headers and directory names: the last part
    (optimizer.lr -> lr), the section for a kind (optimizer.name -> optimizer, schedule.type ->
    schedule), and the full key whenever the short form would be ambiguous."""

    def short(key: str) -> str:
        parts = key.split(".")
        if len(parts) > 1 and parts[-1] in ("name", "type"):
            return parts[-2]
        return parts[-1]

    shorts = [short(key) for key in keys]
    return {key: (s if shorts.count(s) == 1 else key) for key, s in zip(keys, shorts, strict=True)}


# Dropped first when the terminal is narrow (the option columns, spec and accuracies stay).
NARROW_DROP_ORDER = ("img/s", "train loss", "time", "test loss", "best (ep)")
_TEXT_COLUMNS = frozenset({"run", "spec", "recipe", "status"})  # may wrap between words


def terminal_layouts(table: Comparison, *, title: str | None = None):
    """(heading, layouts) of the terminal table (see archspec.tables), richest layout first.

    Terminals are narrow, so columns that are the same in every row (spec, recipe, params,
    epochs, status) move into the heading, the best epoch joins the best accuracy, option columns
    get short headers, and the run directory name is left out when the spec and option columns
    already tell the rows apart (--markdown/--csv/--json always have it). On a narrow terminal the
    low-value columns go next (`NARROW_DROP_ORDER`); no value is ever cut. Runs that are not
    completed, or miss files, are coloured so they stand out.
    """
    from rich.text import Text

    from archspec.tables import Column, leaner_layouts

    keys = [k for k, _ in table.columns]
    rendered = [dict(zip(keys, cells, strict=True)) for cells in formatted_rows(table)]
    constant = [k for k in ("spec", "recipe", "params", "epochs", "status")
                if len(rendered) > 1 and len({r[k] for r in rendered}) == 1]
    hidden = {"best_epoch", *constant}
    if len(rendered) > 1 and table.labels() != [r["run"] for r in table.rows]:
        hidden.add("run")  # spec and option columns already tell every row apart
    extra = ", ".join(f"{k} {rendered[0][k]}" for k in constant)
    heading = ", ".join(t for t in (title, extra) if t) or None
    headers = {**short_keys(table.options), "best_test_acc": "best (ep)", "final_test_acc": "final"}
    for row, cells in zip(table.rows, rendered, strict=True):
        if row.get("best_epoch") is not None and row.get("best_test_acc") is not None:
            cells["best_test_acc"] += f" ({row['best_epoch']})"
    styles = ["red" if row.get("problems") else _STATUS_STYLE.get(str(row.get("status")), "yellow")
              for row in table.rows]
    columns = []
    for key, header in table.columns:
        if key in hidden:
            continue
        numeric = key in STAT_COLUMNS and key != "status"
        cells = [Text(r[key], style=style if key == "status" else "") for r, style in zip(rendered, styles,
                                                                                         strict=True)]
        columns.append(Column(headers.get(key, header), cells, justify="right" if numeric else "left",
                              wrap=key in _TEXT_COLUMNS))
    return heading, leaner_layouts(columns, NARROW_DROP_ORDER)


def print_table(console, table: Comparison, *, title: str | None = None) -> None:
    """Print the comparison for a terminal (or a log): never a value cut, whatever the width."""
    from archspec.tables import print_table as print_fitted

    heading, layouts = terminal_layouts(table, title=title)
    print_fitted(console, layouts, title=_escape(heading) if heading else None)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _raw_keys(table: Comparison) -> list[str]:
    keys = [k for k, _ in table.columns]
    extra = ["epochs_planned", "problems"]
    return keys + [k for k in extra if k not in keys]


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(table: Comparison) -> str:
    """One JSON object per run (raw numbers: accuracies as fractions, time in seconds)."""
    keys = _raw_keys(table)
    return json.dumps([{k: _json_safe(row.get(k)) for k in keys} for row in table.rows], indent=1)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | dict | bool):
        return _plain_value(value)
    return value


def to_csv(table: Comparison) -> str:
    """CSV with raw values (accuracies as fractions, time in seconds), one line per run."""
    keys = _raw_keys(table)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(keys)
    for row in table.rows:
        writer.writerow([_csv_value(row.get(k)) for k in keys])
    return buffer.getvalue()


def to_markdown(table: Comparison) -> str:
    """A GitHub-flavoured Markdown table of the formatted cells."""

    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    headers = [header for _, header in table.columns]
    align = ["---:" if key in STAT_COLUMNS and key != "status" else "---" for key, _ in table.columns]
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "| " + " | ".join(align) + " |"]
    for cells in formatted_rows(table):
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot(table: Comparison, path, *, title: str = "", fmt: str | None = None, dpi: int = DEFAULT_DPI) -> Path:
    """compare --plot: every run's accuracy, loss and learning-rate curves overlaid, written atomically
    as PNG, SVG or PDF (`fmt`, else the file's suffix)."""
    from archspec.figures import figure_format, overlay_figure, write_figure

    fmt = figure_format(path, fmt)
    if not any(run.metrics for run in table.runs):
        raise ArchspecError("none of the runs has metrics to plot yet", path="--plot")
    return write_figure(overlay_figure(table.curves(), title=title), path, fmt=fmt, dpi=dpi)
