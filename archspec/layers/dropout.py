"""`dropout` (element-wise) and `dropout2d` (whole channels)."""

from __future__ import annotations

from archspec.layers.base import Held, LayerKind, Saved, need_image, prod, register

_P = {"type": "number", "minimum": 0, "maximum": 1, "exclusiveMaximum": 1, "default": 0.5,
      "description": "drop probability, 0 <= p < 1"}


@register
class Dropout(LayerKind):
    name = "dropout"
    summary = "dropout with probability p (nn.Dropout)"
    main = "p"
    options = {"p": _P}
    example = "dropout: 0.3"

    def label(self, o, shape, written):
        return f"dropout {o['p']}"

    def saved(self, o, shape, out, device):
        if o["p"] == 0:
            return Saved(alias=True)  # torch returns the input itself
        # CUDA's fused kernel keeps a bool mask; the CPU path keeps the scaled noise in the input's dtype
        return Saved(held=(Held(prod(shape), "bool" if device == "cuda" else "act"),))

    def build(self, o, shape):
        from torch import nn

        return nn.Dropout(o["p"])

    def code(self, o, shape):
        return f"nn.Dropout({o['p']})"


@register
class Dropout2d(LayerKind):
    name = "dropout2d"
    synonyms = ("spatial_dropout", "channel_dropout")
    summary = "channel dropout (nn.Dropout2d)"
    main = "p"
    options = {"p": _P}
    example = "dropout2d: 0.1"

    def output_shape(self, o, shape):
        need_image(shape, self.name)
        return shape

    def saved(self, o, shape, out, device):
        if o["p"] == 0:
            return Saved(alias=True)
        return Saved(held=(Held(shape[0]),))  # one noise value per channel and sample

    def build(self, o, shape):
        from torch import nn

        return nn.Dropout2d(o["p"])

    def code(self, o, shape):
        return f"nn.Dropout2d({o['p']})"
