"""The layer-kind contract and registry.

A *kind* (conv, pool, bn, ...) is one small class that knows:
- its options (a JSON Schema fragment per option, with defaults) and which is the scalar shorthand
  (``conv: 64`` means ``conv: {out: 64}``);
- its output shape for an input shape, in pure Python (so `archspec validate` never imports torch);
- how to build its ``nn.Module`` (torch imported lazily inside `build`);
- its multiply-accumulates per sample, and the plain PyTorch code that builds it (for `archspec show`).

Shapes exclude the batch dimension: ``(C, H, W)`` for images, ``(F,)`` for flat features and
``(N, D)`` for a sequence of N tokens of width D (what `patchify` makes of an image).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

Shape = tuple[int, ...]

INT = {"type": "integer"}
POS_INT = {"type": "integer", "minimum": 1}
NONNEG_INT = {"type": "integer", "minimum": 0}
BOOL = {"type": "boolean"}

# Options every kind accepts.
COMMON_OPTIONS: dict[str, dict] = {
    "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
             "description": "module name in the built model (default: kind + running number)"},
    "trainable": {"enum": [True, False, "bias"], "default": True,
                  "description": "false freezes this layer's parameters (requires_grad=False); "
                                 "bias trains only its biases (BitFit; airbench's BatchNorm)"},
}
# Accepted on every layer (and block use) and consumed by the spec loader before a kind sees its
# options: the layer exists only where the condition is non-zero. Shown in the editor schema.
IF_OPTION = {"if": {"anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}],
                    "description": "keep this layer only where the number or ${expression} is non-zero"}}


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


def need_tokens(shape: Shape, kind: str) -> tuple[int, int]:
    if len(shape) != 2:
        raise ShapeError(f"{kind} needs tokens [N, D], got {fmt_shape(shape)}; start with `- patchify: ...`")
    return shape  # type: ignore[return-value]


def shape_names(shape: Shape) -> dict[str, int]:
    """The numbers a layer's options may use for the shape coming into it: `in_channels` on an
    image [C, H, W], `in_features` on flat features [F] or tokens [N, D] (D), `in_tokens` (N)."""
    if len(shape) == 3:
        return {"in_channels": shape[0]}
    if len(shape) == 2:
        return {"in_features": shape[1], "in_tokens": shape[0]}
    if len(shape) == 1:
        return {"in_features": shape[0]}
    return {}


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
    example_input: ClassVar[str] = "image"  # what the tested example gets: image, flat or tokens
    synonyms: ClassVar[tuple[str, ...]] = ()  # words people type for this kind (suggested, not accepted)
    composite: ClassVar[bool] = False  # holds nested layer lists (residual, parallel)
    layer_lists: ClassVar[tuple[str, ...]] = ()  # options whose values are layer lists (composites)

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

    def macs(self, o: dict, shape: Shape, out: Shape) -> int | None:
        """Multiply-accumulates per sample; None when they cannot be known (never a silent 0)."""
        return 0

    def label(self, o: dict, shape: Shape, written: str) -> str:
        """What `archspec count` shows in its kind column; `written` is how the spec named the layer."""
        return self.name

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


def _norm(word: str) -> str:
    return "".join(ch for ch in str(word).lower() if ch.isalnum())


def unknown_kind_message(word: str, blocks=()) -> str:
    """Why `word` is not a kind, what was probably meant, and where every kind is listed.

    A kind's `synonyms` (and its name written another way: `layer_norm`, `LayerNorm`) beat
    spelling distance: `attention` should never suggest `flatten`.
    """
    import difflib

    key = _norm(word)
    meant = []
    for kind in dict.fromkeys(REGISTRY.values()):
        words = (kind.name, *kind.aliases, *kind.synonyms)
        if key in {_norm(w) for w in words} and kind.name not in meant:
            meant.append(kind.name)
    meant += [b for b in blocks if _norm(b) == key and b not in meant]
    if not meant:
        meant = difflib.get_close_matches(str(word), sorted({*REGISTRY, *blocks, "repeat"}), n=3, cutoff=0.6)
    hint = " or ".join(f'"{m}"' for m in meant)
    return (f'unknown layer kind "{word}"' + (f" (did you mean {hint}?)" if hint else "")
            + "; `archspec validate --kinds` lists every kind")


def counted_macs(make, shape: Shape, batch: int = 2) -> int | None:
    """MACs per sample of the module `make()` builds, on input `shape`, counted by torch's
    FlopCounterMode on the meta device (no memory, no compute): for layers whose cost is not a
    formula we own, such as imported modules and attention. Eval mode, `batch` samples; None when
    the module cannot be built or run that way."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.device("meta"):
            module = make().eval()
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                module(torch.empty(batch, *shape))
    except Exception:  # noqa: BLE001 - user modules may fail in any way; then the count is unknown
        return None
    return counter.get_total_flops() // (2 * batch)


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
