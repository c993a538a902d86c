"""`conv`: a 2-D convolution. Input channels come from the incoming shape, never from the spec."""

from __future__ import annotations

from archspec.layers.base import (
    BOOL,
    POS_INT,
    LayerKind,
    Saved,
    ShapeError,
    conv_out,
    fmt_shape,
    kwargs_code,
    need_image,
    register,
)


def resolve_padding(o: dict) -> int | str:
    """'same' keeps H and W at stride 1 (odd or even kernels); at stride > 1 it pads (k-1)/2 like ResNets."""
    p = o["padding"]
    if p == "same":
        if o["stride"] == 1:
            return "same" if (o["kernel"] - 1) * o["dilation"] % 2 else o["dilation"] * (o["kernel"] - 1) // 2
        return o["dilation"] * (o["kernel"] - 1) // 2
    return p


@register
class Conv(LayerKind):
    name = "conv"
    synonyms = ("conv2d", "convolution", "convolution2d", "depthwise", "depthwise_conv", "dwconv", "pointwise")
    summary = "2-D convolution (nn.Conv2d); padding 'same' by default"
    main = "out"
    options = {
        "out": {**POS_INT, "description": "output channels"},
        "kernel": {**POS_INT, "default": 3},
        "stride": {**POS_INT, "default": 1},
        "padding": {"anyOf": [{"type": "integer", "minimum": 0}, {"enum": ["same", "valid"]}], "default": "same",
                    "description": "'same', 'valid' (0) or an integer"},
        "dilation": {**POS_INT, "default": 1},
        "groups": {**POS_INT, "default": 1},
        "bias": {**BOOL, "default": True},
        "init": {"enum": ["default", "dirac"], "default": "default",
                 "description": "dirac: the first min(in, out) filters start as the identity (airbench); "
                                "the rest keep torch's default init"},
    }
    required = ("out",)
    example = "conv: {out: 64, kernel: 5, padding: 0}"

    def _check(self, o: dict, shape):
        c, h, w = need_image(shape, "conv")
        if o["padding"] == "valid":
            o["padding"] = 0
        if c % o["groups"] or o["out"] % o["groups"]:
            raise ShapeError(f"groups={o['groups']} must divide input channels {c} and out {o['out']}")
        if o["init"] == "dirac" and o["groups"] != 1:
            raise ShapeError("init: dirac needs groups: 1")
        return c, h, w

    def output_shape(self, o, shape):
        c, h, w = self._check(o, shape)
        pad = resolve_padding(o)
        if pad == "same":
            return (o["out"], h, w)
        oh = conv_out(h, o["kernel"], o["stride"], pad, o["dilation"])
        ow = conv_out(w, o["kernel"], o["stride"], pad, o["dilation"])
        if oh < 1 or ow < 1:
            raise ShapeError(
                f"kernel {o['kernel']} (padding {pad}, stride {o['stride']}) does not fit the "
                f"{h}x{w} input {fmt_shape(shape)}: output would be {oh}x{ow}"
            )
        return (o["out"], oh, ow)

    def kernel(self, o):
        return f"{o['kernel']}x{o['kernel']}" + (f" s{o['stride']}" if o["stride"] != 1 else "")

    def saved(self, o, shape, out, device):
        # the weight is a parameter (no new memory) unless autocast keeps a 16-bit copy of it
        return Saved(input=True, compute="lowp", cast=out[0] * (shape[0] // o["groups"]) * o["kernel"] ** 2)

    def build(self, o, shape):
        from torch import nn

        from archspec.layers.modules import dirac_init

        conv = nn.Conv2d(shape[0], o["out"], o["kernel"], stride=o["stride"], padding=resolve_padding(o),
                         dilation=o["dilation"], groups=o["groups"], bias=o["bias"])
        return dirac_init(conv) if o["init"] == "dirac" else conv

    def macs(self, o, shape, out):
        return out[0] * out[1] * out[2] * (shape[0] // o["groups"]) * o["kernel"] ** 2

    def code(self, o, shape):
        extra = kwargs_code({"stride": o["stride"], "padding": resolve_padding(o), "dilation": o["dilation"],
                             "groups": o["groups"], "bias": o["bias"]},
                            {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True})
        code = f"nn.Conv2d({shape[0]}, {o['out']}, {o['kernel']}{extra})"
        return f"dirac_init({code})" if o["init"] == "dirac" else code
