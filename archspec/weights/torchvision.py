"""Torchvision's weights on the models of specs/torchvision/<builder>.yaml.

`RULES[builder]` maps the spec's state_dict keys onto torchvision's (see `archspec.weights.mapping`
for the rule forms). The rules read the module names the spec gives (block names, `name:`), so
they belong to the shipped specs; tests/test_torchvision.py shows for every builder that the logits
equal torchvision's once the weights are mapped.
"""

from __future__ import annotations

from archspec.weights.mapping import Blocks, Leaves, mapped_state_dict

_RESNET_BASIC = [  # resblock's own module: body = conv, bn, relu, conv, bn; shortcut = conv, bn
    (r"stage(\d)\.repeat1\.resblock(\d+)\.body\.(\d)\.",
     lambda k: f"layer{k[1]}.{k.num(2, -1)}.{['conv1', 'bn1', '', 'conv2', 'bn2'][k.num(3)]}."),
    (r"stage(\d)\.repeat1\.resblock(\d+)\.shortcut\.", lambda k: f"layer{k[1]}.{k.num(2, -1)}.downsample."),
    (r"linear1\.", "fc."),
]

_RESNET_BOTTLENECK = [
    (r"stage(\d)\.repeat1\.bottleneck(\d+)\.residual1\.body\.(conv|bn)(\d)\.",
     lambda k: f"layer{k[1]}.{k.num(2, -1)}.{k[3]}{k[4]}."),
    (r"stage(\d)\.repeat1\.bottleneck(\d+)\.residual1\.shortcut\.", lambda k: f"layer{k[1]}.{k.num(2, -1)}.downsample."),
    (r"linear1\.", "fc."),
]

_FEATURES_CLASSIFIER = [Leaves("features", "features"), Leaves("classifier", "classifier")]

_SQUEEZENET = [
    (r"features\.conv1\.", "features.0."),
    Blocks(r"features\.fire\d", lambda i: f"features.{[3, 4, 5, 7, 8, 9, 10, 12][i]}", (  # between the pools
        (r"conv1\.", "squeeze."),
        (r"parallel1\.paths\.0\.conv1\.", "expand1x1."),
        (r"parallel1\.paths\.1\.conv1\.", "expand3x3."),
    )),
    (r"classifier\.conv1\.", "classifier.1."),
]

_DENSENET = [
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

# torchvision's Conv2dNormActivation is nn.Sequential(conv, bn, act): the spec's conv-bn-act blocks
# mirror it position by position, as its inverted residuals mirror their `conv` / `block` lists.
_BY_POSITION = (r"(\w+)\.", lambda k: f"{k.pos(1)}.")

_MOBILENET_V2 = [
    Blocks(r"features\.(cbr\d|bottleneck\d\.repeat1\.inverted\d+)", lambda i: f"features.{i}", (
        (r"residual1\.body\.(cbr\d)\.(\w+)\.", lambda k: f"conv.{k.pos(1)}.{k.pos(2)}."),
        (r"residual1\.body\.(\w+)\.", lambda k: f"conv.{k.pos(1)}."),
        _BY_POSITION,
    )),
    (r"linear1\.", "classifier.1."),
]

_MOBILENET_V3 = [
    Blocks(r"features\.(cba\d|bneck\d+)", lambda i: f"features.{i}", (
        (r"residual1\.body\.(se\d)\.parallel1\.paths\.1\.conv(\d)\.", lambda k: f"block.{k.pos(1)}.fc{k[2]}."),
        (r"residual1\.body\.(cba\d)\.(\w+)\.", lambda k: f"block.{k.pos(1)}.{k.pos(2)}."),
        _BY_POSITION,
    )),
    Leaves("classifier", "classifier"),
]

_MBCONV = r"features\.(stage\d)\.repeat1\.mbconv(\d+)\.residual1\.body\."  # features.<stage>.<block>.block

_EFFICIENTNET = [
    (r"features\.(cba\d)\.(\w+)\.", lambda k: f"features.{k.pos(1)}.{k.pos(2)}."),
    (_MBCONV + r"(se\d)\.parallel1\.paths\.1\.conv(\d)\.",
     lambda k: f"features.{k.pos(1)}.{k.num(2, -1)}.block.{k.pos(3)}.fc{k[4]}."),
    (_MBCONV + r"(cba\d)\.(\w+)\.", lambda k: f"features.{k.pos(1)}.{k.num(2, -1)}.block.{k.pos(3)}.{k.pos(4)}."),
    (r"linear1\.", "classifier.1."),
]

RULES: dict[str, list] = {
    "alexnet": _FEATURES_CLASSIFIER,
    "densenet121": _DENSENET,
    "efficientnet_b0": _EFFICIENTNET,
    "mobilenet_v2": _MOBILENET_V2,
    "mobilenet_v3_large": _MOBILENET_V3,
    "mobilenet_v3_small": _MOBILENET_V3,
    "resnet18": _RESNET_BASIC,
    "resnet34": _RESNET_BASIC,
    "resnet50": _RESNET_BOTTLENECK,
    "squeezenet1_0": _SQUEEZENET,
    "vgg11": _FEATURES_CLASSIFIER,
    "vgg11_bn": _FEATURES_CLASSIFIER,
    "vgg16": _FEATURES_CLASSIFIER,
    "vgg16_bn": _FEATURES_CLASSIFIER,
    "wide_resnet50_2": _RESNET_BOTTLENECK,
}


def load_torchvision_weights(model, name: str, state_dict=None, *, skip_mismatched: bool = False) -> list[str]:
    """Load torchvision's `name` weights into `model`, built from specs/torchvision/<name>.yaml.

    `state_dict` may be a torchvision state_dict or model; by default torchvision's pretrained
    weights for `name` are fetched (``weights="DEFAULT"``: downloaded once into torch's cache).
    With `skip_mismatched`, layers whose sizes differ (the classifier of a spec re-targeted to
    another dataset) keep their fresh init, for fine-tuning. Returns the keys left untouched.
    """
    from archspec.errors import ArchspecError

    if name not in RULES:
        raise ArchspecError(f'no torchvision weight mapping for "{name}"; known: {", ".join(sorted(RULES))}')
    if state_dict is None:
        from torchvision.models import get_model

        state_dict = get_model(name, weights="DEFAULT").state_dict()
    elif hasattr(state_dict, "state_dict"):
        state_dict = state_dict.state_dict()
    new, skipped = mapped_state_dict(RULES[name], model, state_dict, where=f"torchvision {name}",
                                     skip_mismatched=skip_mismatched)
    model.load_state_dict({**model.state_dict(), **new})
    return skipped
