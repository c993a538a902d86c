"""The layer-kind contract and registry.

A *kind* (conv, pool, bn, ...) is one small class that knows:
- its options (a JSON Schema fragment per option, with defaults) and which is the scalar shorthand
  (``conv: 64`` means ``conv: {out: 64}``);
- its output shape for an input shape, in pure Python (so `archspec validate` never imports torch);
- how to build its ``nn.Module`` (torch imported lazily inside `build`);
- its multiply-accumulates per sample, and the plain PyTorch code that builds it (for `archspec show`).

Shapes exclude the batch dimension: ``(C, H, W)`` for images, ``(F,)`` for flat features.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

Shape = tuple[int, ...]

# Every integer option is bounded: sizes past a million are typos or attacks, and unbounded ones
# would reach torch's C++ as overflowing sizes (docs/spec-language.md#limits).
MAX_INT_OPTION = 1_000_000
INT = {"type": "integer", "minimum": -MAX_INT_OPTION, "maximum": MAX_INT_OPTION}
POS_INT = {"type": "integer", "minimum": 1, "maximum": MAX_INT_OPTION}
NONNEG_INT = {"type": "integer", "minimum": 0, "maximum": MAX_INT_OPTION}
BOOL = {"type": "boolean"}

# Options every kind accepts.
COMMON_OPTIONS: dict[str, dict] = {
    "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
             "description": "module name in the built model (default: kind + running number)"},
    "trainable": {"enum": [True, False, "bias"], "default": True,
                  "description": "false freezes this layer's parameters (requires_grad=False); "
                                 "bias trains only its biases (BitFit; airbench's BatchNorm)"},
}


class ShapeError(ValueError):
    """The layer cannot take this input shape; the compiler adds file/line/path."""


def fmt_shape(shape: Shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def need_image(shape: Shape, kind: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{kind} needs an image input [C, H, W], got {fmt_shape(shape)}")
    return shape  # type: ignore[return-value]


def need_flat(shape: Shape, kind: str) -> int:
    if len(shape) != 1:
        raise ShapeError(
            f"{kind} needs a flat input [features], got {fmt_shape(shape)}; add `- flatten` (or `- gap`) before it"
        )
    return shape[0]


def conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class LayerKind:
    """Base class of every kind. Subclasses set the class attributes and override the methods."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    main: ClassVar[str | None] = None  # the option a scalar value sets
    options: ClassVar[dict[str, dict]] = {}  # option -> JSON schema (with "default" where optional)
    required: ClassVar[tuple[str, ...]] = ()
    example: ClassVar[str] = ""  # a YAML layer line, shown in docs and tested
    composite: ClassVar[bool] = False  # holds nested layer lists (residual, parallel)

    def defaults(self) -> dict[str, Any]:
        return {k: s["default"] for k, s in self.options.items() if "default" in s}

    def option_schema(self) -> dict:
        """JSON Schema of the concrete (already evaluated) options mapping."""
        props = {k: {kk: vv for kk, vv in v.items() if kk != "default"} for k, v in self.options.items()}
        props.update(COMMON_OPTIONS)
        return {"type": "object", "properties": props, "required": list(self.required),
                "additionalProperties": False}

    # --- overridden by kinds ---------------------------------------------------------------
    def output_shape(self, o: dict, shape: Shape) -> Shape:
        return shape

    def build(self, o: dict, shape: Shape):
        raise NotImplementedError

    def macs(self, o: dict, shape: Shape, out: Shape) -> int:
        return 0

    def code(self, o: dict, shape: Shape) -> str:
        raise NotImplementedError


REGISTRY: dict[str, LayerKind] = {}


def register(cls: type[LayerKind]) -> type[LayerKind]:
    """Class decorator: make a kind (and its aliases) usable in specs."""
    inst = cls()
    for key in (cls.name, *cls.aliases):
        if key in REGISTRY:
            raise RuntimeError(f"layer kind {key!r} registered twice")
        REGISTRY[key] = inst
    return cls


def prod(shape: Shape) -> int:
    return math.prod(shape)


def kwargs_code(pairs: dict[str, Any], defaults: dict[str, Any] | None = None) -> str:
    """', k=v' for the pairs that differ from torch defaults (keeps generated code short)."""
    defaults = defaults or {}
    out = []
    for k, v in pairs.items():
        if k in defaults and defaults[k] == v:
            continue
        out.append(f"{k}={v!r}")
    return "".join(", " + s for s in out)
