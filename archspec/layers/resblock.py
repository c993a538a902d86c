"""`resblock`: a basic residual block (ResNet BasicBlock, or the coursework's single-conv block)."""

from __future__ import annotations

from archspec.layers.base import (
    BOOL,
    POS_INT,
    Held,
    LayerKind,
    Saved,
    ShapeError,
    conv_out,
    need_image,
    register,
)
from archspec.layers.norm import bn_stats


@register
class ResBlockKind(LayerKind):
    name = "resblock"
    synonyms = ("basicblock", "basic_block", "res_block", "resnet_block")
    summary = "basic residual block: convs x (conv3x3+bn) + shortcut (1x1 conv+bn when the shape changes), relu"
    main = "out"
    options = {
        "out": {"anyOf": [POS_INT, {"type": "null"}], "default": None, "description": "default: input channels"},
        "stride": {**POS_INT, "default": 1},
        "convs": {"enum": [1, 2], "default": 2, "description": "3x3 convs in the main path"},
        "bias": {**BOOL, "default": False, "description": "conv biases (main path and projection)"},
    }
    example = "resblock: {out: 128, stride: 2}"

    def label(self, o, shape, written):
        return f"resblock x{o['convs']}"

    def output_shape(self, o, shape):
        c, h, w = need_image(shape, "resblock")
        oh, ow = conv_out(h, 3, o["stride"], 1), conv_out(w, 3, o["stride"], 1)
        if oh < 1 or ow < 1:
            raise ShapeError(f"stride {o['stride']} does not fit a {h}x{w} map")
        return (o["out"] or c, oh, ow)

    def build(self, o, shape):
        from archspec.layers.modules import ResBlock

        return ResBlock(shape[0], o["out"] or shape[0], o["stride"], o["convs"], o["bias"])

    def kernel(self, o):
        return "3x3" + (f" s{o['stride']}" if o["stride"] != 1 else "")

    def saved(self, o, shape, out, device):
        """Each conv's output is kept by the BN after it; with two convs the first BN's output,
        ReLU'd in place, is kept by that ReLU and the second conv. The projection's conv output is
        kept by its BN. The in-place ReLU after the add keeps the block's output. The block input
        is kept by the first conv (and the projection)."""
        cin, cout = shape[0], out[0]
        n = cout * out[1] * out[2]
        project = o["stride"] != 1 or cin != cout
        kept = (3 if o["convs"] == 2 else 1) + project
        weights = cin * cout * 9 + (o["convs"] - 1) * cout * cout * 9 + project * cin * cout
        stats = bn_stats(cout, device, count=o["convs"] + project)
        return Saved(input=True, output=True, held=(Held(kept * n), stats), compute="lowp",
                     cast=weights, temp=(Held((1 + project) * n),))

    def macs(self, o, shape, out):
        cin, cout = shape[0], out[0]
        hw = out[1] * out[2]
        total = hw * cin * cout * 9 + (o["convs"] - 1) * hw * cout * cout * 9
        if o["stride"] != 1 or cin != cout:
            total += hw * cin * cout
        return total

    def code(self, o, shape):
        return f"ResBlock({shape[0]}, {o['out'] or shape[0]}, stride={o['stride']}, convs={o['convs']}, bias={o['bias']})"
