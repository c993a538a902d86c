"""Parameter and MAC counts per layer, computed on the meta device (no weights allocated), and
the table `archspec count` prints from them.

Counts come from the real modules (`numel` of each parameter of a meta-device build), so they are
exactly what `sum(p.numel() for p in model.parameters())` gives. MACs per sample are analytic,
except for attention and imported `module:` layers, which torch's FlopCounterMode counts on the
meta device; a layer it cannot count is None ("unknown"), and so is every total that includes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from archspec.layers import fmt_shape
from archspec.spec.tree import Spec, Visit, fold, walk

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class Row:
    index: str  # "3", "7.2" for nested layers
    depth: int
    name: str  # module path in the built model
    kind: str
    output_shape: list[int]
    params: int
    trainable: int
    macs: int | None


@dataclass
class Summary:
    name: str
    input_shape: list[int]
    output_shape: list[int]
    total_params: int
    trainable_params: int
    macs: int | None
    fp32_bytes: int
    layers: list[Row] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fp32_mb"] = round(self.fp32_bytes / 2**20, 2)
        return d


def _total(parts: list[int | None]) -> int | None:
    return None if None in parts else sum(parts)


def _macs(visit: Visit, children: list[list[int | None]]) -> int | None:
    node, impl = visit.node, visit.node.impl
    if impl.composite:
        inner = [m for group in children for m in group]
        return _total([*inner, impl.extra_macs(node.options, node.in_shape, node.out_shape)])
    return impl.macs(node.options, node.in_shape, node.out_shape)


def _all_macs(spec: Spec) -> dict[int, int | None]:
    """id(node) -> its MACs, every node counted once (counted MACs run torch's FlopCounterMode)."""
    found: dict[int, int | None] = {}

    def keep(visit: Visit, children: list[list[int | None]]) -> int | None:
        found[id(visit.node)] = _macs(visit, children)
        return found[id(visit.node)]

    fold(spec.layers, keep)
    return found


def _row(visit: Visit, modules: dict, macs: dict[int, int | None]) -> Row:
    node = visit.node
    params = list(modules[visit.path].parameters())
    return Row(
        index=visit.index,
        depth=visit.depth,
        name=visit.path,
        kind=node.impl.label(node.options, node.in_shape, node.label),
        output_shape=list(node.out_shape),
        params=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        macs=macs[id(node)],
    )


def summarize(spec: Spec, model=None) -> Summary:
    """Count parameters (via a meta-device build unless `model` is given) and MACs."""
    from archspec.compile import build_model

    if model is None:
        model = build_model(spec, device="meta")
    modules = dict(model.named_modules())
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    nbytes = sum(p.numel() * 4 for p in model.parameters()) + sum(b.numel() * 4 for b in model.buffers())
    macs = _all_macs(spec)
    return Summary(
        name=spec.name,
        input_shape=list(spec.input_shape),
        output_shape=list(spec.output_shape),
        total_params=total,
        trainable_params=trainable,
        macs=_total([macs[id(n)] for n in spec.layers]),
        fp32_bytes=nbytes,
        layers=[_row(visit, modules, macs) for visit in walk(spec.layers)],
    )


def human(n: int | None) -> str:
    """7281802 -> '7.28M'; None (not countable) -> 'unknown'."""
    if n is None:
        return "unknown"
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def _count_layouts(summary: Summary, depth: int | None) -> list:
    """The `count` table, richest layout first (archspec.tables): on a narrow terminal the index and
    MACs go first, then the layer name and its kind share one column (the kind below the name)."""
    from archspec.tables import Column, without

    rows = [row for row in summary.layers if depth is None or row.depth < depth]
    names = ["  " * row.depth + row.name.split(".")[-1] for row in rows]
    params = [f"{r.params:,}" if r.params == r.trainable else f"{r.params:,} ({r.trainable:,} tr.)" for r in rows]
    output = Column("output", [fmt_shape(tuple(row.output_shape)) for row in rows], justify="right")
    params_column = Column("params", params, justify="right", wrap=True)
    macs = Column("MACs", ["" if row.macs == 0 else human(row.macs) for row in rows], justify="right")
    both = Column("layer / kind", [f"{name}\n{'  ' * row.depth}  {row.kind}" for name, row in zip(names, rows,
                                                                                                  strict=True)],
                  wrap=True)
    full = [Column("#", [row.index for row in rows], justify="right", style="dim"), Column("layer", names),
            Column("kind", [row.kind for row in rows], wrap=True), output, params_column, macs]
    return [full, without(full, "#"), without(full, "#", "MACs"), [both, output, params_column, macs],
            [both, output, params_column]]


def print_summary(console: Console, spec: Spec, summary: Summary, depth: int | None = None) -> None:
    """Print `summary` as a table on a rich `console` (layers nested `depth` or deeper are left out).

    The table fits the console without cutting a value (archspec.tables); the totals line wraps
    between its items, never inside one.
    """
    from rich.text import Text

    from archspec.tables import print_items, print_table

    title = f"{spec.name}  {fmt_shape(spec.input_shape)} -> {fmt_shape(spec.output_shape)}"
    print_table(console, _count_layouts(summary, depth), title=title)
    frozen = summary.total_params - summary.trainable_params
    parts = [Text.assemble(("total params", "bold"), f" {summary.total_params:,}"),
             f"trainable {summary.trainable_params:,}"]
    parts += [f"frozen {frozen:,}"] if frozen else []
    parts += [f"fp32 size {summary.fp32_bytes / 2**20:.2f} MB", f"MACs/sample {human(summary.macs)}"]
    print_items(console, parts)


__all__ = ["Row", "Summary", "summarize", "print_summary", "human", "fmt_shape"]
