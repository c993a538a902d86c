"""`attention`: multi-head self-attention on tokens [N, D] (torch's nn.MultiheadAttention).

MACs come from torch's FlopCounterMode on the meta device (the projections plus the two
N x N x D products of scaled dot-product attention), not from a formula of ours.

What it keeps for backward is what torch's fused attention keeps (`attention_saved`): the
projections' inputs, the packed queries/keys/values, the attention output and one fp32
log-sum-exp per head and token, never the N x N weights. That is the CPU's kernel and, as far as
the saved tensors go, the fused kernels GPUs run (fake CUDA tensors fall back to the unfused
path, which would keep the weights, so the CUDA figure is not checked against them).
"""

from __future__ import annotations

from archspec.layers.base import (
    BOOL,
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


def attention_saved(tokens: int, dim: int, heads: int) -> Saved:
    """nn.MultiheadAttention's saved tensors: the input as the packed projection reads it, the
    queries/keys/values (3 N D), the output and the output projection's input (N D each), an fp32
    log-sum-exp per head and token; 16-bit weight copies under autocast."""
    held = (Held(5 * tokens * dim), Held(heads * tokens, "fp32"))
    return Saved(held=held, compute="lowp", cast=dim * dim, cast_if_grad=3 * dim * dim)


@register
class Attention(LayerKind):
    name = "attention"
    aliases = ("mha",)
    summary = "multi-head self-attention on tokens [N, D] (nn.MultiheadAttention, query = key = value)"
    synonyms = ("self_attention", "multihead_attention", "multiheadattention", "attn", "msa")
    main = "heads"
    options = {
        "heads": {**POS_INT, "description": "attention heads; must divide D"},
        "dropout": {**DROP, "description": "dropout on the attention weights"},
        "bias": {**BOOL, "default": True},
    }
    required = ("heads",)
    example = "attention: 4"
    example_input = "tokens"

    def output_shape(self, o, shape):
        _, d = need_tokens(shape, "attention")
        if d % o["heads"]:
            raise ShapeError(f"heads={o['heads']} must divide the token width {d}")
        return shape

    def saved(self, o, shape, out, device):
        return attention_saved(*shape, o["heads"])

    def build(self, o, shape):
        from archspec.layers.modules import SelfAttention

        return SelfAttention(shape[1], o["heads"], dropout=o["dropout"], bias=o["bias"])

    def macs(self, o, shape, out):
        return counted_macs(lambda: self.build(o, shape), shape)

    def label(self, o, shape, written):
        return f"attention {o['heads']} heads"

    def code(self, o, shape):
        return f"SelfAttention({shape[1]}, {o['heads']}, dropout={o['dropout']!r}, bias={o['bias']})"
