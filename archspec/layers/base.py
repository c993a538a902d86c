"""The layer-kind contract and registry: everything archspec knows about a kind lives in its class.

A *kind* (conv, pool, bn, ...) is one small class, decorated with `@register`, in its own module
under ``archspec/layers/`` (import it from ``archspec/layers/__init__.py``). Code outside this
package never branches on a kind's name: it asks the kind. What a kind defines:

Class attributes
    ``name``, ``aliases``   the key a spec writes (``conv``) and other accepted keys (``fc``).
    ``summary``, ``example`` one line for docs; ``example`` is a YAML layer line the tests load
                            on an ``example_input`` of ``image`` (default), ``flat`` or ``tokens``.
    ``synonyms``            words people type for this kind (``layer_norm``, ``transformer``):
                            an unknown kind suggests it, nothing accepts them.
    ``options``             option -> JSON Schema fragment, with ``"default"`` where optional.
    ``required``            options without a default that must be given.
    ``main``                the option a scalar value sets (``conv: 64`` = ``conv: {out: 64}``).
    ``runs_user_code``      True if building it imports user Python (the loader then demands
                            ``--allow-import``).
    ``composite``           True for kinds holding nested layer lists: subclass
                            `archspec.layers.composite.Composite`, whose docstring lists the rest.
    ``resolved_keeps_name`` True if the resolved spec must always write the layer's ``name:``.

Methods (``o`` is the validated options mapping with defaults filled in; shapes exclude batch)
    ``output_shape(o, shape)`` pure Python, raise `ShapeError` for an input it cannot take
                            (so `archspec validate` never imports torch). Default: unchanged.
    ``build(o, shape)``     the ``nn.Module`` (import torch inside the method).
    ``macs(o, shape, out)`` multiply-accumulates per sample; None when they cannot be known
                            (never a silent 0). Default 0. `counted_macs` measures a module.
    ``code(o, shape)``      a Python expression building the same module, for ``show --code``;
                            it may call the helpers listed in ``layers/modules.py``'s ``__all__``.
    ``label(o, shape, written)`` the short text ``archspec count`` shows in its kind column.
                            Default: ``name``.
    ``kernel(o)``           the window ``archspec count`` shows in its kernel column ("3x3 s2");
                            where that column is left out, after the label. Default: "" (none).
    ``saved(o, shape, out, device)`` what the built module keeps for backward (a `Saved`), for
                            the training-memory estimate (archspec/memory.py). Default: its input.
    ``tidy_options(o)``     make validated values canonical in place (e.g. a float slope).
    ``name_stem(written)``  stem of the automatic module name (``conv`` -> conv1, conv2).

Shapes exclude the batch dimension: ``(C, H, W)`` for images, ``(F,)`` for flat features and
``(N, D)`` for a sequence of N tokens of width D (what `patchify` makes of an image). A layer's
options may use its input shape through `shape_names` (``in_channels``, ``in_features``).

Then document the kind in docs/spec-language.md and regenerate ``archspec/spec/spec.schema.json``
(``python -m archspec.spec.schema > archspec/spec/spec.schema.json``); tests/test_docs.py checks
both, and tests/test_spec_language.py builds and counts every kind's ``example``.
tests/test_kind_plugin.py shows a composite and a leaf kind defined as nothing but their classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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
# Accepted on every layer (and block use) and consumed by the spec loader before a kind sees its
# options: the layer exists only where the condition is non-zero. Shown in the editor schema.
IF_OPTION = {"if": {"anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}],
                    "description": "keep this layer only where the number or ${expression} is non-zero"}}


@dataclass(frozen=True)
class Held:
    """A tensor a layer creates and keeps for backward besides its output: a dropout mask, max-pool
    indices, batch-norm statistics, the inner activations of a block.

    `dtype` is "act" for the layer's activation dtype (fp32, or bf16/fp16 under autocast),
    "input" for its input's dtype, "lowp" for autocast's 16 bits (the input's dtype without
    autocast: a block mixing both, as a transformer block's fp32 residual stream and 16-bit
    projections), else "fp32", "int64" or "bool". `numel` counts elements per sample, or per batch when
    `per_sample` is False (batch-norm statistics do not grow with the batch).
    """

    numel: int
    dtype: str = "act"
    per_sample: bool = True


@dataclass(frozen=True)
class Saved:
    """What a layer's torch module keeps for backward once its forward has run: autograd's saved
    tensors, which is what a training step really holds between forward and backward (torchinfo
    counts each layer's output instead, and misses masks, indices and saved inputs).

    Tensors are shared: a ReLU keeps its output and the next conv keeps the same tensor as its
    input, so a layer says *which* tensors it keeps (`input`, `output`, its own `held` ones) and
    archspec/memory.py counts each tensor once. For a composite kind these describe only its own
    work (the shortcut, the merge); its groups' layers speak for themselves.

    `alias`: the output is the input itself or a view of it (flatten, identity): no new memory.
    `view`: the output is a view of part of the input (a chunk of the channels, the class token):
    no new memory, and keeping it keeps the input's storage; but an autocast copy of it (a linear
    reading it) has the view's own size.
    `compute`: what autocast does with it: "lowp" (conv, linear: input and weights cast to
    bf16/fp16, output in bf16/fp16), "fp32" (softmax: cast up), "follow" (keeps the input's dtype),
    "promote" (not an autocast op, but mixed with an fp32 parameter: a bf16 input times ConvNeXt's
    layer scale, or joined with ViT's class token, gives fp32 by type promotion; the input is kept
    as it is).
    For a composite, "lowp" sets the dtype of its own `held` tensors (a projection's), "fp32" that
    of its output; otherwise both are its groups' widest output dtype.
    `cast`: weight elements autocast copies to 16 bits (cached through the forward) and the layer
    keeps for backward (a conv's weights; their biases' copies are not kept). `cast_if_grad`: the
    same, kept only when the input needs a gradient (a linear's weights: without one, the weight
    gradient needs only the input).
    `temp`: tensors alive only while its forward runs (an unkept inner result).
    `groups`: a composite's merge keeps its groups' outputs (a product needs each factor for the
    other's gradient). `merges_input`: its merge adds its input too (an identity shortcut), so the
    output has the wider of the input's and the groups' dtypes (a 16-bit body added to an fp32
    residual stream is fp32).
    """

    input: bool = False
    output: bool = False
    held: tuple[Held, ...] = ()
    alias: bool = False
    compute: str = "follow"
    cast: int = 0
    cast_if_grad: int = 0
    temp: tuple[Held, ...] = ()
    groups: bool = False
    view: bool = False
    merges_input: bool = False


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
    runs_user_code: ClassVar[bool] = False  # building it imports user Python: needs --allow-import
    composite: ClassVar[bool] = False  # holds nested layer lists: see composite.Composite
    layer_lists: ClassVar[tuple[str, ...]] = ()  # options whose values are layer lists (composites)
    resolved_keeps_name: ClassVar[bool] = False  # the resolved spec always writes `name:` (sequence)

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
        return 0

    def code(self, o: dict, shape: Shape) -> str:
        raise NotImplementedError

    def label(self, o: dict, shape: Shape, written: str) -> str:
        """What `archspec count` shows in its kind column; `written` is how the spec named the layer
        (the key as typed, or a block call such as ``stage(out=256)``)."""
        return self.name

    def kernel(self, o: dict) -> str:
        """The window (and stride) `archspec count` shows in its kernel column ("3x3 s2"); "" when the
        kind has none. On a terminal too narrow for that column it follows the label."""
        return ""

    def saved(self, o: dict, shape: Shape, out: Shape, device: str) -> Saved:
        """What the built module keeps for backward in training on `device` ("cuda" or "cpu": a few
        torch kernels differ). tests/test_memory.py checks every kind's answer against autograd's
        saved tensors. Default: its input, which most ops need for their gradient (the safe guess
        for a module archspec cannot see into)."""
        return Saved(input=True)

    def tidy_options(self, o: dict) -> None:
        """Make validated option values canonical in place, so the resolved spec and the generated
        code read the same however the user wrote the value."""

    def name_stem(self, written: str) -> str:
        """The stem of the automatic module name: conv -> conv1, conv2, ..."""
        return self.name


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
