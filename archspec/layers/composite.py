"""Kinds that hold nested layer lists: `sequence`, `residual` and `parallel`.

The spec loader expands and shape-checks the nested lists, and one tree walker
(`archspec.spec.tree`) drives building, code generation and counting; these classes only say where
the lists are and how the child results combine. `repeat` and user blocks are expanded by the
loader into `sequence` layers, so they need no class here.
"""

from __future__ import annotations

from archspec.layers.base import POS_INT, Held, LayerKind, Saved, ShapeError, fmt_shape, prod, register
from archspec.layers.norm import bn_stats

LAYER_LIST = {"type": "array", "minItems": 1, "description": "a list of layers"}


class Composite(LayerKind):
    """Base of kinds holding nested layer lists ("groups"). On top of `LayerKind` a composite defines:

    ``layer_lists``                  options whose values are layer lists; the loader expands them
                                     instead of substituting variables in them.
    ``child_lists(o)``               [(option path, raw layer list)], one per group, in order.
    ``child_paths(count)``           where each group's ``nn.Sequential`` sits inside the built module
                                     ("" = the module is the group itself): module paths and
                                     freezing follow it.
    ``write_children(o, groups)``    the options that write the expanded groups back into the
                                     resolved spec.
    ``combine(o, shape, outs)``      the output shape from each group's output shape.
    ``build_composite(o, shape, children, out)``  the module from the built groups.
    ``extra_macs(o, shape, out)``    MACs of its own (projection, gate) beyond the groups'.
    ``code_composite(o, shape, child_codes, out)`` code from each group's code.
    ``saved(o, shape, out, device)`` what its own work (shortcut, merge) keeps for backward; its
                                     groups' layers count for themselves. Default: nothing kept,
                                     a new output (an add).
    """

    composite = True
    layer_lists = ("layers",)

    def child_lists(self, o: dict) -> list[tuple[tuple, list]]:
        """[(option path, raw layer list)], e.g. [(("layers",), [...])]."""
        return [(("layers",), o["layers"])]

    def child_paths(self, count: int) -> list[str]:
        """Where each child list lives in the built module ("" = the module is the list itself)."""
        return [""] * count

    def write_children(self, o: dict, groups: list[list]) -> dict:
        """`o` (non-default options) with the structural options replaced by the expanded groups."""
        return {**{k: v for k, v in o.items() if k not in self.layer_lists}, "layers": groups[0]}

    def combine(self, o: dict, shape, outs: list) -> tuple:
        raise NotImplementedError

    def build_composite(self, o, shape, children: list, out):
        raise NotImplementedError

    def extra_macs(self, o, shape, out) -> int:
        return 0

    def saved(self, o, shape, out, device) -> Saved:
        return Saved()

    def code_composite(self, o, shape, child_codes: list[str], out) -> str:
        raise NotImplementedError


@register
class Sequence(Composite):
    name = "sequence"
    synonyms = ("sequential", "group", "stack")
    summary = "a named group of layers (what blocks and `repeat` expand to)"
    options = {"layers": LAYER_LIST}
    required = ("layers",)
    example = "sequence: {name: features, layers: [conv: 32, relu]}"
    resolved_keeps_name = True  # a block's or repeat's name would otherwise be lost on reloading

    def label(self, o, shape, written):
        return written

    def name_stem(self, written):
        return written.split("(")[0].split(" ")[0]  # "stage(out=256)" -> stage, "repeat x3" -> repeat

    def combine(self, o, shape, outs):
        return outs[0]

    def saved(self, o, shape, out, device):
        return Saved(alias=True)  # its output is its group's output

    def build_composite(self, o, shape, children, out):
        return children[0]

    def code_composite(self, o, shape, child_codes, out):
        return child_codes[0]


def projection_shortcut(shape, out):
    """(description, needs conv, stride) of the projection that maps `shape` to `out`."""
    if len(shape) != len(out):
        raise ShapeError(f"cannot add a shortcut from {fmt_shape(shape)} to {fmt_shape(out)}")
    if len(shape) == 1:
        return None
    if len(shape) != 3:
        raise ShapeError(f"no projection shortcut for {fmt_shape(shape)} -> {fmt_shape(out)}; give `shortcut:` layers")
    h, oh = shape[1], out[1]
    stride = max(1, round(h / oh))
    if (h - 1) // stride + 1 != oh or (shape[2] - 1) // stride + 1 != out[2]:
        raise ShapeError(f"no 1x1 projection maps {fmt_shape(shape)} to {fmt_shape(out)}")
    return stride


@register
class Residual(Composite):
    name = "residual"
    summary = ("layers plus a shortcut: identity, a 1x1 conv+bn projection when shapes differ, "
               "your own layer list, or none when the shape changes (if_same)")
    synonyms = ("skip", "shortcut", "add", "skip_connection", "residual_block")
    layer_lists = ("layers", "shortcut")
    options = {
        "layers": LAYER_LIST,
        "shortcut": {"anyOf": [{"enum": ["auto", "identity", "projection", "if_same"]}, LAYER_LIST],
                     "default": "auto",
                     "description": "auto: identity, or a 1x1 conv+bn projection when the shape changes; "
                                    "if_same: identity when the body keeps the shape, else no shortcut "
                                    "(MobileNet's inverted residual); or a list of layers"},
    }
    required = ("layers",)
    example = "residual: {layers: [conv: 64, bn, relu, conv: 64, bn]}"

    def child_lists(self, o):
        lists = [(("layers",), o["layers"])]
        if isinstance(o["shortcut"], list):
            lists.append((("shortcut",), o["shortcut"]))
        return lists

    def child_paths(self, count):
        return ["body", "shortcut"][:count]

    def write_children(self, o, groups):
        out = {**o, "layers": groups[0]}
        if len(groups) > 1:
            out["shortcut"] = groups[1]
        return out

    def _mode(self, o, shape, out) -> str:
        """identity, projection, layers or none: what is added to the body's output."""
        sc = o["shortcut"]
        if isinstance(sc, list):
            return "layers"
        same = tuple(shape) == tuple(out)
        if sc == "identity" and not same:
            raise ShapeError(
                f"identity shortcut needs the body to keep the shape, but it maps {fmt_shape(shape)} to "
                f"{fmt_shape(out)} (use shortcut: auto)"
            )
        if sc == "if_same":
            return "identity" if same else "none"
        if sc == "projection" or not same:
            return "projection"
        return "identity"

    def combine(self, o, shape, outs):
        out = outs[0]
        mode = self._mode(o, shape, out)
        if mode == "layers" and tuple(outs[1]) != tuple(out):
            raise ShapeError(f"the shortcut gives {fmt_shape(outs[1])} but the body gives {fmt_shape(out)}; "
                             "they are added, so they must match")
        if mode == "projection":
            projection_shortcut(shape, out)
        return out

    def build_composite(self, o, shape, children, out):
        from torch import nn

        from archspec.layers.modules import Residual as ResidualModule

        mode = self._mode(o, shape, out)
        if mode == "none":
            return ResidualModule(children[0], add=False)
        shortcut = children[1] if mode == "layers" else None
        if mode == "projection":
            stride = projection_shortcut(shape, out)
            if stride is None:
                shortcut = nn.Linear(shape[0], out[0])
            else:
                shortcut = nn.Sequential(nn.Conv2d(shape[0], out[0], 1, stride=stride, bias=False),
                                         nn.BatchNorm2d(out[0]))
        return ResidualModule(children[0], shortcut)

    def saved(self, o, shape, out, device):
        """The add keeps nothing (without one, the output is the body's). A conv projection keeps
        the block input (shared with the body) and its conv output (kept by its BN); a linear
        projection keeps the input. A shortcut of layers speaks for itself."""
        mode = self._mode(o, shape, out)
        if mode == "none":
            return Saved(alias=True)
        if mode != "projection":
            return Saved(merges_input=mode == "identity")
        if len(shape) == 1:
            return Saved(input=True, compute="lowp", cast_if_grad=shape[0] * out[0], temp=(Held(out[0]),))
        stats = bn_stats(out[0], device)
        return Saved(input=True, held=(Held(prod(out)), stats), compute="lowp", cast=shape[0] * out[0],
                     temp=(Held(prod(out)),))

    def extra_macs(self, o, shape, out):
        if self._mode(o, shape, out) != "projection":
            return 0
        if len(shape) == 1:
            return shape[0] * out[0]
        return out[0] * out[1] * out[2] * shape[0]

    def code_composite(self, o, shape, child_codes, out):
        mode = self._mode(o, shape, out)
        if mode == "none":
            return f"Residual({child_codes[0]}, add=False)"
        if mode == "layers":
            return f"Residual({child_codes[0]}, {child_codes[1]})"
        if mode == "identity":
            return f"Residual({child_codes[0]})"
        stride = projection_shortcut(shape, out)
        if stride is None:
            sc = f"nn.Linear({shape[0]}, {out[0]})"
        else:
            sc = (f"nn.Sequential(nn.Conv2d({shape[0]}, {out[0]}, 1, stride={stride}, bias=False), "
                  f"nn.BatchNorm2d({out[0]}))")
        return f"Residual({child_codes[0]}, {sc})"


def broadcast(shapes: list) -> tuple:
    """numpy/torch broadcasting of equal-rank shapes: each size equal, or 1 on all but one side."""
    result = list(shapes[0])
    for i, s in enumerate(shapes[1:], 1):
        if len(s) != len(result):
            raise ShapeError(f"merge mul needs paths of the same rank, but path 0 gives {fmt_shape(shapes[0])} "
                             f"and path {i} gives {fmt_shape(s)}")
        for d, (a, b) in enumerate(zip(result, s, strict=True)):
            if a != b and 1 not in (a, b):
                raise ShapeError(f"merge mul cannot broadcast {fmt_shape(shapes[0])} with {fmt_shape(s)} "
                                 f"(size {a} vs {b} in dimension {d}; one of them must be 1)")
            result[d] = max(a, b)
    return tuple(result)


@register
class Parallel(Composite):
    name = "parallel"
    summary = ("paths on the same input, merged by sum, mean, concat (channels), mul (broadcast: "
               "squeeze-excitation's [C, H, W] x [C, 1, 1]) or gated (learned softmax weights)")
    synonyms = ("branch", "branches", "concat", "inception", "multiply", "squeeze_excitation", "se", "gate")
    layer_lists = ("layers", "paths")
    options = {
        "merge": {"enum": ["sum", "mean", "concat", "mul", "gated"], "default": "sum"},
        "paths": {"type": "array", "minItems": 2, "items": {"type": "array", "minItems": 1},
                  "description": "a list of layer lists"},
        "times": {**POS_INT, "description": "with `layers`: that many copies of one path"},
        "layers": LAYER_LIST,
    }
    example = "parallel: {merge: concat, paths: [[conv: 32], [conv: {out: 32, kernel: 5}]]}"

    def child_lists(self, o):
        if "paths" in o:
            if "layers" in o or "times" in o:
                raise ShapeError("give either `paths` or `times` + `layers`, not both")
            return [(("paths", i), p) for i, p in enumerate(o["paths"])]
        if "layers" not in o or "times" not in o:
            raise ShapeError("parallel needs `paths: [[...], [...]]` or `times: N` with `layers: [...]`")
        return [(("layers",), o["layers"])] * o["times"]

    def child_paths(self, count):
        return [f"paths.{i}" for i in range(count)]

    def write_children(self, o, groups):
        """`times` copies are written out as `paths`, so the resolved spec shows every path."""
        return {**{k: v for k, v in o.items() if k not in (*self.layer_lists, "times")}, "paths": groups}

    def label(self, o, shape, written):
        return f"parallel {o['merge']} x{len(self.child_lists(o))}"

    def combine(self, o, shape, outs):
        first = outs[0]
        if o["merge"] == "mul":
            return broadcast(outs)
        if o["merge"] == "concat":
            for i, s in enumerate(outs[1:], 1):
                if len(s) != len(first) or tuple(s[1:]) != tuple(first[1:]):
                    raise ShapeError(
                        f"concat needs paths with the same spatial size, but path 0 gives {fmt_shape(first)} "
                        f"and path {i} gives {fmt_shape(s)}"
                    )
            return (sum(s[0] for s in outs), *first[1:])
        for i, s in enumerate(outs[1:], 1):
            if tuple(s) != tuple(first):
                raise ShapeError(
                    f"merge {o['merge']} needs equal shapes, but path 0 gives {fmt_shape(first)} and path {i} "
                    f"gives {fmt_shape(s)}"
                )
        if o["merge"] == "gated" and len(shape) not in (1, 3):
            raise ShapeError(f"gated merge needs an input [C, H, W] or [features], got {fmt_shape(shape)}")
        return first

    def build_composite(self, o, shape, children, out):
        from archspec.layers.modules import Parallel as ParallelModule

        return ParallelModule(children, o["merge"], in_channels=shape[0])

    def saved(self, o, shape, out, device):
        """concat keeps nothing; sum and mean stack the paths first (a temporary). gated keeps the
        stacked paths and the softmax weights for its product, and the gate's input (pooled, or
        the input itself when flat)."""
        paths = len(self.child_lists(o))
        if o["merge"] == "concat":
            return Saved()
        if o["merge"] == "mul":
            return Saved(groups=True)  # each factor, for the other's gradient
        stacked = Held(paths * prod(out))
        if o["merge"] != "gated":
            return Saved(temp=(stacked,))
        # CUDA autocast runs the softmax in fp32, and the product with fp32 weights is fp32 too
        weights = Held(paths, "fp32" if device == "cuda" else "act")
        gate = (weights,) if len(shape) == 1 else (Held(shape[0]), weights)
        return Saved(input=len(shape) == 1, held=(stacked, *gate), compute="fp32" if device == "cuda" else "follow",
                     cast_if_grad=shape[0] * paths, temp=(stacked,))

    def extra_macs(self, o, shape, out):
        return shape[0] * len(self.child_lists(o)) if o["merge"] == "gated" else 0

    def code_composite(self, o, shape, child_codes, out):
        paths = ",\n".join(child_codes)
        return f"Parallel([\n{paths}\n], merge={o['merge']!r}, in_channels={shape[0]})"
