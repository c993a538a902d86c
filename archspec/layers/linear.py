"""`flatten` and `linear`: the classifier head. `in_features` is inferred from the incoming shape."""

from __future__ import annotations

from archspec.layers.base import BOOL, POS_INT, LayerKind, Saved, kwargs_code, need_flat, prod, register


@register
class Flatten(LayerKind):
    name = "flatten"
    summary = "[C, H, W] -> [C*H*W]"
    synonyms = ("reshape", "view")
    example = "flatten"

    def output_shape(self, o, shape):
        return (prod(shape),)

    def saved(self, o, shape, out, device):
        return Saved(alias=True)  # a view of its input

    def build(self, o, shape):
        from torch import nn

        return nn.Flatten()

    def code(self, o, shape):
        return "nn.Flatten()"


@register
class Linear(LayerKind):
    name = "linear"
    aliases = ("fc",)
    summary = "fully connected layer (nn.Linear) on flat features, or on each token of [N, D]"
    synonyms = ("dense", "fully_connected", "fullyconnected", "mlp", "classifier", "head")
    main = "out"
    options = {"out": {**POS_INT, "description": "output features"}, "bias": {**BOOL, "default": True}}
    required = ("out",)
    example = "linear: 512"
    example_input = "flat"

    def output_shape(self, o, shape):
        if len(shape) == 2:  # tokens [N, D]: applied to each token (a transformer's MLP)
            return (shape[0], o["out"])
        need_flat(shape, "linear")
        return (o["out"],)

    def saved(self, o, shape, out, device):
        return Saved(input=True, compute="lowp", cast_if_grad=shape[-1] * o["out"])

    def build(self, o, shape):
        from torch import nn

        return nn.Linear(shape[-1], o["out"], bias=o["bias"])

    def macs(self, o, shape, out):
        return prod(shape) * o["out"]

    def code(self, o, shape):
        return f"nn.Linear({shape[-1]}, {o['out']}{kwargs_code({'bias': o['bias']}, {'bias': True})})"
