"""Torchvision's weights, key for key, on the models of specs/torchvision/*.yaml.

Each spec in specs/torchvision/ is named after the torchvision builder it reproduces. Its module
tree follows the spec (``stage2.repeat1.resblock1.body.0``), torchvision's follows its own code
(``layer2.0.conv1``), so a state_dict cannot be loaded as it is. `RULES` holds, per builder, a
short ordered list of rewrites from archspec state_dict keys to torchvision keys:

    (regex, template)    the first rule whose regex matches the start of an archspec key rewrites
                         that prefix; the rest of the key (``weight``, ``running_mean``) is kept.
                         A string template uses regex back-references (``\\1``); a function
                         template gets the match and `n`, the number of distinct prefixes this
                         rule matched before (0, 1, 2, ... in model order: a running block index).
    Leaves(ours, theirs) the layers inside our `ours` sequence, innermost ones in spec order, are
                         torchvision's nn.Sequential `theirs` item by item (``features.0``,
                         ``features.1``, ...): VGG's and AlexNet's flat `features`.
    no rule matches      the key is the same in both (``conv1.weight`` in ResNets).

The rules read the names the spec gives its modules, never parameter shapes or positions of
parameters, and every mapping is checked whole: each archspec key must land on a distinct
torchvision key of the same size, and every torchvision key must be used. A conv 1x1 in a spec may
stand for torchvision's Linear (ConvNeXt's MLP): same numbers, a reshape. `tests/test_torchvision.py`
shows, for every builder, that the logits then equal torchvision's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from archspec.errors import ArchspecError

Template = str | Callable[[re.Match, int], str]


@dataclass(frozen=True)
class Leaves:
    """Our sequence `ours`, read as its innermost layers in order, is torchvision's `theirs`."""

    ours: str
    theirs: str

    def rules(self, model) -> list[tuple[str, str]]:
        from torch import nn

        inner = model.get_submodule(self.ours)
        leaves = [path for path, m in inner.named_modules()
                  if path and not list(m.children()) and not isinstance(m, nn.Sequential)]
        return [(re.escape(f"{self.ours}.{path}.") , f"{self.theirs}.{i}.") for i, path in enumerate(leaves)]


Rule = tuple[str, Template] | Leaves


def _g(m: re.Match, i: int, delta: int = 0) -> int:
    """Group `i` of `m` as a number plus `delta` (archspec counts from 1, torchvision from 0)."""
    return int(m.group(i)) + delta


_RESNET_BASIC: list[Rule] = [  # resblock's own module: body = conv, bn, relu, conv, bn; shortcut = conv, bn
    (r"stage(\d)\.repeat1\.resblock(\d+)\.body\.0\.", lambda m, n: f"layer{m[1]}.{_g(m, 2, -1)}.conv1."),
    (r"stage(\d)\.repeat1\.resblock(\d+)\.body\.1\.", lambda m, n: f"layer{m[1]}.{_g(m, 2, -1)}.bn1."),
    (r"stage(\d)\.repeat1\.resblock(\d+)\.body\.3\.", lambda m, n: f"layer{m[1]}.{_g(m, 2, -1)}.conv2."),
    (r"stage(\d)\.repeat1\.resblock(\d+)\.body\.4\.", lambda m, n: f"layer{m[1]}.{_g(m, 2, -1)}.bn2."),
    (r"stage(\d)\.repeat1\.resblock(\d+)\.shortcut\.", lambda m, n: f"layer{m[1]}.{_g(m, 2, -1)}.downsample."),
    (r"linear1\.", "fc."),
]

_RESNET_BOTTLENECK: list[Rule] = [
    (r"stage(\d)\.repeat1\.bottleneck(\d+)\.residual1\.body\.(conv|bn)(\d)\.",
     lambda m, n: f"layer{m[1]}.{_g(m, 2, -1)}.{m[3]}{m[4]}."),
    (r"stage(\d)\.repeat1\.bottleneck(\d+)\.residual1\.shortcut\.",
     lambda m, n: f"layer{m[1]}.{_g(m, 2, -1)}.downsample."),
    (r"linear1\.", "fc."),
]

_FIRE_AT = {1: 3, 2: 4, 3: 5, 4: 7, 5: 8, 6: 9, 7: 10, 8: 12}  # fire k in features: between the pools

_SQUEEZENET: list[Rule] = [
    (r"features\.conv1\.", "features.0."),
    (r"features\.fire(\d)\.conv1\.", lambda m, n: f"features.{_FIRE_AT[_g(m, 1)]}.squeeze."),
    (r"features\.fire(\d)\.parallel1\.paths\.0\.conv1\.", lambda m, n: f"features.{_FIRE_AT[_g(m, 1)]}.expand1x1."),
    (r"features\.fire(\d)\.parallel1\.paths\.1\.conv1\.", lambda m, n: f"features.{_FIRE_AT[_g(m, 1)]}.expand3x3."),
    (r"classifier\.conv1\.", "classifier.1."),
]

_DENSENET: list[Rule] = [
    (r"features\.conv1\.", "features.conv0."),
    (r"features\.bn1\.", "features.norm0."),
    (r"features\.bn2\.", "features.norm5."),
    (r"features\.dense_block(\d)\.repeat1\.dense_layer(\d+)\.parallel1\.paths\.1\.bn(\d)\.",
     r"features.denseblock\1.denselayer\2.norm\3."),
    (r"features\.dense_block(\d)\.repeat1\.dense_layer(\d+)\.parallel1\.paths\.1\.conv(\d)\.",
     r"features.denseblock\1.denselayer\2.conv\3."),
    (r"features\.transition(\d)\.bn1\.", r"features.transition\1.norm."),
    (r"features\.transition(\d)\.conv1\.", r"features.transition\1.conv."),
    (r"linear1\.", "classifier."),
]

_FEATURES_CLASSIFIER: list[Rule] = [Leaves("features", "features"), Leaves("classifier", "classifier")]

RULES: dict[str, list[Rule]] = {
    "alexnet": _FEATURES_CLASSIFIER,
    "densenet121": _DENSENET,
    "squeezenet1_0": _SQUEEZENET,
    "vgg11": _FEATURES_CLASSIFIER,
    "vgg11_bn": _FEATURES_CLASSIFIER,
    "vgg16": _FEATURES_CLASSIFIER,
    "vgg16_bn": _FEATURES_CLASSIFIER,
    "resnet18": _RESNET_BASIC,
    "resnet34": _RESNET_BASIC,
    "resnet50": _RESNET_BOTTLENECK,
    "wide_resnet50_2": _RESNET_BOTTLENECK,
}


def map_keys(keys: list[str], rules: list[Rule], model=None) -> dict[str, str]:
    """archspec key -> torchvision key, by the first matching rule (identity when none matches).
    `model` (ours) is needed only by `Leaves` rules, which read its module tree."""
    rules = [r for rule in rules for r in (rule.rules(model) if isinstance(rule, Leaves) else [rule])]
    ordinals: list[dict[str, int]] = [{} for _ in rules]
    out = {}
    for key in keys:
        out[key] = key
        for (pattern, template), seen in zip(rules, ordinals, strict=True):
            m = re.match(pattern, key)
            if m:
                n = seen.setdefault(m.group(0), len(seen))
                head = template(m, n) if callable(template) else m.expand(template)
                out[key] = head + key[m.end():]
                break
    return out


def _same_numbers(ours, theirs) -> bool:
    """Equal shapes, or equal once size-1 dimensions are dropped (a 1x1 conv standing for a Linear)."""
    return tuple(ours) == tuple(theirs) or [d for d in ours if d != 1] == [d for d in theirs if d != 1]


def mapped_state_dict(name: str, model, theirs: dict, *, skip_mismatched: bool = False):
    """(state_dict for our `model`, keys left as they were) from torchvision's `theirs`.

    Refuses (ArchspecError) anything but a complete one-to-one mapping; with `skip_mismatched`,
    keys whose sizes differ (a classifier for another number of classes) are left out and listed.
    """
    if name not in RULES:
        raise ArchspecError(f'no torchvision weight mapping for "{name}"; known: {", ".join(sorted(RULES))}')
    ours = model.state_dict()
    mapping = map_keys(list(ours), RULES[name], model)
    where = f"torchvision {name}"
    missing = [f"{k} -> {v}" for k, v in mapping.items() if v not in theirs]
    if missing:
        raise ArchspecError(f"{len(missing)} archspec keys map to keys torchvision's state_dict lacks, "
                            f"first: {missing[0]}", file=where)
    targets = list(mapping.values())
    twice = sorted({v for v in targets if targets.count(v) > 1})
    if twice:
        raise ArchspecError(f"torchvision key {twice[0]} would fill more than one archspec key", file=where)
    unused = [k for k in theirs if k not in set(targets)]
    if unused:
        raise ArchspecError(f"{len(unused)} torchvision keys have no place in the archspec model, "
                            f"first: {unused[0]}", file=where)
    out, skipped = {}, []
    for key, target in mapping.items():
        mine, value = ours[key], theirs[target]
        if not _same_numbers(mine.shape, value.shape):
            if skip_mismatched:
                skipped.append(key)
                continue
            raise ArchspecError(f"{key} is {list(mine.shape)} but torchvision's {target} is {list(value.shape)}",
                                file=where)
        out[key] = value.reshape(mine.shape)
    return out, skipped


def load_torchvision_weights(model, name: str, state_dict=None, *, skip_mismatched: bool = False) -> list[str]:
    """Load torchvision's `name` weights into `model`, built from specs/torchvision/<name>.yaml.

    `state_dict` may be a torchvision state_dict or model; by default torchvision's pretrained
    weights for `name` are fetched (``weights="DEFAULT"``: downloads once into torch's cache).
    With `skip_mismatched`, layers whose sizes differ (the classifier of a spec re-targeted to
    another dataset) keep their fresh init: fine-tuning. Returns the keys left untouched.
    """
    if state_dict is None:
        from torchvision.models import get_model

        state_dict = get_model(name, weights="DEFAULT").state_dict()
    elif hasattr(state_dict, "state_dict"):
        state_dict = state_dict.state_dict()
    new, skipped = mapped_state_dict(name, model, state_dict, skip_mismatched=skip_mismatched)
    model.load_state_dict({**model.state_dict(), **new})
    return skipped
