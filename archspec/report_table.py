"""Rich rendering of a `Summary`: the table `archspec count` prints."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from archspec.layers import fmt_shape
from archspec.spec.loader import Spec
from archspec.summary import Summary, human


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
                      params, human(row.macs) if row.macs else "")
    console.print(table)
    frozen = summary.total_params - summary.trainable_params
    console.print(
        f"[bold]total params[/] {summary.total_params:,}   trainable {summary.trainable_params:,}"
        + (f"   frozen {frozen:,}" if frozen else "")
        + f"   fp32 size {summary.fp32_bytes / 2**20:.2f} MB   MACs/sample {human(summary.macs)}",
        highlight=False,
        soft_wrap=True,
    )
