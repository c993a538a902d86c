"""archspec: declarative image-classifier architectures and training recipes for PyTorch.

    spec = archspec.load_spec("specs/variant2.yaml")
    model = archspec.build_model(spec)          # an nn.Module whose names follow the spec
    print(archspec.summarize(spec).total_params)  # exact, counted on the meta device
"""

from __future__ import annotations

__version__ = "0.1.0"

from archspec.errors import ArchspecError
from archspec.spec.loader import Spec, load_spec


def build_model(spec, device=None):
    """Build the spec's nn.Module (imports torch on first use)."""
    from archspec.compile import build_model as _build

    return _build(spec, device=device)


def load_torchvision_weights(model, name, state_dict=None, *, skip_mismatched=False):
    """Torchvision's `name` weights (pretrained by default) into a model of specs/torchvision/<name>.yaml."""
    from archspec.weights import load_torchvision_weights as _load

    return _load(model, name, state_dict, skip_mismatched=skip_mismatched)


def summarize(spec, model=None, memory=None):
    """Per-layer and total parameter / MAC counts (meta device: no weights allocated); with
    `memory` (an `archspec.memory.Setup`), the training-memory estimate too."""
    from archspec.summary import summarize as _summarize

    return _summarize(spec, model=model, memory=memory)


__all__ = ["ArchspecError", "Spec", "build_model", "load_spec", "load_torchvision_weights", "summarize",
           "__version__"]
