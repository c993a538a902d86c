"""Spec files -> a validated, fully expanded, shape-checked `Spec`.

Pipeline: YAML (with positions) -> `extends` merge and top-level schema (document.py) -> input
shape and classes (this file, from the dataset catalog) -> vars -> expand layers with shape
inference in the same pass (expand.py: blocks, repeat, `if:`, expressions, per-kind option
schemas, shapes, so options can use `in_channels`) -> module names (tree.py). Every failure is an `ArchspecError` pointing at file:line:col and the key path. No
torch import happens here (except to read an ``imagefolder:`` image).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from archspec.catalog import DATASETS, DatasetInfo, describe
from archspec.errors import ArchspecError, did_you_mean
from archspec.layers import Shape, fmt_shape
from archspec.layers.base import prod
from archspec.spec.document import Document, read_document
from archspec.spec.expand import Expander, check_finite
from archspec.spec.expr import NAME_RE
from archspec.spec.tree import MAX_VALUES, Node, Spec, assign_module_names, to_items

__all__ = ["Node", "Spec", "load_spec"]


def load_spec(path: str | Path, *, dataset: str | None = None, allow_import: bool = False,
              vars: dict[str, Any] | None = None) -> Spec:
    """Load, expand, validate and shape-check a spec file.

    `dataset` re-targets the spec (e.g. a CIFAR spec on ``mnist``): its input shape and class count
    replace the spec's, and every shape re-infers. `vars` replaces values of the spec's own `vars:`
    (as a spec that `extends` it would), so a search can vary a width or a depth.
    """
    path = Path(path)
    doc = read_document(path)
    data = doc.data
    for name, value in (vars or {}).items():
        declared = data.get("vars") if isinstance(data.get("vars"), dict) else {}
        if name not in declared:
            raise doc.error(("vars",), f'the spec has no variable "{name}" to set'
                            f"{did_you_mean(name, declared)}; its vars: {', '.join(declared) or 'none'}")
        declared[name] = value
    if "layers" not in data:
        raise doc.error((), "a spec needs `layers:` (the model, first layer first)")
    ds_name = dataset or data.get("dataset")
    input_shape, classes = _input_and_classes(doc, ds_name, retarget=bool(dataset), allow_import=allow_import)
    scope: dict[str, Any] = {**({"classes": classes} if classes is not None else {}), "channels": input_shape[0]}
    expander = Expander(doc, scope, allow_import)
    _add_vars(doc, expander, scope)

    layers, output_shape = expander.expand(data["layers"], ("layers",), "layers", scope, (), 0, tuple(input_shape))
    if not layers:
        raise doc.error(("layers",), "no layer is left: every one has a false `if:` or a `repeat` of 0 times")
    assign_module_names(layers)
    if classes is not None and output_shape != (classes,):
        raise layers[-1].error(f"the model outputs {fmt_shape(output_shape)} but there are {classes} classes; "
                               "end with `- linear: classes`")
    name = str(data.get("name") or path.stem)
    return Spec(
        name=name,
        description=str(data.get("description") or ""),
        path=str(path),
        dataset=ds_name,
        input_shape=tuple(input_shape),
        num_classes=classes,
        recipe=data.get("recipe"),
        layers=layers,
        output_shape=output_shape,
        vars=dict(scope),
        resolved=_resolved(data, name, ds_name, input_shape, classes, layers),
        source=copy.deepcopy(data),
        allow_import=allow_import,
    )


def _dataset_facts(doc: Document, ds_name: str | None, retarget: bool) -> DatasetInfo | None:
    """The catalog's facts for the spec's dataset; a bad name written in the spec points at it."""
    if not ds_name:
        return None
    try:
        return describe(str(ds_name))
    except ArchspecError as e:
        if retarget:
            raise
        raise doc.error(("dataset",), e.message) from None


def _input_and_classes(doc: Document, ds_name: str | None, *, retarget: bool,
                       allow_import: bool) -> tuple[Shape, int | None]:
    """Input shape and class count: a re-targeting dataset wins, then explicit keys, then the
    spec's own dataset."""
    data = doc.data
    info = _dataset_facts(doc, ds_name, retarget)
    if retarget and info:
        input_shape: Shape | None = info.input_shape
        classes = info.num_classes
    else:
        input_shape = None
        if "input" in data:
            expander = Expander(doc, {}, allow_import)
            input_shape = tuple(expander.value(v, ("input", i), {}, True) for i, v in enumerate(data["input"]))
        elif info:
            input_shape = info.input_shape
        classes = data.get("classes", info.num_classes if info else None)
    if input_shape is None:
        raise doc.error((), "no input shape: add `dataset:` (e.g. cifar10) or `input: [C, H, W]`; "
                            f"datasets: {', '.join(DATASETS)}")
    for i, s in enumerate(input_shape):
        if not isinstance(s, int) or isinstance(s, bool) or s < 1:
            raise doc.error(("input", i), f"input sizes must be positive integers, got {s!r}")
    if prod(input_shape) > MAX_VALUES:
        raise doc.error(("input",), f"input {fmt_shape(input_shape)} has more than {MAX_VALUES:,} values per sample")
    if classes is not None and (not isinstance(classes, int) or isinstance(classes, bool) or classes < 1):
        raise doc.error(("classes",), f"classes must be a positive integer, got {classes!r}")
    return input_shape, classes


def _add_vars(doc: Document, expander: Expander, scope: dict[str, Any]) -> None:
    """Evaluate `vars:` in order into `scope` (each may use the ones before it)."""
    for name, raw in (doc.data.get("vars") or {}).items():
        if not NAME_RE.match(str(name)):
            raise doc.error(("vars", name), f'"{name}" is not a valid variable name')
        value = expander.value(raw, ("vars", name), scope, numeric=True)
        if isinstance(value, str):
            raise doc.error(("vars", name), f'vars must be numbers or expressions, got "{value}"'
                            f"{did_you_mean(value, scope)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise doc.error(("vars", name), f"vars must be numbers, got {value!r}")
        check_finite(value, ("vars", name), doc)
        scope[name] = value


def _resolved(data: dict, name: str, ds_name: str | None, input_shape: Shape, classes: int | None,
              layers: list[Node]) -> dict[str, Any]:
    """The fully expanded spec: no vars, blocks or repeats; loads back to the same model."""
    return {
        "name": name,
        **({"description": data["description"]} if data.get("description") else {}),
        **({"dataset": ds_name} if ds_name else {}),
        "input": list(input_shape),
        **({"classes": classes} if classes is not None else {}),
        **({"recipe": data["recipe"]} if data.get("recipe") else {}),
        "layers": to_items(layers),
    }
