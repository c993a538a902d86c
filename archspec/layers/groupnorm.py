"""`groupnorm`: group normalisation (nn.GroupNorm), independent of the batch size."""

from __future__ import annotations

from archspec.layers.base import (
    BOOL,
    POS_INT,
    Held,
    LayerKind,
    Saved,
    ShapeError,
    fmt_shape,
    kwargs_code,
    register,
)


@register
class GroupNorm(LayerKind):
    name = "groupnorm"
    summary = "group norm: channels in `groups` groups, each normalised over its channels and pixels"
    synonyms = ("group_norm", "gn")
    main = "groups"
    options = {
        "groups": {**POS_INT, "description": "number of groups; must divide the channels (1 = LayerNorm over C, H, W)"},
        "eps": {"type": "number", "exclusiveMinimum": 0, "default": 1e-5},
        "affine": {**BOOL, "default": True},
    }
    required = ("groups",)
    example = "groupnorm: 4"

    def output_shape(self, o, shape):
        if len(shape) not in (1, 3):
            raise ShapeError(f"groupnorm needs [C, H, W] or [features], got {fmt_shape(shape)}")
        if shape[0] % o["groups"]:
            raise ShapeError(f"groups={o['groups']} must divide the {shape[0]} channels")
        return shape

    def saved(self, o, shape, out, device):
        """Its input and a mean and 1/std per group; like layer_norm, fp32 under CUDA's autocast."""
        return Saved(input=True, held=(Held(2 * o["groups"]),), compute="fp32" if device == "cuda" else "follow")

    def build(self, o, shape):
        from torch import nn

        return nn.GroupNorm(o["groups"], shape[0], eps=o["eps"], affine=o["affine"])

    def code(self, o, shape):
        extra = kwargs_code({"eps": o["eps"], "affine": o["affine"]}, {"eps": 1e-5, "affine": True})
        return f"nn.GroupNorm({o['groups']}, {shape[0]}{extra})"
