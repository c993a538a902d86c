"""`layerscale`: a learnable per-channel multiplier that starts small (CaiT, ConvNeXt).

Put last in a residual body, it lets a deep network start close to the identity: ConvNeXt's
blocks start at 1e-6. One value per channel of an image, or per feature of features / tokens.
"""

from __future__ import annotations

from archspec.layers.base import LayerKind, Saved, ShapeError, fmt_shape, register


@register
class LayerScaleKind(LayerKind):
    name = "layerscale"
    summary = "learnable per-channel scale, initialised to `init` (ConvNeXt: 1e-6)"
    synonyms = ("layer_scale", "ls", "gamma")
    main = "init"
    options = {"init": {"type": "number", "default": 1e-6, "description": "initial value of every scale"}}
    example = "layerscale: 1.0e-6"

    @staticmethod
    def param_shape(shape) -> tuple[int, ...]:
        if len(shape) == 3:
            return (shape[0], 1, 1)
        if len(shape) in (1, 2):
            return (shape[-1],)
        raise ShapeError(f"layerscale needs [C, H, W], [features] or tokens [N, D], got {fmt_shape(shape)}")

    def output_shape(self, o, shape):
        self.param_shape(shape)
        return shape

    def saved(self, o, shape, out, device):
        return Saved(input=True, compute="promote")  # for the scale's gradient; times an fp32 scale is fp32

    def build(self, o, shape):
        from archspec.layers.modules import LayerScale

        return LayerScale(self.param_shape(shape), o["init"])

    def code(self, o, shape):
        return f"LayerScale({self.param_shape(shape)}, {o['init']!r})"
