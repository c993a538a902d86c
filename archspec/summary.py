"""Parameter and MAC counts per layer, computed on the meta device (no weights allocated).

Counts come from the real modules (`numel` of each parameter of a meta-device build), so they are
exactly what `sum(p.numel() for p in model.parameters())` gives. MACs per sample are analytic,
except for attention and imported `module:` layers, which torch's FlopCounterMode counts on the
meta device; a layer it cannot count is None ("unknown"), and so is every total that includes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from archspec.layers import fmt_shape
from archspec.spec.loader import Node, Spec


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


def node_macs(node: Node) -> int | None:
    impl = node.impl
    if impl.composite:
        parts = [node_macs(c) for group in node.children for c in group]
        parts.append(impl.extra_macs(node.options, node.in_shape, node.out_shape))
        return None if None in parts else sum(parts)
    return impl.macs(node.options, node.in_shape, node.out_shape)


def total_macs(nodes: list[Node]) -> int | None:
    parts = [node_macs(n) for n in nodes]
    return None if None in parts else sum(parts)


def summarize(spec: Spec, model=None) -> Summary:
    """Count parameters (via a meta-device build unless `model` is given) and MACs."""
    from archspec.compile import build_model

    if model is None:
        model = build_model(spec, device="meta")
    modules = dict(model.named_modules())
    rows: list[Row] = []

    def visit(nodes: list[Node], prefix: str, depth: int) -> None:
        for i, node in enumerate(nodes):
            index = f"{prefix}{i}"
            module = modules[node.module_path]
            params = list(module.parameters())
            rows.append(Row(
                index=index,
                depth=depth,
                name=node.module_path,
                kind=node.label if node.kind == "sequence" else _kind_label(node),
                output_shape=list(node.out_shape),
                params=sum(p.numel() for p in params),
                trainable=sum(p.numel() for p in params if p.requires_grad),
                macs=node_macs(node),
            ))
            for g, group in enumerate(node.children):
                sub = f"{index}.{g}." if len(node.children) > 1 else f"{index}."
                visit(group, sub, depth + 1)

    visit(spec.layers, "", 0)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    nbytes = sum(p.numel() * 4 for p in model.parameters()) + sum(b.numel() * 4 for b in model.buffers())
    return Summary(
        name=spec.name,
        input_shape=list(spec.input_shape),
        output_shape=list(spec.output_shape),
        total_params=total,
        trainable_params=trainable,
        macs=total_macs(spec.layers),
        fp32_bytes=nbytes,
        layers=rows,
    )


def _kind_label(node: Node) -> str:
    impl = node.impl
    o = node.options
    if node.kind == "conv":
        extra = f" s{o['stride']}" if o["stride"] != 1 else ""
        return f"conv {o['kernel']}x{o['kernel']}{extra}"
    if node.kind in ("pool", "maxpool", "avgpool"):
        t = o.get("type") or ("avg" if node.kind == "avgpool" else "max")
        return f"{t}pool {o['size']}x{o['size']}"
    if node.kind == "bn":
        return "bn2d" if len(node.in_shape) == 3 else "bn1d"
    if node.kind == "dropout":
        return f"dropout {o['p']}"
    if node.kind == "resblock":
        return f"resblock x{o['convs']}" + (f" s{o['stride']}" if o["stride"] != 1 else "")
    if node.kind == "parallel":
        return f"parallel {o['merge']} x{len(node.children)}"
    return impl.label(o, node.in_shape, node.label)


def human(n: int | None) -> str:
    """7281802 -> '7.28M'; None (not countable) -> 'unknown'."""
    if n is None:
        return "unknown"
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


__all__ = ["Row", "Summary", "summarize", "human", "fmt_shape"]
