"""Spec files -> a validated, fully expanded, shape-checked `Spec`.

Pipeline: YAML (with positions) -> `extends` merge -> top-level schema -> vars -> expand layers
(blocks, repeat, `if:`, expressions, per-kind option schemas) with shape inference in the same
pass, so options can use the incoming shape (`in_channels`, `in_features`). Every failure is an
`ArchspecError` pointing at file:line:col and the key path. No torch import happens here.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archspec.data.info import DATASETS, dataset_info
from archspec.errors import ArchspecError, did_you_mean
from archspec.layers import REGISTRY, LayerKind, Shape, ShapeError, fmt_shape, unknown_kind_message
from archspec.layers.base import shape_names
from archspec.spec.expr import NAME_RE, ExprError, evaluate_string, is_expression
from archspec.spec.schema import TOP_LEVEL
from archspec.spec.schema_check import dotted, message_for
from archspec.spec.yamlload import Positions, load_yaml, locate

MAX_LAYERS = 20_000  # after expansion
MAX_NESTING = 32  # blocks within blocks, composites within composites
MAX_EXTENDS = 16


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
    label: str = ""  # how tables show it, e.g. "stage(out=256)"
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
# documents and where their values came from


class _Doc:
    """Spec data merged over `extends`, remembering which file each key came from."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.origin: dict[tuple, tuple[str, Positions]] = {}
        self.files: list[str] = []

    def where(self, path: tuple) -> tuple[str | None, int | None, int | None]:
        for n in range(len(path), 0, -1):
            if path[:n] in self.origin:
                file, positions = self.origin[path[:n]]
                line, col = locate(positions, path)
                return file, line, col
        if self.files:
            return self.files[-1], 1, 1
        return None, None, None

    def error(self, path: tuple, message: str) -> ArchspecError:
        file, line, col = self.where(path)
        return ArchspecError(message, file=file, line=line, col=col, path=dotted(path) or None)


def _read(path: Path, chain: list[Path]) -> _Doc:
    file = str(path)
    data, positions = load_yaml(path, file=file)
    if not isinstance(data, dict):
        raise ArchspecError(
            f"a spec must be a mapping with at least `layers:`, got {type(data).__name__}",
            file=file, line=1, col=1,
        )
    _check_top_level(data, positions, file)
    doc = _Doc()
    if "extends" in data:
        if len(chain) >= MAX_EXTENDS:
            raise ArchspecError(f"more than {MAX_EXTENDS} levels of extends", file=file,
                                line=locate(positions, ("extends",))[0], path="extends")
        base_path = (path.parent / data["extends"]).resolve()
        if base_path in chain or base_path == path.resolve():
            cycle = " -> ".join(p.name for p in [*chain, path.resolve(), base_path])
            line, col = locate(positions, ("extends",))
            raise ArchspecError(f"extends cycle: {cycle}", file=file, line=line, col=col, path="extends")
        if not base_path.exists():
            line, col = locate(positions, ("extends",))
            raise ArchspecError(f'extends "{data["extends"]}": no such file ({base_path})', file=file, line=line,
                                col=col, path="extends")
        doc = _read(base_path, [*chain, path.resolve()])
    doc.files.append(file)
    for key, value in data.items():
        if key == "extends":
            continue
        if key in ("vars", "blocks") and isinstance(value, dict) and isinstance(doc.data.get(key), dict):
            for sub, sub_value in value.items():
                doc.data[key][sub] = sub_value
                doc.origin[(key, sub)] = (file, positions)
        else:
            doc.data[key] = value
            # forget deeper origins from the base for a key replaced wholesale
            for k in [k for k in doc.origin if k and k[0] == key]:
                del doc.origin[k]
            doc.origin[(key,)] = (file, positions)
    if "name" not in data and chain == []:
        doc.data["name"] = path.stem
    return doc


def _check_top_level(data: dict, positions: Positions, file: str) -> None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    errors = list(Draft202012Validator(TOP_LEVEL).iter_errors(data))
    if errors:
        path, message = message_for(best_match(errors))
        line, col = locate(positions, path)
        raise ArchspecError(message, file=file, line=line, col=col, path=dotted(path) or "(top level)")


# --------------------------------------------------------------------------------------------
# expansion


class _Expander:
    """Expands blocks, repeats, `if:` and expressions while threading the shape through the layers.

    Expansion and shape inference are one pass because options may depend on the shape coming
    into a layer (`in_channels`, `in_features`): `conv: {out: $in_channels, groups: $in_channels}`
    is a depthwise conv wherever it is used, and `if: ${in_channels != out}` decides whether a
    layer exists at all.
    """

    def __init__(self, doc: _Doc, scope: dict[str, Any], allow_import: bool) -> None:
        self.doc = doc
        self.scope = scope
        self.blocks: dict[str, dict] = doc.data.get("blocks") or {}
        self.allow_import = allow_import
        self.count = 0
        for name in self.blocks:
            if name in REGISTRY or name == "repeat":
                raise doc.error(("blocks", name), f'block name "{name}" is already a layer kind; rename the block')

    # where = the path inside the document (for positions), label = the path shown in messages
    def expand(self, items: Any, where: tuple, label: str, scope: dict, stack: tuple, depth: int,
               shape: Shape) -> tuple[list[Node], Shape]:
        """Expand a layer list starting from `shape`; return the nodes and the shape they output."""
        if depth > MAX_NESTING:
            raise self.doc.error(where, f"layers nested deeper than {MAX_NESTING} levels")
        if not isinstance(items, list) or not items:
            raise self.doc.error(where, "expected a non-empty list of layers")
        out: list[Node] = []
        for i, item in enumerate(items):
            nodes, shape = self.item(item, where + (i,), f"{label}[{i}]", scope, stack, depth, shape)
            out.extend(nodes)
        return out, shape

    @staticmethod
    def here(scope: dict, shape: Shape) -> dict:
        """The scope a layer's options see: the enclosing names plus its input shape's names."""
        return {**scope, **shape_names(shape), "_shape": tuple(shape)}

    def _kind_and_value(self, item: Any, where: tuple, scope: dict) -> tuple[str, str, Any]:
        """(kind, the key as written, value). A key `$act` takes the kind from a block parameter."""
        if isinstance(item, str):
            raw, value = item, None
        elif isinstance(item, dict) and len(item) == 1:
            ((raw, value),) = item.items()
            raw = str(raw)
        elif isinstance(item, dict):
            keys = ", ".join(map(str, item))
            raise self.doc.error(where, f"a layer has exactly one key (its kind), got {len(item)}: {keys}; "
                                        "write options as `- conv: {out: 64, kernel: 3}`")
        else:
            raise self.doc.error(where,
                                 f"a layer is a kind name like `relu` or a mapping like `conv: 64`, got {item!r}")
        if not raw.startswith("$"):
            return raw, raw, value
        at = where + (raw, "<key>") if isinstance(item, dict) else where
        kind = self.value(raw, at, scope)
        if not isinstance(kind, str):
            raise self.doc.error(at, f"{raw} is {kind!r}; a layer key needs a kind or block name")
        return kind, raw, value

    def item(self, item, where, label, scope, stack, depth, shape) -> tuple[list[Node], Shape]:
        kind, key, value = self._kind_and_value(item, where, scope)
        vwhere = where + (key,) if isinstance(item, dict) else where
        if isinstance(value, dict) and "if" in value:
            if not self._condition(value["if"], vwhere + ("if",), self.here(scope, shape)):
                return [], shape
            value = {k: v for k, v in value.items() if k != "if"}
        self.count += 1
        if self.count > MAX_LAYERS:
            raise self.doc.error(where, f"more than {MAX_LAYERS:,} layers after expansion")
        if kind == "repeat":
            return self.repeat(value, vwhere, f"{label}.repeat", scope, stack, depth, shape)
        if kind in self.blocks:
            return self.block(kind, value, vwhere, f"{label}.{kind}", scope, stack, depth, shape)
        if kind not in REGISTRY:
            at = where + (key, "<key>") if isinstance(item, dict) else where
            raise self.doc.error(at, unknown_kind_message(kind, self.blocks))
        return self.layer(kind, value, vwhere, f"{label}.{kind}", scope, stack, depth, shape)

    def _condition(self, raw, where, scope) -> bool:
        cond = self.value(raw, where, scope, numeric=True)
        if isinstance(cond, bool):
            return cond
        if not isinstance(cond, int | float):
            raise self.doc.error(where, f"if needs a number or an expression like ${{stride == 1}}, got {cond!r}")
        return bool(cond)

    def value(self, raw: Any, where: tuple, scope: dict, numeric: bool = False) -> Any:
        """Substitute $name / ${expr} (and bare var names where a number is expected)."""
        try:
            if is_expression(raw):
                return evaluate_string(raw, scope)
            if numeric and isinstance(raw, str) and NAME_RE.match(raw) and raw in scope:
                return scope[raw]
        except ExprError as e:
            raise self.doc.error(where, str(e)) from None
        if numeric and isinstance(raw, str) and _EXPONENT.match(raw.strip()):
            return float(raw)  # YAML 1.1 reads 1e-6 (no dot) as a string; a number was meant
        return raw

    def repeat(self, value, where, label, scope, stack, depth, shape) -> tuple[list[Node], Shape]:
        if not isinstance(value, dict) or set(value) - {"times", "layers"} or "layers" not in value:
            raise self.doc.error(where, "repeat needs {times: N, layers: [...]}")
        times = self.value(value.get("times", 1), where + ("times",), self.here(scope, shape), numeric=True)
        if isinstance(times, float) and times.is_integer():
            times = int(times)
        if not isinstance(times, int) or isinstance(times, bool) or times < 0:
            raise self.doc.error(where + ("times",), f"times must be a whole number >= 0, got {times!r}")
        if times == 0:
            return [], shape
        entry = shape
        children: list[Node] = []
        for i in range(times):
            inner = {**scope, "i": i}
            nodes, shape = self.expand(value["layers"], where + ("layers",), f"{label}.layers", inner, stack,
                                       depth + 1, shape)
            children.extend(nodes)
        file, line, col = self.doc.where(where)
        node = Node("sequence", {"layers": []}, file, line, col, label, label=f"repeat x{times}",
                    children=[children], in_shape=tuple(entry), out_shape=tuple(shape))
        return [node], shape

    def block(self, name, value, where, label, scope, stack, depth, shape) -> tuple[list[Node], Shape]:
        if name in stack:
            chain = " -> ".join([*stack, name])
            raise self.doc.error(where, f"block {name} uses itself ({chain})")
        block = self.blocks[name]
        params = block.get("params") or {}
        if isinstance(params, list):
            params = {p: None for p in params}
        if value is None:
            args: dict = {}
        elif isinstance(value, dict):
            args = dict(value)
        else:
            if not params:
                raise self.doc.error(where, f"block {name} takes no parameters, got {value!r}")
            args = {next(iter(params)): value}
        node_name = args.pop("name", None)
        for k in args:
            if k not in params:
                raise self.doc.error(where + (k,), f'block {name} has no parameter "{k}"{did_you_mean(k, params)}'
                                     + (f"; parameters: {', '.join(params)}" if params else ""))
        inner = {k: v for k, v in self.scope.items()}
        caller, own = self.here(scope, shape), self.here(self.scope, shape)
        for p, default in params.items():  # evaluated where the block is used: in_channels is its input
            if p in args:
                inner[p] = self.value(args[p], where + (p,) if isinstance(value, dict) else where, caller)
            elif default is not None:
                inner[p] = self.value(default, ("blocks", name, "params", p), {**own, **inner})
            else:
                raise self.doc.error(where, f'block {name} needs parameter "{p}"')
        children, out = self.expand(block["layers"], ("blocks", name, "layers"), f"{label}>{name}.layers", inner,
                                    (*stack, name), depth + 1, shape)
        shown = ", ".join(f"{p}={inner[p]}" for p in params)
        file, line, col = self.doc.where(where)
        opts = {"layers": []}
        if node_name:
            opts["name"] = node_name
        node = Node("sequence", opts, file, line, col, label, name=node_name or "",
                    label=f"{name}({shown})" if shown else name, children=[children],
                    in_shape=tuple(shape), out_shape=tuple(out))
        return [node], out

    def layer(self, kind, value, where, label, scope, stack, depth, shape) -> tuple[list[Node], Shape]:
        impl = REGISTRY[kind]
        if kind == "module" and not self.allow_import:
            raise self.doc.error(where, "custom modules import and run Python code; pass --allow-import "
                                        "(allow_import=True) if you trust this spec")
        if value is None:
            raw: dict = {}
        elif isinstance(value, dict):
            raw = dict(value)
        elif impl.main is None:
            raise self.doc.error(where, f"{kind} takes no value (write `- {kind}`), got {value!r}")
        else:
            raw = {impl.main: value}
        full = {**impl.defaults(), **self._options(impl, raw, value, where, self.here(scope, shape))}
        self._validate(impl, full, raw, value, where)
        if kind == "leaky_relu" and "slope" in full:
            full["slope"] = float(full["slope"])
        node_name = full.pop("name", "") or ""
        file, line, col = self.doc.where(where)
        node = Node(impl.name, full, file, line, col, label, name=node_name, label=kind, in_shape=tuple(shape))
        try:
            if impl.composite:
                outs = []
                for sub, lst in impl.child_lists(full):
                    nodes, out = self.expand(lst, where + sub, f"{label}.{'.'.join(map(str, sub))}", scope, stack,
                                             depth + 1, shape)
                    node.children.append(nodes)
                    outs.append(out)
                out = impl.combine(full, shape, outs)
            else:
                out = impl.output_shape(full, shape)
        except ShapeError as e:
            raise node.error(f"{e} (input {fmt_shape(shape)})") from None
        node.out_shape = tuple(out)
        return [node], node.out_shape

    def _options(self, impl: LayerKind, raw: dict, value, where, here: dict) -> dict[str, Any]:
        """Substitute vars and expressions in each option; nested layer lists stay as written."""
        opts: dict[str, Any] = {}
        for k, v in raw.items():
            schema = impl.options.get(k, {})
            numeric = _is_numeric(schema)
            owhere = where + (k,) if isinstance(value, dict) else where
            if k in impl.layer_lists and isinstance(v, list):
                opts[k] = v
            elif isinstance(v, list):
                opts[k] = [self.value(x, owhere + (j,), here, numeric) for j, x in enumerate(v)]
            elif isinstance(v, dict):  # e.g. module kwargs
                opts[k] = {kk: self.value(vv, owhere + (kk,), here) for kk, vv in v.items()}
            else:
                opts[k] = self.value(v, owhere, here, numeric)
            if numeric and isinstance(opts[k], float) and opts[k].is_integer() and _is_int(schema):
                opts[k] = int(opts[k])
        return opts

    def _validate(self, impl: LayerKind, full: dict, raw: dict, value, where) -> None:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import best_match

        errors = list(Draft202012Validator(impl.option_schema()).iter_errors(full))
        if not errors:
            return
        path, message = message_for(best_match(errors))
        # Point at the offending option where it was written; a scalar shorthand (`conv: -4`) or a
        # missing option points at the layer itself.
        at = where + path if path and path[0] in raw and isinstance(value, dict) else where
        file, line, col = self.doc.where(at)
        raise ArchspecError(message, file=file, line=line, col=col, path=dotted(where + path[:1]))


_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _is_numeric(schema: dict) -> bool:
    text = str(schema)
    return "'integer'" in text or "'number'" in text


def _is_int(schema: dict) -> bool:
    return "'integer'" in str(schema) and "'number'" not in str(schema)


def module_names(nodes: list[Node]) -> list[str]:
    """conv1, relu1, conv2, ... per kind (blocks by block name); explicit `name:` wins."""
    counters: dict[str, int] = {}
    names = []
    taken = {n.name for n in nodes if n.name}
    for node in nodes:
        if node.name:
            names.append(node.name)
            continue
        base = node.label.split("(")[0].split(" ")[0] if node.kind == "sequence" else node.kind
        base = base.replace("-", "_") or "layer"
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


# --------------------------------------------------------------------------------------------
# the public entry point


def load_spec(path: str | Path, *, dataset: str | None = None, allow_import: bool = False) -> Spec:
    """Load, expand, validate and shape-check a spec file.

    `dataset` re-targets the spec (e.g. a CIFAR spec on ``mnist``): its input shape and class count
    replace the spec's, and every shape re-infers.
    """
    path = Path(path)
    doc = _read(path, [])
    data = doc.data
    if "layers" not in data:
        raise doc.error((), "a spec needs `layers:` (the model, first layer first)")

    ds_name = dataset or data.get("dataset")
    info = None
    if ds_name:
        try:
            if str(ds_name).startswith("imagefolder:"):
                from archspec.data.datasets import imagefolder_info  # decodes one image (imports torch)

                info = imagefolder_info(str(ds_name))
            else:
                info = dataset_info(ds_name)
        except ArchspecError as e:
            if dataset:
                raise
            raise doc.error(("dataset",), e.message) from None

    scope: dict[str, Any] = {}
    # input shape and classes: --data wins, then explicit keys, then the spec's dataset
    if dataset and info:
        input_shape: tuple = info.input_shape
        classes = info.num_classes
    else:
        input_shape = None
        if "input" in data:
            input_shape = tuple(_Expander(doc, {}, allow_import).value(v, ("input", i), {}, True)
                                for i, v in enumerate(data["input"]))
        elif info:
            input_shape = info.input_shape
        classes = data.get("classes", info.num_classes if info else None)
    if input_shape is None:
        raise doc.error((), "no input shape: add `dataset:` (e.g. cifar10) or `input: [C, H, W]`; "
                            f"datasets: {', '.join(DATASETS)}")
    for i, s in enumerate(input_shape):
        if not isinstance(s, int) or isinstance(s, bool) or s < 1:
            raise doc.error(("input", i), f"input sizes must be positive integers, got {s!r}")
    if classes is not None and (not isinstance(classes, int) or isinstance(classes, bool) or classes < 1):
        raise doc.error(("classes",), f"classes must be a positive integer, got {classes!r}")
    if classes is not None:
        scope["classes"] = classes
    scope["channels"] = input_shape[0]

    expander = _Expander(doc, scope, allow_import)
    for name, raw in (data.get("vars") or {}).items():
        if not NAME_RE.match(str(name)):
            raise doc.error(("vars", name), f'"{name}" is not a valid variable name')
        value = expander.value(raw, ("vars", name), scope, numeric=True)
        if isinstance(value, str):
            raise doc.error(("vars", name), f'vars must be numbers or expressions, got "{value}"'
                            f"{did_you_mean(value, scope)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise doc.error(("vars", name), f"vars must be numbers, got {value!r}")
        scope[name] = value

    layers, output_shape = expander.expand(data["layers"], ("layers",), "layers", scope, (), 0, tuple(input_shape))
    assign_module_names(layers)
    if classes is not None and output_shape != (classes,):
        last = layers[-1]
        raise last.error(f"the model outputs {fmt_shape(output_shape)} but there are {classes} classes; "
                         "end with `- linear: classes`")

    name = str(data.get("name") or path.stem)
    resolved = {
        "name": name,
        **({"description": data["description"]} if data.get("description") else {}),
        **({"dataset": ds_name} if ds_name else {}),
        "input": list(input_shape),
        **({"classes": classes} if classes is not None else {}),
        **({"recipe": data["recipe"]} if data.get("recipe") else {}),
        "layers": [to_item(n) for n in layers],
    }
    return Spec(
        name=name,
        description=str(data.get("description") or ""),
        path=str(path),
        dataset=ds_name,
        input_shape=tuple(input_shape),
        num_classes=classes,
        recipe=data.get("recipe"),
        layers=layers,
        output_shape=output_shape,
        vars={k: v for k, v in scope.items()},
        resolved=resolved,
        source=copy.deepcopy(data),
        allow_import=allow_import,
    )


def to_item(node: Node) -> Any:
    """A node back as a spec layer item (non-default options only), for the resolved spec."""
    impl = node.impl
    defaults = impl.defaults()
    opts = {k: v for k, v in node.options.items() if not (k in defaults and defaults[k] == v)}
    if node.name or node.kind == "sequence":
        opts["name"] = node.name or node.module_name
    if impl.composite:
        opts = impl.write_children(opts, [[to_item(c) for c in group] for group in node.children])
    if not opts:
        return node.kind
    if impl.main and list(opts) == [impl.main]:
        return {node.kind: opts[impl.main]}
    return {node.kind: opts}
