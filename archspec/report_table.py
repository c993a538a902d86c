"""Rich rendering of a `Summary`: the table `archspec count` prints.

The table fits the console without cutting a value (archspec.tables): on a narrow terminal the
index and MACs columns go first, then the layer name and its kind share one column (name on the
first line, kind below), and kinds wrap between words.
"""

from __future__ import annotations

from rich.console import Console

from archspec.layers import fmt_shape
from archspec.spec.loader import Spec
from archspec.summary import Summary, human
from archspec.tables import Column, print_table, without


def _params_text(params: int, trainable: int) -> str:
    return f"{params:,}" if params == trainable else f"{params:,} ({trainable:,} tr.)"


def _layouts(summary: Summary, depth: int | None) -> list[list[Column]]:
    rows = [row for row in summary.layers if depth is None or row.depth < depth]
    names = ["  " * row.depth + row.name.split(".")[-1] for row in rows]
    index = Column("#", [row.index for row in rows], justify="right", style="dim")
    layer = Column("layer", names)
    kind = Column("kind", [row.kind for row in rows], wrap=True)
    output = Column("output", [fmt_shape(tuple(row.output_shape)) for row in rows], justify="right")
    params = Column("params", [_params_text(row.params, row.trainable) for row in rows], justify="right",
                    wrap=True)
    macs = Column("MACs", [human(row.macs) if row.macs else "" for row in rows], justify="right")
    both = Column("layer / kind", [f"{name}\n{'  ' * row.depth}  {row.kind}" for name, row in zip(names, rows,
                                                                                                  strict=True)],
                  wrap=True)
    full = [index, layer, kind, output, params, macs]
    return [full, without(full, "#"), without(full, "#", "MACs"), [both, output, params, macs],
            [both, output, params]]


def print_summary(console: Console, spec: Spec, summary: Summary, depth: int | None = None) -> None:
    title = f"{spec.name}  {fmt_shape(spec.input_shape)} -> {fmt_shape(spec.output_shape)}"
    print_table(console, _layouts(summary, depth), title=title)
    frozen = summary.total_params - summary.trainable_params
    parts = [f"[bold]total params[/] {summary.total_params:,}", f"trainable {summary.trainable_params:,}"]
    if frozen:
        parts.append(f"frozen {frozen:,}")
    parts += [f"fp32 size {summary.fp32_bytes / 2**20:.2f} MB", f"MACs/sample {human(summary.macs)}"]
    # rich wraps between words: on a narrow terminal the totals take two lines, no number is split
    console.print("   ".join(parts), highlight=False)
