"""`patchify`: image [C, H, W] -> tokens [N, D], the first step of a vision transformer.

A conv whose kernel and stride are the patch size embeds each p x p patch as one D-wide token;
the (H/p) x (W/p) grid is read row by row, so N = H*W/p^2 (ViT-B/16 on 224x224: 196 tokens).
"""

from __future__ import annotations

from archspec.layers.base import BOOL, POS_INT, LayerKind, Saved, ShapeError, fmt_shape, need_image, register


@register
class PatchifyKind(LayerKind):
    name = "patchify"
    summary = "image [C, H, W] -> tokens [(H/p)*(W/p), dim]: a p x p stride-p conv, grid read row by row"
    synonyms = ("patch_embed", "patch_embedding", "patches", "tokenize", "to_tokens", "conv_proj")
    main = "dim"
    options = {
        "dim": {**POS_INT, "description": "token width D (ViT-B: 768)"},
        "patch": {**POS_INT, "description": "patch size p (ViT-B/16: 16)"},
        "bias": {**BOOL, "default": True},
    }
    required = ("dim", "patch")
    example = "patchify: {dim: 32, patch: 2}"

    def output_shape(self, o, shape):
        _, h, w = need_image(shape, "patchify")
        p = o["patch"]
        if h % p or w % p:
            raise ShapeError(f"patch {p} does not tile the {h}x{w} image {fmt_shape(shape)}")
        return ((h // p) * (w // p), o["dim"])

    def saved(self, o, shape, out, device):
        return Saved(input=True, compute="lowp", cast=o["dim"] * shape[0] * o["patch"] ** 2)  # as a conv

    def build(self, o, shape):
        from archspec.layers.modules import Patchify

        return Patchify(shape[0], o["dim"], o["patch"], stride=o["patch"], bias=o["bias"])

    def macs(self, o, shape, out):
        return out[0] * out[1] * shape[0] * o["patch"] ** 2

    def label(self, o, shape, written):
        return f"patchify {o['patch']}x{o['patch']}"

    def code(self, o, shape):
        bias = "" if o["bias"] else ", bias=False"
        return f"Patchify({shape[0]}, {o['dim']}, {o['patch']}, stride={o['patch']}{bias})"
