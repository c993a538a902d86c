"""Layer kinds. Each kind lives in its own small module; importing this package registers them all.

Where does a kind live?  conv -> conv.py; pool/maxpool/avgpool/gap/adaptive_pool -> pool.py;
bn -> norm.py; layernorm -> layernorm.py; groupnorm -> groupnorm.py; dropout/dropout2d ->
dropout.py; droppath -> droppath.py; relu/relu6/gelu/hardswish/... -> activation.py;
flatten/linear -> linear.py; resblock -> resblock.py; sequence/residual/parallel -> composite.py;
layerscale -> layerscale.py; chunk/channel_shuffle -> channels.py; patchify -> patchify.py;
class_token/pos_embed/token_pool -> tokens.py; attention -> attention.py; encoder_block ->
encoder_block.py; window_attention/patch_merging (Swin) -> window_attention.py; module (custom
import, opt-in) -> custom.py; scale -> scale.py.
nn.Modules PyTorch lacks -> modules.py.
"""

from archspec.layers import (  # noqa: F401
    activation,
    attention,
    channels,
    composite,
    conv,
    custom,
    dropout,
    droppath,
    encoder_block,
    groupnorm,
    layernorm,
    layerscale,
    linear,
    norm,
    patchify,
    pool,
    resblock,
    scale,
    tokens,
    window_attention,
)
from archspec.layers.base import REGISTRY, LayerKind, Shape, ShapeError, fmt_shape, unknown_kind_message

__all__ = ["REGISTRY", "LayerKind", "Shape", "ShapeError", "fmt_shape", "unknown_kind_message"]
