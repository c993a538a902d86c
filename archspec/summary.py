"""Parameter and MAC counts per layer, computed on the meta device (no weights allocated), the
training-memory estimate (archspec/memory.py) when asked for, and the table `archspec count`
prints from them.

Counts come from the real modules (`numel` of each parameter of a meta-device build), so they are
exactly what `sum(p.numel() for p in model.parameters())` gives. MACs per sample are analytic,
except for attention and imported `module:` layers, which torch's FlopCounterMode counts on the
meta device; a layer it cannot count is None ("unknown"), and so is every total that includes it.
The table fits the console without cutting a value (archspec/tables.py): on a narrow terminal
the index, input, MACs and kernel columns go first (the kernel then follows the kind), then the
layer name and its kind share a column.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from archspec.layers import fmt_shape
from archspec.memory import MemoryEstimate, Setup, estimate_memory, layer_bytes
from archspec.spec.tree import Spec, Visit, fold, walk

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class Row:
    index: str  # "3", "7.2" for nested layers
    depth: int
    name: str  # module path in the built model
    kind: str
    kernel: str  # "3x3 s2", "" for kinds without a window
    input_shape: list[int]
    output_shape: list[int]
    params: int
    trainable: int
    macs: int | None
    saved_bytes: int | None = None  # kept for backward at the estimate's batch size (None: no estimate)


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
    memory: MemoryEstimate | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fp32_mb"] = round(self.fp32_bytes / 2**20, 2)
        if self.memory is None:
            del d["memory"]
            for row in d["layers"]:
                del row["saved_bytes"]
        else:
            d["memory"] = {k: v for k, v in self.memory.to_dict().items() if k != "layers"}  # rows carry them
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


def _row(visit: Visit, modules: dict, macs: dict[int, int | None], memory: MemoryEstimate | None) -> Row:
    node = visit.node
    params = list(modules[visit.path].parameters())
    return Row(
        index=visit.index,
        depth=visit.depth,
        name=visit.path,
        kind=node.impl.label(node.options, node.in_shape, node.label),
        kernel=node.impl.kernel(node.options),
        input_shape=list(node.in_shape),
        output_shape=list(node.out_shape),
        params=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        macs=macs[id(node)],
        saved_bytes=None if memory is None else layer_bytes(memory, visit.path),
    )


def summarize(spec: Spec, model=None, memory: Setup | None = None) -> Summary:
    """Count parameters (via a meta-device build unless `model` is given) and MACs; with `memory`,
    estimate a training step's memory for that batch size, device, precision and optimizer."""
    from archspec.compile import build_model

    if model is None:
        model = build_model(spec, device="meta")
    modules = dict(model.named_modules())
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    nbytes = sum(p.numel() * 4 for p in model.parameters()) + sum(b.numel() * 4 for b in model.buffers())
    macs = _all_macs(spec)
    estimate = None if memory is None else estimate_memory(spec, model, memory)
    return Summary(
        name=spec.name,
        input_shape=list(spec.input_shape),
        output_shape=list(spec.output_shape),
        total_params=total,
        trainable_params=trainable,
        macs=_total([macs[id(n)] for n in spec.layers]),
        fp32_bytes=nbytes,
        layers=[_row(visit, modules, macs, estimate) for visit in walk(spec.layers)],
        memory=estimate,
    )


def human(n: int | None) -> str:
    """7281802 -> '7.28M'; None (not countable) -> 'unknown'."""
    if n is None:
        return "unknown"
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def human_bytes(n: int) -> str:
    """33554432 -> '32.0 MB' (MB = 2**20 bytes, as PyTorch's memory reports)."""
    for unit, div in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= div:
            return f"{n / div:.{2 if n < 10 * div else 1}f} {unit}"
    return f"{n} B"


def _count_layouts(summary: Summary, depth: int | None) -> list:
    """The `count` table, richest layout first (archspec.tables): on a narrow terminal the index,
    input and MACs go first, then the kernel column (the kernel then follows the kind), then the
    layer name and its kind share one column (the kind below the name)."""
    from archspec.tables import Column, without

    rows = [row for row in summary.layers if depth is None or row.depth < depth]
    names = ["  " * row.depth + row.name.split(".")[-1] for row in rows]
    kinds = [f"{row.kind} {row.kernel}".rstrip() for row in rows]  # where the kernel column is left out
    params = [f"{r.params:,}" if r.params == r.trainable else f"{r.params:,} ({r.trainable:,} tr.)" for r in rows]
    shape_in = Column("input", [fmt_shape(tuple(row.input_shape)) for row in rows], justify="right")
    output = Column("output", [fmt_shape(tuple(row.output_shape)) for row in rows], justify="right")
    params_column = Column("params", params, justify="right", wrap=True)
    macs = Column("MACs", ["" if row.macs == 0 else human(row.macs) for row in rows], justify="right")
    both = Column("layer / kind", [f"{name}\n{'  ' * row.depth}  {k}" for name, row, k in zip(names, rows, kinds,
                                                                                             strict=True)],
                  wrap=True)
    tail = [params_column, macs]
    if summary.memory is not None:  # what each layer keeps for backward at the estimate's batch size
        tail.append(Column("saved", [human_bytes(r.saved_bytes) if r.saved_bytes else "" for r in rows],
                           justify="right"))
    head = [Column("#", [row.index for row in rows], justify="right", style="dim"), Column("layer", names)]
    full = [*head, Column("kind", [row.kind for row in rows], wrap=True),
            Column("kernel", [row.kernel for row in rows]), shape_in, output, *tail]
    lean = [*head, Column("kind", kinds, wrap=True), output, *tail]
    return [full, without(full, "#"), without(full, "#", "input"), without(lean, "#"), without(lean, "#", "MACs"),
            [both, output, *without(tail, "MACs")], [both, output, params_column]]


def print_summary(console: Console, spec: Spec, summary: Summary, depth: int | None = None) -> None:
    """Print `summary` as a table on a rich `console` (layers nested `depth` or deeper are left out),
    then the totals and, when estimated, the training memory.

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
    if summary.memory is not None:
        print_memory(console, summary.memory)


def print_memory(console: Console, m: MemoryEstimate) -> None:
    """The training-memory lines under the table: the peak, then what it is made of."""
    from rich.text import Text

    from archspec.tables import print_items

    autocast = "" if m.precision == "fp32" else " autocast"
    print_items(console, [Text.assemble(("training memory", "bold"), f" at batch {m.batch_size}"),
                          f"({m.device}, {m.precision}{autocast}, {m.optimizer}):",
                          f"peak {human_bytes(m.peak_bytes)} in the {m.peak_phase}"], gap=" ")
    print_items(console, [f"weights {human_bytes(m.params_bytes)}", f"gradients {human_bytes(m.grads_bytes)}",
                          f"{m.optimizer} state {human_bytes(m.optimizer_bytes)}",
                          f"batch {human_bytes(m.batch_bytes)}",
                          f"saved for backward {human_bytes(m.activation_bytes)}"])


__all__ = ["Row", "Summary", "summarize", "print_summary", "print_memory", "human", "human_bytes", "fmt_shape"]
