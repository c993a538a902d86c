"""The expanded layer tree (`Node`, `Spec`) and the one walker every consumer of it shares.

Building the module (compile.py), printing plain PyTorch (codegen.py) and counting (summary.py)
all traverse the same tree and must agree on where each layer lives in the built ``nn.Module``.
`walk` (top-down) and `fold` (bottom-up) compute that place once, asking each composite kind
where its groups sit (`Composite.child_paths`), so a new composite kind needs no change here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from archspec.errors import ArchspecError
from archspec.layers import REGISTRY, LayerKind, Shape, fmt_shape
from archspec.layers.base import prod

T = TypeVar("T")

# Shape-time limits (docs/spec-language.md#limits): a layer past them would fail deep in torch's C++
# (or overflow a count), so it is refused with its location instead.
MAX_VALUES = 1_000_000_000  # values in any layer's output (or the input), per sample
MAX_LAYER_MACS = 10**15  # multiply-accumulates of one layer, per sample (this also bounds its parameters)


@dataclass
class Node:
    """One layer after expansion: concrete options, where it was written, and its shapes."""

    kind: str
    options: dict[str, Any]
    file: str | None
    line: int | None
    col: int | None
    path: str  # "layers[3].conv", for messages
    name: str = ""
    label: str = ""  # how the spec wrote it: the kind as typed, or a block call "stage(out=256)"
    children: list[list[Node]] = field(default_factory=list)
    in_shape: Shape = ()
    out_shape: Shape = ()
    module_name: str = ""  # its attribute name in the parent module (conv1, stage2, ...)
    module_path: str = ""  # set by build_model: where this layer lives in the nn.Module tree

    @property
    def impl(self) -> LayerKind:
        return REGISTRY[self.kind]

    def error(self, message: str) -> ArchspecError:
        return ArchspecError(message, file=self.file, line=self.line, col=self.col, path=self.path)

    def walk(self):
        yield self
        for group in self.children:
            for child in group:
                yield from child.walk()


@dataclass
class Spec:
    """A loaded spec: what `build_model` and `summarize` consume."""

    name: str
    description: str
    path: str | None
    dataset: str | None
    input_shape: Shape
    num_classes: int | None
    recipe: str | None
    layers: list[Node]
    output_shape: Shape
    vars: dict[str, Any]
    resolved: dict[str, Any]  # fully expanded spec: loads back to the same model
    source: dict[str, Any]  # after `extends`, before expansion (vars and blocks kept)
    allow_import: bool = False

    def walk(self):
        for node in self.layers:
            yield from node.walk()


# --------------------------------------------------------------------------------------------
# the walker


@dataclass(frozen=True)
class Visit:
    """A node with its place in the tree: `path` in the built module ("stage2.conv1"), `index` in
    tables ("3", "7.2", "7.0.1" when a layer has several groups) and nesting `depth`."""

    node: Node
    path: str
    index: str
    depth: int


def _visits(nodes: list[Node], prefix: str, index: str, depth: int) -> list[Visit]:
    return [Visit(node, f"{prefix}{node.module_name}", f"{index}{i}", depth) for i, node in enumerate(nodes)]


def _groups(visit: Visit) -> list[tuple[list[Node], str, str]]:
    """(nodes, module path prefix, index prefix) of each child group of `visit`."""
    node = visit.node
    if not node.children:
        return []
    many = len(node.children) > 1
    places = node.impl.child_paths(len(node.children))
    return [(group, f"{visit.path}.{place}." if place else f"{visit.path}.",
             f"{visit.index}.{g}." if many else f"{visit.index}.")
            for g, (group, place) in enumerate(zip(node.children, places, strict=True))]


def walk(nodes: list[Node], prefix: str = "", index: str = "", depth: int = 0) -> Iterator[Visit]:
    """Every node, parents before children, with its module path and table index."""
    for visit in _visits(nodes, prefix, index, depth):
        yield visit
        for group, sub_prefix, sub_index in _groups(visit):
            yield from walk(group, sub_prefix, sub_index, depth + 1)


def fold(nodes: list[Node], combine: Callable[[Visit, list[list[T]]], T], prefix: str = "",
         index: str = "", depth: int = 0) -> list[T]:
    """Bottom-up: `combine(visit, results)` for each node, where `results` holds, per child group,
    the results of that group's nodes (children are combined before their parent, siblings in order)."""
    out = []
    for visit in _visits(nodes, prefix, index, depth):
        results = [fold(group, combine, sub_prefix, sub_index, depth + 1)
                   for group, sub_prefix, sub_index in _groups(visit)]
        out.append(combine(visit, results))
    return out


# --------------------------------------------------------------------------------------------
# passes over the expanded tree


def module_names(nodes: list[Node]) -> list[str]:
    """conv1, relu1, conv2, ... per kind (blocks by block name); explicit `name:` wins."""
    counters: dict[str, int] = {}
    names = []
    taken = {n.name for n in nodes if n.name}
    for node in nodes:
        if node.name:
            names.append(node.name)
            continue
        base = node.impl.name_stem(node.label).replace("-", "_") or "layer"
        while True:
            counters[base] = counters.get(base, 0) + 1
            candidate = f"{base}{counters[base]}"
            if candidate not in taken:
                break
        taken.add(candidate)
        names.append(candidate)
    seen: set[str] = set()
    for node, name in zip(nodes, names, strict=True):
        if name in seen:
            raise node.error(f'two layers named "{name}" in the same list')
        seen.add(name)
    return names


def assign_module_names(nodes: list[Node]) -> None:
    for node, name in zip(nodes, module_names(nodes), strict=True):
        node.module_name = name
        for group in node.children:
            assign_module_names(group)


def check_size(node: Node) -> None:
    """Refuse a layer too large to build (called as soon as its output shape is known)."""
    if prod(node.out_shape) > MAX_VALUES:
        raise node.error(f"output {fmt_shape(node.out_shape)} has more than {MAX_VALUES:,} values per sample")
    macs = None if node.impl.composite else node.impl.macs(node.options, node.in_shape, node.out_shape)
    if macs is not None and macs > MAX_LAYER_MACS:  # None: a `module:` layer whose MACs are unknown
        raise node.error(f"more than {MAX_LAYER_MACS:.0e} multiply-accumulates per sample (input "
                         f"{fmt_shape(node.in_shape)}); this layer is too large to build")


def _item(visit: Visit, groups: list[list[Any]]) -> Any:
    node, impl = visit.node, visit.node.impl
    defaults = impl.defaults()
    opts = {k: v for k, v in node.options.items() if not (k in defaults and defaults[k] == v)}
    if node.name or impl.resolved_keeps_name:
        opts["name"] = node.name or node.module_name
    if impl.composite:
        opts = impl.write_children(opts, groups)
    if not opts:
        return node.kind
    if impl.main and list(opts) == [impl.main]:
        return {node.kind: opts[impl.main]}
    return {node.kind: opts}


def to_items(nodes: list[Node]) -> list[Any]:
    """The nodes back as spec layer items (non-default options only), for the resolved spec."""
    return fold(nodes, _item)
