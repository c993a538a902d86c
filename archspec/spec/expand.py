"""Layer lists -> `Node` trees: user blocks and `repeat` unrolled, `$vars` and `${expressions}`
substituted, `if:` applied, each layer's options checked against its kind's schema, and the shape
threaded through, all in one pass.

Expansion and shape inference are one pass because options may depend on the shape coming into a
layer (`in_channels`, `in_features`): `conv: {out: $in_channels, groups: $in_channels}` is a
depthwise conv wherever it is used, and `if: ${in_channels != out}` decides whether a layer exists.

Expansion knows nothing about particular kinds: it asks the kind (`archspec.layers`) for its
options, its scalar shorthand, its nested layer lists, its output shape and whether it runs user
code.
"""

from __future__ import annotations

import math
import re
from typing import Any

from archspec.errors import ArchspecError, did_you_mean
from archspec.layers import REGISTRY, LayerKind, Shape, ShapeError, fmt_shape, unknown_kind_message
from archspec.layers.base import shape_names
from archspec.layers.composite import Sequence
from archspec.spec.document import Document
from archspec.spec.expr import NAME_RE, ExprError, evaluate_string, is_expression
from archspec.spec.schema_check import check_schema, dotted
from archspec.spec.tree import Node, check_size

# Limits (docs/spec-language.md#limits), each checked before the work it bounds is done.
MAX_LAYERS = 20_000  # after expansion
MAX_NESTING = 32  # blocks within blocks, composites within composites
_EXACT_INT = 2**53  # floats above this are not exact integers: `conv: 1.0e+30` stays a float and is refused
_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


class Expander:
    """Expands the layer lists of one `Document`; `count` bounds the layers it may produce."""

    def __init__(self, doc: Document, scope: dict[str, Any], allow_import: bool) -> None:
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
        return out, tuple(shape)

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

    def _reserve(self, layers: int, where: tuple, what: str) -> None:
        """Refuse, before expanding, what would take the spec past MAX_LAYERS layers."""
        if self.count + layers > MAX_LAYERS:
            raise self.doc.error(where, f"{what} would make more than {MAX_LAYERS:,} layers after expansion")

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
        if isinstance(times, float) and times.is_integer() and abs(times) < _EXACT_INT:
            times = int(times)
        if not isinstance(times, int) or isinstance(times, bool) or times < 0:
            raise self.doc.error(where + ("times",), f"times must be a whole number >= 0, got {times!r}")
        if not isinstance(value["layers"], list) or not value["layers"]:
            raise self.doc.error(where + ("layers",), "expected a non-empty list of layers")
        if times == 0:
            return [], shape
        self._reserve(times * len(value["layers"]), where + ("times",), f"repeat times {times:,}")
        entry = shape
        children: list[Node] = []
        for i in range(times):
            inner = {**scope, "i": i}
            nodes, shape = self.expand(value["layers"], where + ("layers",), f"{label}.layers", inner, stack,
                                       depth + 1, shape)
            children.extend(nodes)
        file, line, col = self.doc.where(where)
        node = Node(Sequence.name, {"layers": []}, file, line, col, label, label=f"repeat x{times}",
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
        node = Node(Sequence.name, opts, file, line, col, label, name=node_name or "",
                    label=f"{name}({shown})" if shown else name, children=[children],
                    in_shape=tuple(shape), out_shape=tuple(out))
        return [node], out

    def layer(self, kind, value, where, label, scope, stack, depth, shape) -> tuple[list[Node], Shape]:
        impl = REGISTRY[kind]
        if impl.runs_user_code and not self.allow_import:
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
        full = {**impl.defaults(), **self.options(impl, raw, value, where, self.here(scope, shape))}
        self._validate(impl, full, raw, value, where)
        impl.tidy_options(full)
        node_name = full.pop("name", "") or ""
        file, line, col = self.doc.where(where)
        node = Node(impl.name, full, file, line, col, label, name=node_name, label=kind, in_shape=tuple(shape))
        if impl.composite:
            try:
                lists = impl.child_lists(full)
            except ShapeError as e:
                raise self.doc.error(where, str(e)) from None
            self._reserve(len(lists), where, f"{len(lists):,} paths")
            outs = []
            for sub, lst in lists:
                nodes, out = self.expand(lst, where + sub, f"{label}.{'.'.join(map(str, sub))}", scope, stack,
                                         depth + 1, shape)
                node.children.append(nodes)
                outs.append(out)
        try:
            out = impl.combine(full, shape, outs) if impl.composite else impl.output_shape(full, shape)
        except ShapeError as e:
            raise node.error(f"{e} (input {fmt_shape(shape)})") from None
        node.out_shape = tuple(out)
        check_size(node)
        return [node], node.out_shape

    def options(self, impl: LayerKind, raw: dict, value: Any, where: tuple, scope: dict) -> dict[str, Any]:
        """`raw` with variables and expressions substituted; nested layer lists are left for `expand`."""
        opts: dict[str, Any] = {}
        for k, v in raw.items():
            schema = impl.options.get(k, {})
            numeric = _is_numeric(schema)
            owhere = where + (k,) if isinstance(value, dict) else where
            if k in impl.layer_lists and isinstance(v, list):
                opts[k] = v
            elif isinstance(v, list):
                opts[k] = [self.value(x, owhere + (j,), scope, numeric) for j, x in enumerate(v)]
            elif isinstance(v, dict):  # e.g. module kwargs
                opts[k] = {kk: self.value(vv, owhere + (kk,), scope) for kk, vv in v.items()}
            else:
                opts[k] = self.value(v, owhere, scope, numeric)
            check_finite(opts[k], owhere, self.doc)
            if (numeric and isinstance(opts[k], float) and opts[k].is_integer() and abs(opts[k]) < _EXACT_INT
                    and _is_int(schema)):
                opts[k] = int(opts[k])
        return opts

    def _validate(self, impl: LayerKind, full: dict, raw: dict, value, where) -> None:
        def error_at(path: tuple, message: str):
            # Point at the offending option where it was written; a scalar shorthand (`conv: -4`) or a
            # missing option points at the layer itself.
            at = where + path if path and path[0] in raw and isinstance(value, dict) else where
            file, line, col = self.doc.where(at)
            return ArchspecError(message, file=file, line=line, col=col, path=dotted(where + path[:1]))

        check_schema(full, impl.option_schema(), error_at)


def check_finite(value: Any, where: tuple, doc: Document) -> None:
    """NaN and infinity pass JSON Schema's minimum/maximum checks (every comparison is false), so
    they are refused here, before any layer sees them."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, float) and not math.isfinite(item):
            raise doc.error(where, f"must be a finite number, got {item}")


def _is_numeric(schema: dict) -> bool:
    text = str(schema)
    return "'integer'" in text or "'number'" in text


def _is_int(schema: dict) -> bool:
    return "'integer'" in str(schema) and "'number'" not in str(schema)
