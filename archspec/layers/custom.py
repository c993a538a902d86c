"""`module`: any nn.Module by import path. Opt-in only (`--allow-import` / allow_import=True),
because importing a module runs its code: a spec someone sent you must not do that silently.

The output shape is found by running the module once on a meta tensor (no memory, no compute), in
eval mode with a batch of 2 (BatchNorm refuses one sample per channel in training mode); its MACs
are counted the same way by torch's FlopCounterMode, and are "unknown" (None) if that fails.
"""

from __future__ import annotations

import importlib

from archspec.layers.base import LayerKind, ShapeError, counted_macs, register

PROBE_BATCH = 2


def load_class(target: str):
    mod_name, _, attr = target.partition(":")
    if not mod_name or not attr:
        raise ShapeError(f'import must look like "package.module:ClassName", got "{target}"')
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise ShapeError(f"cannot import {mod_name}: {e}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ShapeError(f"{mod_name} has no attribute {attr}")
        obj = getattr(obj, part)
    return obj


@register
class CustomModule(LayerKind):
    name = "module"
    synonyms = ("import", "custom", "torch_module", "nn_module")
    summary = "any nn.Module by import path (needs --allow-import)"
    main = "import"
    options = {
        "import": {"type": "string", "description": '"package.module:ClassName"'},
        "args": {"type": "array", "default": []},
        "kwargs": {"type": "object", "default": {}},
    }
    required = ("import",)
    example = 'module: {import: "torch.nn:GELU"}'
    runs_user_code = True

    def _make(self, o):
        cls = load_class(o["import"])
        try:
            return cls(*o["args"], **o["kwargs"])
        except Exception as e:  # user code: report, do not crash
            raise ShapeError(f"constructing {o['import']} failed: {type(e).__name__}: {e}") from None

    def output_shape(self, o, shape):
        import torch

        with torch.device("meta"):
            mod = self._make(o).eval()
            try:
                with torch.no_grad():
                    y = mod(torch.empty(PROBE_BATCH, *shape))
            except Exception as e:
                raise ShapeError(f"{o['import']} fails on input [{', '.join(map(str, shape))}]: {e}") from None
        if not isinstance(y, torch.Tensor):
            raise ShapeError(f"{o['import']} must return a tensor")
        return tuple(y.shape[1:])

    def build(self, o, shape):
        return self._make(o)

    def macs(self, o, shape, out):
        return counted_macs(lambda: self._make(o), shape, batch=PROBE_BATCH)

    def label(self, o, shape, written):
        return o["import"].partition(":")[2] or "module"

    def code(self, o, shape):
        mod, _, attr = o["import"].partition(":")
        args = ", ".join([repr(a) for a in o["args"]] + [f"{k}={v!r}" for k, v in o["kwargs"].items()])
        return f"__import__({mod!r}, fromlist=[{attr.split('.')[0]!r}]).{attr}({args})"
