"""Layer kinds. Each kind lives in its own small module; importing this package registers them all.

Where does a kind live?  conv -> conv.py; pool/maxpool/avgpool/gap/adaptive_pool -> pool.py;
bn -> norm.py; dropout/dropout2d -> dropout.py; relu/gelu/... -> activation.py;
flatten/linear -> linear.py; resblock -> resblock.py; sequence/residual/parallel -> composite.py;
module (custom import, opt-in) -> custom.py; scale -> scale.py. nn.Modules PyTorch lacks -> modules.py.
"""

from archspec.layers import (  # noqa: F401
    activation,
    composite,
    conv,
    custom,
    dropout,
    linear,
    norm,
    pool,
    resblock,
    scale,
)
from archspec.layers.base import REGISTRY, LayerKind, Shape, ShapeError, fmt_shape

__all__ = ["REGISTRY", "LayerKind", "Shape", "ShapeError", "fmt_shape"]
