"""Spec -> nn.Module. Shapes were already inferred by the loader, so this only instantiates.

The module tree mirrors the spec: top-level layers are children of an ``nn.Sequential`` named
``conv1, relu1, pool1, ...`` (or the layer's ``name:``), blocks and repeats are nested
``nn.Sequential``s, so ``model.stage2.conv1`` reads like the spec.
"""

from __future__ import annotations

from collections import OrderedDict

from archspec.errors import ArchspecError
from archspec.spec.loader import Node, Spec


def _build_list(nodes: list[Node], prefix: str):
    from torch import nn

    modules = OrderedDict()
    for node in nodes:
        name = node.module_name
        path = f"{prefix}{name}"
        node.module_path = path
        modules[name] = _build_node(node, path)
    return nn.Sequential(modules)


def _child_prefixes(node: Node, path: str) -> list[str]:
    names = node.impl.child_paths(len(node.children))
    return [f"{path}.{n}." if n else f"{path}." for n in names]


def _build_node(node: Node, path: str):
    impl = node.impl
    try:
        if impl.composite:
            children = [_build_list(group, prefix)
                        for group, prefix in zip(node.children, _child_prefixes(node, path), strict=True)]
            module = impl.build_composite(node.options, node.in_shape, children, node.out_shape)
        else:
            module = impl.build(node.options, node.in_shape)
    except ArchspecError:
        raise
    except (ValueError, TypeError, RuntimeError) as e:  # a kind's build failing is our bug, but say where
        raise node.error(f"cannot build {node.kind}: {e}") from None
    freeze_parameters(module, node.options.get("trainable", True))
    return module


def freeze_parameters(module, trainable: bool | str) -> None:
    """Apply a layer's `trainable` option: False freezes every parameter, "bias" all but the biases.

    Frozen parameters keep requires_grad=False; the optimizer leaves them out (recipes/build.py).
    """
    if trainable is True:
        return
    for name, p in module.named_parameters():
        if trainable is False or name.rsplit(".", 1)[-1] != "bias":
            p.requires_grad_(False)


def build_model(spec: Spec, device=None):
    """Instantiate the spec's model. `device="meta"` allocates no memory (used for counting)."""
    import torch

    if device is None:
        return _build_list(spec.layers, "")
    with torch.device(device):
        return _build_list(spec.layers, "")
