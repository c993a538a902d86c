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
        return [""]

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
    h, oh = shape[1], out[1]
    stride = max(1, round(h / oh))
    if (h - 1) // stride + 1 != oh or (shape[2] - 1) // stride + 1 != out[2]:
        raise ShapeError(f"no 1x1 projection maps {fmt_shape(shape)} to {fmt_shape(out)}")
    return stride


@register
class Residual(Composite):
    name = "residual"
    summary = "layers plus a shortcut: identity, or a 1x1 conv+bn projection when shapes differ"
    options = {
        "layers": LAYER_LIST,
        "shortcut": {"enum": ["auto", "identity", "projection"], "default": "auto"},
    }
    required = ("layers",)
    example = "residual: {layers: [conv: 64, bn, relu, conv: 64, bn]}"

    def child_paths(self, count):
        return ["body"]

    def _needs_projection(self, o, shape, out) -> bool:
        if o["shortcut"] == "identity":
            if tuple(shape) != tuple(out):
                raise ShapeError(
                    f"identity shortcut needs the body to keep the shape, but it maps {fmt_shape(shape)} to "
                    f"{fmt_shape(out)} (use shortcut: auto)"
                )
            return False
        return o["shortcut"] == "projection" or tuple(shape) != tuple(out)

    def combine(self, o, shape, outs):
        out = outs[0]
        if self._needs_projection(o, shape, out):
            projection_shortcut(shape, out)
        return out

    def build_composite(self, o, shape, children, out):
        from torch import nn

        from archspec.layers.modules import Residual as ResidualModule

        shortcut = None
        if self._needs_projection(o, shape, out):
            stride = projection_shortcut(shape, out)
            if stride is None:
                shortcut = nn.Linear(shape[0], out[0])
            else:
                shortcut = nn.Sequential(nn.Conv2d(shape[0], out[0], 1, stride=stride, bias=False),
                                         nn.BatchNorm2d(out[0]))
        return ResidualModule(children[0], shortcut)

    def saved(self, o, shape, out, device):
        """The add keeps nothing. A conv projection keeps the block input (shared with the body)
        and its conv output (kept by its BN); a linear projection keeps the input."""
        if not self._needs_projection(o, shape, out):
            return Saved()
        if len(shape) == 1:
            return Saved(input=True, compute="lowp", cast_if_grad=shape[0] * out[0], temp=(Held(out[0]),))
        stats = bn_stats(out[0], device)
        return Saved(input=True, held=(Held(prod(out)), stats), compute="lowp", cast=shape[0] * out[0],
                     temp=(Held(prod(out)),))

    def extra_macs(self, o, shape, out):
        if not self._needs_projection(o, shape, out):
            return 0
        if len(shape) == 1:
            return shape[0] * out[0]
        return out[0] * out[1] * out[2] * shape[0]

    def code_composite(self, o, shape, child_codes, out):
        if not self._needs_projection(o, shape, out):
            return f"Residual({child_codes[0]})"
        stride = projection_shortcut(shape, out)
        if stride is None:
            sc = f"nn.Linear({shape[0]}, {out[0]})"
        else:
            sc = (f"nn.Sequential(nn.Conv2d({shape[0]}, {out[0]}, 1, stride={stride}, bias=False), "
                  f"nn.BatchNorm2d({out[0]}))")
        return f"Residual({child_codes[0]}, {sc})"


@register
class Parallel(Composite):
    name = "parallel"
    summary = "paths on the same input, merged by sum, mean, concat (channels) or gated (learned softmax weights)"
    options = {
        "merge": {"enum": ["sum", "mean", "concat", "gated"], "default": "sum"},
        "paths": {"type": "array", "minItems": 2, "items": {"type": "array", "minItems": 1},
                  "description": "a list of layer lists"},
        "times": {**POS_INT, "description": "with `layers`: that many copies of one path"},
        "layers": LAYER_LIST,
    }
    example = "parallel: {merge: concat, paths: [[conv: 32], [conv: {out: 32, kernel: 5}]]}"
    layer_lists = ("layers", "paths")

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
