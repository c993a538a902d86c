"""`layernorm`: layer normalisation over features, tokens' width, or an image's channels.

On flat features [F] and tokens [N, D] it is nn.LayerNorm over the last dimension (a transformer's
norm). On an image [C, H, W] it normalises the C channels at every pixel, as ConvNeXt does, rather
than over the whole [C, H, W] map (which would tie the model to one input size).
"""

from __future__ import annotations

from archspec.layers.base import (
    BOOL,
    Held,
    LayerKind,
    Saved,
    ShapeError,
    fmt_shape,
    kwargs_code,
    prod,
    register,
)

_EPS = {"type": "number", "exclusiveMinimum": 0, "default": 1e-5}


@register
class LayerNorm(LayerKind):
    name = "layernorm"
    summary = "layer norm over features / token width, or over channels at each pixel of an image"
    synonyms = ("layer_norm", "ln", "layernorm2d", "norm")
    options = {"eps": _EPS, "affine": {**BOOL, "default": True, "description": "learnable weight and bias"}}
    example = "layernorm: {eps: 1.0e-6}"

    def _cls(self, shape) -> str:
        if len(shape) == 3:
            return "LayerNorm2d"
        if len(shape) in (1, 2):
            return "nn.LayerNorm"
        raise ShapeError(f"layernorm needs [C, H, W], [features] or tokens [N, D], got {fmt_shape(shape)}")

    def output_shape(self, o, shape):
        self._cls(shape)
        return shape

    def build(self, o, shape):
        from torch import nn

        from archspec.layers.modules import LayerNorm2d

        cls = LayerNorm2d if self._cls(shape) == "LayerNorm2d" else nn.LayerNorm
        return cls(self._dim(shape), eps=o["eps"], elementwise_affine=o["affine"])

    def saved(self, o, shape, out, device):
        """Its input, and a mean and 1/std per normalised position (pixel, token or sample). CUDA's
        autocast runs layer_norm in fp32: it keeps an fp32 copy of a 16-bit input, fp32 statistics."""
        positions = prod(shape) // self._dim(shape)
        return Saved(input=True, held=(Held(2 * positions),), compute="fp32" if device == "cuda" else "follow")

    @staticmethod
    def _dim(shape) -> int:
        return shape[0] if len(shape) == 3 else shape[-1]

    def label(self, o, shape, written) -> str:
        return "layernorm (channels)" if len(shape) == 3 else "layernorm"

    def code(self, o, shape):
        extra = kwargs_code({"eps": o["eps"], "elementwise_affine": o["affine"]},
                            {"eps": 1e-5, "elementwise_affine": True})
        return f"{self._cls(shape)}({self._dim(shape)}{extra})"
