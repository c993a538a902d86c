"""`window_attention` and `patch_merging`: the two pieces of a Swin Transformer, on images.

Swin keeps the image layout: its blocks attend within `window` x `window` windows of the map
(every other block shifts them by half a window, so information crosses window borders) with a
learned bias per relative position, and its stages are joined by patch merging (2x2 cells to 4C
channels, LayerNorm, linear to 2C). Everything else in a Swin block (LayerNorm over channels, the
MLP as 1x1 convs, stochastic depth, the residuals) is ordinary kinds. MACs are counted by torch's
FlopCounterMode on the meta device.
"""

from __future__ import annotations

from archspec.layers.base import (
    BOOL,
    NONNEG_INT,
    POS_INT,
    Held,
    LayerKind,
    Saved,
    ShapeError,
    counted_macs,
    need_image,
    register,
)

DROP = {"type": "number", "minimum": 0, "maximum": 1, "exclusiveMaximum": 1, "default": 0.0}


@register
class WindowAttentionKind(LayerKind):
    name = "window_attention"
    summary = "Swin's (shifted) window self-attention on an image, with relative position bias"
    synonyms = ("shifted_window_attention", "swin_attention", "window_msa", "w_msa", "sw_msa")
    main = "heads"
    options = {
        "heads": {**POS_INT, "description": "attention heads; must divide the channels"},
        "window": {**POS_INT, "default": 7, "description": "window size in pixels"},
        "shift": {**NONNEG_INT, "default": 0, "description": "cyclic shift before windowing (Swin: 0, window/2, ...)"},
        "attention_dropout": {**DROP, "description": "dropout on the attention weights"},
        "dropout": {**DROP, "description": "dropout after the output projection"},
        "bias": {**BOOL, "default": True, "description": "query/key/value biases"},
    }
    required = ("heads",)
    example = "window_attention: {heads: 2, window: 4, shift: 2}"

    def output_shape(self, o, shape):
        c, _, _ = need_image(shape, "window_attention")
        if c % o["heads"]:
            raise ShapeError(f"heads={o['heads']} must divide the {c} channels")
        if o["shift"] >= o["window"]:
            raise ShapeError(f"shift {o['shift']} must be smaller than the window {o['window']}")
        return shape

    def saved(self, o, shape, out, device):
        """Attention with a mask runs torch's unfused path (on the CPU and on fake CUDA tensors):
        the projections' inputs (2 P C, P = pixels after padding to whole windows) in the compute
        dtype, and in fp32 the queries, keys and values (3 P C) and the attention weights of each
        window and head (heads x P x window^2)."""
        c, h, w = shape
        win = o["window"]
        pixels = -(-h // win) * win * -(-w // win) * win
        return Saved(held=(Held(2 * pixels * c), Held(3 * pixels * c + o["heads"] * pixels * win * win, "fp32")),
                     compute="lowp", cast=c * c, cast_if_grad=3 * c * c)

    def build(self, o, shape):
        from archspec.layers.modules import WindowAttention

        return WindowAttention(shape[0], o["heads"], o["window"], o["shift"], o["attention_dropout"],
                               o["dropout"], o["bias"])

    def macs(self, o, shape, out):
        return counted_macs(lambda: self.build(o, shape), shape)

    def label(self, o, shape, written):
        return f"window_attention {o['window']}x{o['window']}" + (f" shift {o['shift']}" if o["shift"] else "")

    def code(self, o, shape):
        return (f"WindowAttention({shape[0]}, {o['heads']}, {o['window']}, {o['shift']}, {o['attention_dropout']!r}, "
                f"{o['dropout']!r}, {o['bias']})")


@register
class PatchMergingKind(LayerKind):
    name = "patch_merging"
    summary = "Swin's downsampling: 2x2 cells -> 4C channels, LayerNorm, linear to 2C ([2C, H/2, W/2])"
    synonyms = ("patchmerging", "merge_patches", "space_to_depth")
    options = {"eps": {"type": "number", "exclusiveMinimum": 0, "default": 1e-5, "description": "LayerNorm eps"}}
    example = "patch_merging"

    def output_shape(self, o, shape):
        c, h, w = need_image(shape, "patch_merging")
        return (2 * c, (h + 1) // 2, (w + 1) // 2)

    def saved(self, o, shape, out, device):
        """The 4C-channel cells (the LayerNorm's input, in the input's dtype; fp32 on CUDA, where
        autocast runs layer_norm in fp32), its statistics, and the normalised cells (the linear's
        input, in its compute dtype)."""
        cells, pixels = 2 * out[0] * out[1] * out[2], out[1] * out[2]
        exact = "fp32" if device == "cuda" else "input"
        return Saved(held=(Held(cells, exact), Held(2 * pixels, exact), Held(cells)), compute="lowp",
                     cast_if_grad=8 * shape[0] * shape[0])

    def build(self, o, shape):
        from archspec.layers.modules import PatchMerging

        return PatchMerging(shape[0], o["eps"])

    def macs(self, o, shape, out):
        return out[1] * out[2] * 4 * shape[0] * out[0]

    def code(self, o, shape):
        return f"PatchMerging({shape[0]}, eps={o['eps']!r})"
