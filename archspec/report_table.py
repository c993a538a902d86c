"""Rich rendering of a `Summary`: the table `archspec count` prints."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from archspec.layers import fmt_shape
from archspec.spec.loader import Spec
from archspec.summary import Summary, human


def _word(value) -> str:
    """A default as it is written in YAML: true, null, avg, [] (not Python's True, None, 'avg')."""
    if isinstance(value, bool) or value is None:
        return "null" if value is None else str(value).lower()
    return str(value)


def print_kinds(console: Console) -> None:
    """Every layer kind: aliases, the option a scalar sets, options with defaults, what it does."""
    from archspec.layers import REGISTRY

    table = Table(title="layer kinds (docs/spec-language.md#kinds)", title_justify="left", header_style="bold")
    for col in ("kind", "aliases", "scalar sets", "options (default)", "what"):
        table.add_column(col)
    for kind in sorted(dict.fromkeys(REGISTRY.values()), key=lambda k: k.name):
        opts = ", ".join(f"{k} {_word(v['default'])}" if "default" in v else f"{k} (required)" if k in kind.required
                         else k for k, v in kind.options.items())
        table.add_row(kind.name, ", ".join(kind.aliases), kind.main or "", opts, kind.summary)
    table.add_row("repeat", "", "", "times (required), layers (required)", "the layers, `times` times over ($i)")
    console.print(table)


def print_summary(console: Console, spec: Spec, summary: Summary, depth: int | None = None) -> None:
    title = f"{spec.name}  {fmt_shape(spec.input_shape)} -> {fmt_shape(spec.output_shape)}"
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("#", justify="right", style="dim")
    table.add_column("layer")
    table.add_column("kind")
    table.add_column("output", justify="right")
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    for row in summary.layers:
        if depth is not None and row.depth >= depth:
            continue
        indent = "  " * row.depth
        params = f"{row.params:,}" if row.params == row.trainable else f"{row.params:,} ({row.trainable:,} tr.)"
        table.add_row(row.index, indent + row.name.split(".")[-1], row.kind, fmt_shape(tuple(row.output_shape)),
                      params, "" if row.macs == 0 else human(row.macs))
    console.print(table)
    frozen = summary.total_params - summary.trainable_params
    console.print(
        f"[bold]total params[/] {summary.total_params:,}   trainable {summary.trainable_params:,}"
        + (f"   frozen {frozen:,}" if frozen else "")
        + f"   fp32 size {summary.fp32_bytes / 2**20:.2f} MB   MACs/sample {human(summary.macs)}",
        highlight=False,
        soft_wrap=True,
    )
