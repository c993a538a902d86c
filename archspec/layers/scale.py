"""`scale`: multiply by a fixed number (no parameters). airbench94 multiplies its logits by 1/9,
which sets the effective temperature of the softmax without changing the linear layer's init."""

from __future__ import annotations

from archspec.layers.base import LayerKind, Saved, register


@register
class ScaleKind(LayerKind):
    name = "scale"
    synonyms = ("multiply", "mul", "temperature")
    summary = "x * factor, a fixed multiplier (e.g. airbench's 1/9 on the logits)"
    main = "factor"
    options = {"factor": {"type": "number", "description": "the multiplier"}}
    required = ("factor",)
    example = "scale: 0.5"

    def build(self, o, shape):
        from archspec.layers.modules import Scale

        return Scale(o["factor"])

    def macs(self, o, shape, out):
        return 0

    def saved(self, o, shape, out, device):
        return Saved()  # x * a constant: the gradient needs neither x nor the result

    def code(self, o, shape):
        return f"Scale({o['factor']!r})"
