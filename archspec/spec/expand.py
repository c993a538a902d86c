"""Layer lists -> `Node` trees: user blocks and `repeat` unrolled, `$vars` and `${expressions}`
substituted, each layer's options checked against its kind's schema.

Expansion knows nothing about particular kinds: it asks the kind (`archspec.layers`) for its
options, its scalar shorthand, its nested layer lists and whether it runs user code.
"""

from __future__ import annotations

from typing import Any

from archspec.errors import ArchspecError, did_you_mean
from archspec.layers import REGISTRY, LayerKind, ShapeError
from archspec.layers.composite import Sequence
from archspec.spec.document import Document
from archspec.spec.expr import NAME_RE, ExprError, evaluate_string, is_expression
from archspec.spec.schema_check import check_schema, dotted
from archspec.spec.tree import Node

MAX_LAYERS = 20_000  # after expansion
MAX_NESTING = 32  # blocks within blocks, composites within composites


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
    def expand(self, items: Any, where: tuple, label: str, scope: dict, stack: tuple, depth: int) -> list[Node]:
        if depth > MAX_NESTING:
            raise self.doc.error(where, f"layers nested deeper than {MAX_NESTING} levels")
        if not isinstance(items, list) or not items:
            raise self.doc.error(where, "expected a non-empty list of layers")
        out: list[Node] = []
        for i, item in enumerate(items):
            out.extend(self.item(item, where + (i,), f"{label}[{i}]", scope, stack, depth))
        return out

    def _kind_and_value(self, item: Any, where: tuple) -> tuple[str, Any]:
        if isinstance(item, str):
            return item, None
        if isinstance(item, dict) and len(item) == 1:
            ((kind, value),) = item.items()
            return str(kind), value
        if isinstance(item, dict):
            keys = ", ".join(map(str, item))
            raise self.doc.error(where, f"a layer has exactly one key (its kind), got {len(item)}: {keys}; "
                                        "write options as `- conv: {out: 64, kernel: 3}`")
        raise self.doc.error(where, f"a layer is a kind name like `relu` or a mapping like `conv: 64`, got {item!r}")

    def item(self, item, where, label, scope, stack, depth) -> list[Node]:
        kind, value = self._kind_and_value(item, where)
        self.count += 1
        if self.count > MAX_LAYERS:
            raise self.doc.error(where, f"more than {MAX_LAYERS:,} layers after expansion")
        vwhere = where + (kind,) if isinstance(item, dict) else where
        if kind == "repeat":
            return [self.repeat(value, vwhere, f"{label}.repeat", scope, stack, depth)]
        if kind in self.blocks:
            return [self.block(kind, value, vwhere, f"{label}.{kind}", scope, stack, depth)]
        if kind not in REGISTRY:
            choices = [*REGISTRY, *self.blocks, "repeat"]
            raise self.doc.error(where + (kind, "<key>") if isinstance(item, dict) else where,
                                 f'unknown layer kind "{kind}"{did_you_mean(kind, choices)}')
        return [self.layer(kind, value, vwhere, f"{label}.{kind}", scope, stack, depth)]

    def value(self, raw: Any, where: tuple, scope: dict, numeric: bool = False) -> Any:
        """Substitute $name / ${expr} (and bare var names where a number is expected)."""
        try:
            if is_expression(raw):
                return evaluate_string(raw, scope)
            if numeric and isinstance(raw, str) and NAME_RE.match(raw) and raw in scope:
                return scope[raw]
        except ExprError as e:
            raise self.doc.error(where, str(e)) from None
        return raw

    def repeat(self, value, where, label, scope, stack, depth) -> Node:
        if not isinstance(value, dict) or set(value) - {"times", "layers"} or "layers" not in value:
            raise self.doc.error(where, "repeat needs {times: N, layers: [...]}")
        times = self.value(value.get("times", 1), where + ("times",), scope, numeric=True)
        if isinstance(times, float) and times.is_integer():
            times = int(times)
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise self.doc.error(where + ("times",), f"times must be a positive integer, got {times!r}")
        children: list[Node] = []
        for i in range(times):
            inner = {**scope, "i": i}
            children.extend(self.expand(value["layers"], where + ("layers",), f"{label}.layers", inner, stack,
                                        depth + 1))
        file, line, col = self.doc.where(where)
        return Node(Sequence.name, {"layers": []}, file, line, col, label, label=f"repeat x{times}",
                    children=[children])

    def block(self, name, value, where, label, scope, stack, depth) -> Node:
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
        for p, default in params.items():
            if p in args:
                inner[p] = self.value(args[p], where + (p,) if isinstance(value, dict) else where, scope)
            elif default is not None:
                inner[p] = self.value(default, ("blocks", name, "params", p), self.scope)
            else:
                raise self.doc.error(where, f'block {name} needs parameter "{p}"')
        children = self.expand(block["layers"], ("blocks", name, "layers"), f"{label}>{name}.layers", inner,
                               (*stack, name), depth + 1)
        shown = ", ".join(f"{p}={inner[p]}" for p in params)
        file, line, col = self.doc.where(where)
        opts = {"layers": []}
        if node_name:
            opts["name"] = node_name
        return Node(Sequence.name, opts, file, line, col, label, name=node_name or "",
                    label=f"{name}({shown})" if shown else name, children=[children])

    def layer(self, kind, value, where, label, scope, stack, depth) -> Node:
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
        full = {**impl.defaults(), **self.options(impl, raw, value, where, scope)}
        self._validate(impl, full, raw, value, where)
        impl.tidy_options(full)
        node_name = full.pop("name", "") or ""
        file, line, col = self.doc.where(where)
        node = Node(impl.name, full, file, line, col, label, name=node_name, label=kind)
        if impl.composite:
            try:
                lists = impl.child_lists(full)
            except ShapeError as e:
                raise self.doc.error(where, str(e)) from None
            node.children = [self.expand(lst, where + sub, f"{label}.{'.'.join(map(str, sub))}", scope, stack,
                                         depth + 1) for sub, lst in lists]
        return node

    def options(self, impl: LayerKind, raw: dict, value: Any, where: tuple, scope: dict) -> dict[str, Any]:
        """`raw` with variables and expressions substituted; nested layer lists are left for `expand`."""
        opts: dict[str, Any] = {}
        for k, v in raw.items():
            schema = impl.options.get(k, {})
            numeric = _is_numeric(schema)
            owhere = where + (k,) if isinstance(value, dict) else where
            if k in impl.layer_lists:
                opts[k] = v
            elif isinstance(v, list):
                opts[k] = [self.value(x, owhere + (j,), scope, numeric) for j, x in enumerate(v)]
            else:
                opts[k] = self.value(v, owhere, scope, numeric)
            if numeric and isinstance(opts[k], float) and opts[k].is_integer() and _is_int(schema):
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


def _is_numeric(schema: dict) -> bool:
    text = str(schema)
    return "'integer'" in text or "'number'" in text


def _is_int(schema: dict) -> bool:
    return "'integer'" in str(schema) and "'number'" not in str(schema)
