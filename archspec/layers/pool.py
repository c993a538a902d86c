"""Pooling kinds: `pool` (max or avg), its aliases `maxpool`/`avgpool`, `gap` and `adaptive_pool`."""

from __future__ import annotations

from archspec.layers.base import (
    NONNEG_INT,
    POS_INT,
    Held,
    LayerKind,
    Saved,
    ShapeError,
    conv_out,
    fmt_shape,
    kwargs_code,
    need_image,
    register,
)


def pool_out(size: int, window: int, stride: int, padding: int, ceil: bool) -> int:
    """Output size of a pooling window, as torch computes it (ceil_mode: a last window that starts
    inside the input or its left padding counts)."""
    if not ceil:
        return conv_out(size, window, stride, padding)
    out = -(-(size + 2 * padding - window) // stride) + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _pool_saved(kind: str, out) -> Saved:
    """Max pooling keeps its input and the argmax indices (int64, one per output element); average
    pooling keeps only its input."""
    if kind == "max":
        return Saved(input=True, held=(Held(out[0] * out[1] * out[2], "int64"),))
    return Saved(input=True)


class _Pool(LayerKind):
    main = "size"
    default_type = "max"
    options = {
        "size": {**POS_INT, "default": 2, "description": "window size"},
        "stride": {"anyOf": [POS_INT, {"type": "null"}], "default": None, "description": "default: = size"},
        "padding": {**NONNEG_INT, "default": 0},
        "type": {"enum": ["max", "avg"], "default": "max"},
        "ceil": {"type": "boolean", "default": False,
                 "description": "round the output size up (ceil_mode: a partial last window counts)"},
    }

    def _type(self, o):
        return o.get("type") or self.default_type

    def output_shape(self, o, shape):
        c, h, w = need_image(shape, self.name)
        s = o["stride"] or o["size"]
        if o["padding"] * 2 > o["size"]:
            raise ShapeError(f"padding {o['padding']} must be at most half the window size {o['size']}")
        oh, ow = (pool_out(n, o["size"], s, o["padding"], o["ceil"]) for n in (h, w))
        if oh < 1 or ow < 1:
            raise ShapeError(
                f"a {o['size']}x{o['size']} window does not fit the {h}x{w} map of {fmt_shape(shape)}: "
                f"the output would be {max(oh, 0)}x{max(ow, 0)} (too many pools for this input size?)"
            )
        return (c, oh, ow)

    def label(self, o, shape, written):
        return f"{self._type(o)}pool"

    def kernel(self, o):
        stride = o["stride"] or o["size"]
        return f"{o['size']}x{o['size']}" + (f" s{stride}" if stride != o["size"] else "")

    def saved(self, o, shape, out, device):
        return _pool_saved(self._type(o), out)

    def build(self, o, shape):
        from torch import nn

        cls = nn.MaxPool2d if self._type(o) == "max" else nn.AvgPool2d
        return cls(o["size"], stride=o["stride"] or o["size"], padding=o["padding"], ceil_mode=o["ceil"])

    def code(self, o, shape):
        cls = "nn.MaxPool2d" if self._type(o) == "max" else "nn.AvgPool2d"
        extra = kwargs_code({"stride": o["stride"] or o["size"], "padding": o["padding"], "ceil_mode": o["ceil"]},
                            {"stride": o["size"], "padding": 0, "ceil_mode": False})
        return f"{cls}({o['size']}{extra})"


@register
class Pool(_Pool):
    name = "pool"
    synonyms = ("pooling", "subsample", "downsample")
    summary = "max (default) or average pooling; `pool: 2` = MaxPool2d(2)"
    example = "pool: {size: 3, stride: 2, padding: 1}"


@register
class MaxPool(_Pool):
    name = "maxpool"
    synonyms = ("maxpool2d", "max_pooling")
    summary = "max pooling (same options as pool)"
    options = {k: v for k, v in _Pool.options.items() if k != "type"}
    example = "maxpool: 2"


@register
class AvgPool(_Pool):
    name = "avgpool"
    synonyms = ("avg_pool", "avgpool2d", "average_pool", "averagepool")
    summary = "average pooling (same options as pool)"
    default_type = "avg"
    options = {k: v for k, v in _Pool.options.items() if k != "type"}
    example = "avgpool: 2"


@register
class AdaptivePool(LayerKind):
    name = "adaptive_pool"
    synonyms = ("adaptive_avg_pool", "adaptive_max_pool", "adaptivemaxpool2d")
    summary = "adaptive pooling to a fixed output size (AdaptiveAvgPool2d / AdaptiveMaxPool2d)"
    main = "size"
    options = {"size": {**POS_INT, "default": 1}, "type": {"enum": ["max", "avg"], "default": "avg"}}
    example = "adaptive_pool: {size: 2, type: max}"

    def output_shape(self, o, shape):
        c, _, _ = need_image(shape, self.name)
        return (c, o["size"], o["size"])

    def saved(self, o, shape, out, device):
        if o["type"] == "avg" and o["size"] == 1:
            return Saved()  # torch computes it as a mean, whose gradient needs no tensor
        return _pool_saved(o["type"], out)

    def build(self, o, shape):
        from torch import nn

        return (nn.AdaptiveAvgPool2d if o["type"] == "avg" else nn.AdaptiveMaxPool2d)(o["size"])

    def code(self, o, shape):
        return f"nn.Adaptive{'Avg' if o['type'] == 'avg' else 'Max'}Pool2d({o['size']})"


@register
class GlobalAvgPool(LayerKind):
    name = "gap"
    synonyms = ("global_avg_pool", "global_average_pool", "globalavgpool", "global_pool", "adaptiveavgpool2d")
    summary = "global average pool: [C, H, W] -> [C, 1, 1] (AdaptiveAvgPool2d(1))"
    example = "gap"

    def output_shape(self, o, shape):
        c, _, _ = need_image(shape, self.name)
        return (c, 1, 1)

    def saved(self, o, shape, out, device):
        return Saved()  # a mean over H and W: its gradient needs no tensor

    def build(self, o, shape):
        from torch import nn

        return nn.AdaptiveAvgPool2d(1)

    def code(self, o, shape):
        return "nn.AdaptiveAvgPool2d(1)"
