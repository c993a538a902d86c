"""Channel plumbing for ShuffleNet-style blocks: `chunk` (take one equal slice of the channels)
and `channel_shuffle` (interleave the channels of `groups` groups so they mix in the next conv)."""

from __future__ import annotations

from archspec.layers.base import NONNEG_INT, POS_INT, LayerKind, Saved, ShapeError, fmt_shape, register


@register
class Chunk(LayerKind):
    name = "chunk"
    summary = "the index-th of `chunks` equal slices of the channels (x.chunk(chunks, dim=1)[index])"
    synonyms = ("split", "slice", "channel_split")
    main = "index"
    options = {"index": {**NONNEG_INT, "description": "which slice, from 0"},
               "chunks": {**POS_INT, "default": 2, "description": "how many equal slices"}}
    required = ("index",)
    example = "chunk: {index: 1, chunks: 2}"

    def output_shape(self, o, shape):
        if len(shape) not in (1, 3):
            raise ShapeError(f"chunk splits the channels of [C, H, W] or [features], got {fmt_shape(shape)}")
        if shape[0] % o["chunks"]:
            raise ShapeError(f"{shape[0]} channels do not split into {o['chunks']} equal chunks")
        if o["index"] >= o["chunks"]:
            raise ShapeError(f"index {o['index']} is not below chunks {o['chunks']} (indices start at 0)")
        return (shape[0] // o["chunks"], *shape[1:])

    def saved(self, o, shape, out, device):
        return Saved(view=True)  # a view of part of its input

    def build(self, o, shape):
        from archspec.layers.modules import Chunk as ChunkModule

        return ChunkModule(o["chunks"], o["index"])

    def code(self, o, shape):
        return f"Chunk({o['chunks']}, {o['index']})"


@register
class ChannelShuffle(LayerKind):
    name = "channel_shuffle"
    summary = "shuffle channels across `groups` groups (nn.ChannelShuffle, ShuffleNet)"
    synonyms = ("shuffle", "channelshuffle")
    main = "groups"
    options = {"groups": {**POS_INT, "default": 2}}
    example = "channel_shuffle: 2"

    def output_shape(self, o, shape):
        if len(shape) != 3:
            raise ShapeError(f"channel_shuffle needs [C, H, W], got {fmt_shape(shape)}")
        if shape[0] % o["groups"]:
            raise ShapeError(f"groups={o['groups']} must divide the {shape[0]} channels")
        return shape

    def saved(self, o, shape, out, device):
        return Saved()  # a permuted copy: its gradient is the inverse permutation

    def build(self, o, shape):
        from torch import nn

        return nn.ChannelShuffle(o["groups"])

    def code(self, o, shape):
        return f"nn.ChannelShuffle({o['groups']})"
