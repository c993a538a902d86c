"""Spec -> nn.Module. Shapes were already inferred by the loader, so this only instantiates.

The module tree mirrors the spec: top-level layers are children of an ``nn.Sequential`` named
``conv1, relu1, pool1, ...`` (or the layer's ``name:``), blocks and repeats are nested
``nn.Sequential``s, so ``model.stage2.conv1`` reads like the spec.
"""

from __future__ import annotations

from collections import OrderedDict

from archspec.errors import ArchspecError
from archspec.spec.tree import Node, Spec, Visit, fold


def _sequential(nodes: list[Node], modules: list):
    """One layer list as an ``nn.Sequential`` whose children carry the layers' module names."""
    from torch import nn

    return nn.Sequential(OrderedDict((node.module_name, m) for node, m in zip(nodes, modules, strict=True)))


def _build_node(visit: Visit, built: list[list]):
    """`visit`'s module, from its children's modules (`built`, one list per group) if it has any."""
    node, impl = visit.node, visit.node.impl
    node.module_path = visit.path
    try:
        if impl.composite:
            children = [_sequential(group, mods) for group, mods in zip(node.children, built, strict=True)]
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
        return _sequential(spec.layers, fold(spec.layers, _build_node))
    with torch.device(device):
        return _sequential(spec.layers, fold(spec.layers, _build_node))
