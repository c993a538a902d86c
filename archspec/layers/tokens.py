"""Token bookkeeping for vision transformers, on tokens [N, D]:
`class_token` (prepend one learnable token), `pos_embed` (a learnable embedding per position) and
`token_pool` (tokens -> [D]: the class token, or the mean of all tokens)."""

from __future__ import annotations

from archspec.layers.base import LayerKind, Saved, need_tokens, register


@register
class ClassTokenKind(LayerKind):
    name = "class_token"
    summary = "prepend a learnable class token (zeros at init): [N, D] -> [N+1, D]"
    synonyms = ("cls_token", "cls", "classtoken")
    example = "class_token"
    example_input = "tokens"

    def output_shape(self, o, shape):
        n, d = need_tokens(shape, "class_token")
        return (n + 1, d)

    def saved(self, o, shape, out, device):
        return Saved(compute="promote")  # a concatenation (its gradient is a slice) with an fp32 token

    def build(self, o, shape):
        from archspec.layers.modules import ClassToken

        return ClassToken(shape[1])

    def code(self, o, shape):
        return f"ClassToken({shape[1]})"


@register
class PositionEmbeddingKind(LayerKind):
    name = "pos_embed"
    summary = "add a learnable embedding per token position ([1, N, D], normal init)"
    synonyms = ("pos_embedding", "position_embedding", "positional_embedding", "positional_encoding",
                "position_encoding")
    options = {"std": {"type": "number", "minimum": 0, "default": 0.02, "description": "init standard deviation"}}
    example = "pos_embed"
    example_input = "tokens"

    def output_shape(self, o, shape):
        need_tokens(shape, "pos_embed")
        return shape

    def saved(self, o, shape, out, device):
        return Saved(compute="promote")  # an addition keeps nothing; with an fp32 embedding it is fp32

    def build(self, o, shape):
        from archspec.layers.modules import PositionEmbedding

        return PositionEmbedding(shape[0], shape[1], o["std"])

    def code(self, o, shape):
        return f"PositionEmbedding({shape[0]}, {shape[1]}, std={o['std']!r})"


@register
class TokenPoolKind(LayerKind):
    name = "token_pool"
    summary = "tokens [N, D] -> [D]: the class token (cls, the first) or the mean of the tokens"
    synonyms = ("cls_pool", "pool_tokens", "token_mean", "mean_tokens")
    main = "type"
    options = {"type": {"enum": ["cls", "mean"], "default": "cls"}}
    example = "token_pool: mean"
    example_input = "tokens"

    def output_shape(self, o, shape):
        _, d = need_tokens(shape, "token_pool")
        return (d,)

    def saved(self, o, shape, out, device):
        return Saved(view=True) if o["type"] == "cls" else Saved()  # a view; a mean keeps nothing

    def build(self, o, shape):
        from archspec.layers.modules import TokenPool

        return TokenPool(o["type"])

    def label(self, o, shape, written):
        return f"token_pool {o['type']}"

    def code(self, o, shape):
        return f"TokenPool({o['type']!r})"
