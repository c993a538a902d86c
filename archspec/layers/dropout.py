"""`dropout` (element-wise) and `dropout2d` (whole channels)."""

from __future__ import annotations

from archspec.layers.base import LayerKind, need_image, register

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

    def build(self, o, shape):
        from torch import nn

        return nn.Dropout2d(o["p"])

    def code(self, o, shape):
        return f"nn.Dropout2d({o['p']})"
