"""`bn`: batch normalisation; BatchNorm2d for images, BatchNorm1d for flat features, picked by shape."""

from __future__ import annotations

from archspec.layers.base import BOOL, Held, LayerKind, Saved, ShapeError, fmt_shape, kwargs_code, register

_NUM = {"type": "number", "exclusiveMinimum": 0}


def bn_stats(channels: int, device: str, count: int = 1) -> Held:
    """The batch mean and inverse std per channel that `count` batch norms keep for backward: fp32
    on CUDA whatever the input dtype, the input's dtype on the CPU."""
    return Held(2 * channels * count, "fp32" if device == "cuda" else "act", per_sample=False)


@register
class BatchNorm(LayerKind):
    name = "bn"
    aliases = ("batchnorm",)
    synonyms = ("batchnorm2d", "batchnorm1d", "batch_norm", "norm")
    summary = "batch norm; 1d or 2d chosen from the input shape"
    options = {
        "momentum": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.1},
        "eps": {**_NUM, "default": 1e-5},
        "affine": {**BOOL, "default": True},
    }
    example = "bn: {momentum: 0.01}"

    def _cls(self, shape):
        if len(shape) == 3:
            return "BatchNorm2d"
        if len(shape) == 1:
            return "BatchNorm1d"
        raise ShapeError(f"bn needs [C, H, W] or [features], got {fmt_shape(shape)}")

    def label(self, o, shape, written):
        return "bn2d" if len(shape) == 3 else "bn1d"

    def output_shape(self, o, shape):
        self._cls(shape)
        return shape

    def build(self, o, shape):
        from torch import nn

        return getattr(nn, self._cls(shape))(shape[0], eps=o["eps"], momentum=o["momentum"], affine=o["affine"])

    def macs(self, o, shape, out):
        return 0

    def saved(self, o, shape, out, device):
        return Saved(input=True, held=(bn_stats(shape[0], device),))

    def code(self, o, shape):
        extra = kwargs_code({"eps": o["eps"], "momentum": o["momentum"], "affine": o["affine"]},
                            {"eps": 1e-5, "momentum": 0.1, "affine": True})
        return f"nn.{self._cls(shape)}({shape[0]}{extra})"
