"""archspec: declarative image-classifier architectures and training recipes for PyTorch.

    spec = archspec.load_spec("specs/variant2.yaml")
    model = archspec.build_model(spec)          # an nn.Module whose names follow the spec
    print(archspec.summarize(spec).total_params)  # exact, counted on the meta device
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import Any

from archspec.errors import ArchspecError

# `Spec` and `load_spec` are imported on first use: the spec loader pulls in PyYAML and jsonschema,
# and `python -m archspec` imports this package before its own Ctrl-C guard (archspec.__main__)
# can run, so everything imported here is start-up time in which Ctrl-C would print a traceback.
_LAZY = {"Spec": "archspec.spec.loader", "load_spec": "archspec.spec.loader"}


def __getattr__(name: str) -> Any:
    home = _LAZY.get(name)
    if home is None:
        raise AttributeError(f"module 'archspec' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


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
