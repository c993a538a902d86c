"""`encoder_block`: one pre-norm transformer encoder block, as in ViT:

    x = x + dropout(attention(layernorm(x)))
    x = x + mlp(layernorm(x))        mlp = linear (D -> D * mlp_ratio), GELU, dropout, linear, dropout

The same thing can be written with `residual`, `layernorm`, `attention` and `linear` (the docs
show it); this kind keeps a 12-block ViT spec short and its module names match torchvision's.
"""

from __future__ import annotations

from archspec.layers.attention import attention_saved
from archspec.layers.base import (
    POS_INT,
    Held,
    LayerKind,
    Saved,
    ShapeError,
    counted_macs,
    need_tokens,
    register,
)

DROP = {"type": "number", "minimum": 0, "maximum": 1, "exclusiveMaximum": 1, "default": 0.0}


@register
class EncoderBlockKind(LayerKind):
    name = "encoder_block"
    summary = "pre-norm transformer encoder block: attention and an MLP, each in a residual (ViT)"
    synonyms = ("transformer", "transformer_block", "encoder", "encoder_layer", "transformer_encoder_layer",
                "vit_block", "block")
    main = "heads"
    options = {
        "heads": {**POS_INT, "description": "attention heads; must divide D"},
        "mlp_ratio": {"type": "number", "exclusiveMinimum": 0, "default": 4,
                      "description": "MLP hidden width = int(D * mlp_ratio)"},
        "dropout": {**DROP, "description": "dropout after attention and in the MLP"},
        "attention_dropout": {**DROP, "description": "dropout on the attention weights"},
        "eps": {"type": "number", "exclusiveMinimum": 0, "default": 1e-6, "description": "LayerNorm eps (ViT's)"},
    }
    required = ("heads",)
    example = "encoder_block: {heads: 4, mlp_ratio: 2}"
    example_input = "tokens"

    def output_shape(self, o, shape):
        _, d = need_tokens(shape, "encoder_block")
        if d % o["heads"]:
            raise ShapeError(f"heads={o['heads']} must divide the token width {d}")
        if int(d * o["mlp_ratio"]) < 1:
            raise ShapeError(f"mlp_ratio {o['mlp_ratio']} leaves no MLP width for D={d}")
        return shape

    def _args(self, o, shape) -> tuple:
        d = shape[1]
        return d, o["heads"], int(d * o["mlp_ratio"]), o["dropout"], o["attention_dropout"], o["eps"]

    def saved(self, o, shape, out, device):
        """In the residual stream's dtype (its input's: fp32 in a ViT, whose class token promotes
        it): the input and the sum after attention (each a LayerNorm's input) and both LayerNorms'
        statistics. In the projections' 16 bits under autocast: the attention's tensors, the MLP's
        input and its hidden layer before and after GELU; and 16-bit copies of all weights."""
        n, d = shape
        m = int(d * o["mlp_ratio"])
        attention = attention_saved(n, d, o["heads"])
        lowp = Held(attention.held[0].numel + n * d + 2 * n * m, "lowp")
        return Saved(input=True, held=(Held(4 * n + n * d), lowp, attention.held[1]),
                     cast=attention.cast + attention.cast_if_grad + 2 * d * m)

    def build(self, o, shape):
        from archspec.layers.modules import EncoderBlock

        return EncoderBlock(*self._args(o, shape))

    def macs(self, o, shape, out):
        return counted_macs(lambda: self.build(o, shape), shape)

    def label(self, o, shape, written):
        return f"encoder_block {o['heads']} heads"

    def code(self, o, shape):
        d, heads, mlp, drop, adrop, eps = self._args(o, shape)
        return (f"EncoderBlock({d}, {heads}, {mlp}, dropout={drop!r}, attention_dropout={adrop!r}, "
                f"eps={eps!r})")
