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

_YBLOCK = r"stage(\d)\.repeat1\.yblock(\d+)\.residual1\."  # trunk_output.block<s>.block<s>-<b>

_REGNET = [
    (r"cbr1\.(\w+)\.", lambda k: f"stem.{k.pos(1)}."),
    (_YBLOCK + r"body\.se\.parallel1\.paths\.1\.conv(\d)\.",
     lambda k: f"trunk_output.block{k[1]}.block{k[1]}-{k.num(2, -1)}.f.se.fc{k[3]}."),
    (_YBLOCK + r"body\.(\w)\.(\w+)\.", lambda k: f"trunk_output.block{k[1]}.block{k[1]}-{k.num(2, -1)}.f.{k[3]}.{k.pos(4)}."),
    (_YBLOCK + r"shortcut\.", lambda k: f"trunk_output.block{k[1]}.block{k[1]}-{k.num(2, -1)}.proj."),
    (r"linear1\.", "fc."),
]

_SHUFFLENET = [
    (r"conv1\.", "conv1.0."),
    (r"bn1\.", "conv1.1."),
    (r"conv2\.", "conv5.0."),
    (r"bn2\.", "conv5.1."),
    (r"stage(\d)\.down1\.parallel1\.paths\.0\.(\w+)\.", lambda k: f"stage{k.num(1, 1)}.0.branch1.{k.pos(2)}."),
    (r"stage(\d)\.down1\.parallel1\.paths\.1\.branch1\.(\w+)\.", lambda k: f"stage{k.num(1, 1)}.0.branch2.{k.pos(2)}."),
    (r"stage(\d)\.repeat1\.unit(\d+)\.parallel1\.paths\.1\.branch1\.(\w+)\.",
     lambda k: f"stage{k.num(1, 1)}.{k[2]}.branch2.{k.pos(3)}."),
    (r"linear1\.", "fc."),
]

_CNBLOCK = r"features\.(stage\d)\.repeat1\.cnblock(\d+)\.residual1\.body\."  # features.<s>.<b>
_CNBLOCK_AT = {"conv1": 0, "layernorm1": 2, "conv2": 3, "conv3": 5}  # its `block`: Permutes and GELU between

_CONVNEXT = [
    (r"features\.(conv1|layernorm1)\.", lambda k: f"features.0.{k.pos(1)}."),
    (_CNBLOCK + r"layerscale1\.scale", lambda k: f"features.{k.pos(1) - 1}.{k.num(2, -1)}.layer_scale"),
    (_CNBLOCK + r"(\w+)\.", lambda k: f"features.{k.pos(1) - 1}.{k.num(2, -1)}.block.{_CNBLOCK_AT[k[3]]}."),
    (r"features\.(downsample\d)\.(\w+)\.", lambda k: f"features.{k.pos(1) - 1}.{k.pos(2)}."),
    (r"layernorm1\.", "classifier.0."),
    (r"linear1\.", "classifier.2."),
]

_ENCODER_AT = {("1", "layernorm1"): "ln_1", ("1", "attention1"): "self_attention",
               ("2", "layernorm1"): "ln_2", ("2", "linear1"): "mlp.0", ("2", "linear2"): "mlp.3"}

_VIT = [
    (r"patchify1\.", "conv_proj."),
    (r"class_token1\.token", "class_token"),
    (r"pos_embed1\.embedding", "encoder.pos_embedding"),
    (r"repeat1\.encoder(\d+)\.residual(\d)\.body\.(\w+)\.",
     lambda k: f"encoder.layers.encoder_layer_{k.num(1, -1)}.{_ENCODER_AT[k[2], k[3]]}."),
    (r"layernorm1\.", "encoder.ln."),
    (r"linear1\.", "heads.head."),
]

_SWIN_AT = {("1", "layernorm1"): "norm1", ("1", "window_attention1"): "attn",
            ("2", "layernorm1"): "norm2", ("2", "conv1"): "mlp.0", ("2", "conv2"): "mlp.3"}

_SWIN = [
    (r"features\.conv1\.", "features.0.0."),
    (r"features\.layernorm1\.", "features.0.2."),  # after a Permute in torchvision
    (r"features\.(stage\d)\.repeat1\.swin(\d+)\.residual(\d)\.body\.(\w+)\.",
     lambda k: f"features.{k.pos(1) - 1}.{k.num(2, -1)}.{_SWIN_AT[k[3], k[4]]}."),
    (r"features\.(patch_merging\d)\.", lambda k: f"features.{k.pos(1) - 1}."),
    (r"layernorm1\.", "norm."),
    (r"linear1\.", "head."),
]

RULES: dict[str, list] = {
    "alexnet": _FEATURES_CLASSIFIER,
    "densenet121": _DENSENET,
    "efficientnet_b0": _EFFICIENTNET,
    "mobilenet_v2": _MOBILENET_V2,
    "mobilenet_v3_large": _MOBILENET_V3,
    "mobilenet_v3_small": _MOBILENET_V3,
    "convnext_tiny": _CONVNEXT,
    "regnet_y_400mf": _REGNET,
    "resnet18": _RESNET_BASIC,
    "resnet34": _RESNET_BASIC,
    "resnet50": _RESNET_BOTTLENECK,
    "shufflenet_v2_x1_0": _SHUFFLENET,
    "squeezenet1_0": _SQUEEZENET,
    "swin_t": _SWIN,
    "vgg11": _FEATURES_CLASSIFIER,
    "vgg11_bn": _FEATURES_CLASSIFIER,
    "vgg16": _FEATURES_CLASSIFIER,
    "vgg16_bn": _FEATURES_CLASSIFIER,
    "vit_b_16": _VIT,
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


def weights_source(source: str, name: str):
    """`archspec train --weights SOURCE` for the spec named `name`: a function that loads the
    weights into a freshly built model and returns the keys it kept fresh (a new classifier).

    SOURCE is ``torchvision`` (torchvision's pretrained weights for `name`, downloaded once into
    torch's cache) or the path of a torchvision state_dict saved with ``torch.save``.
    """
    from pathlib import Path

    from archspec.errors import ArchspecError

    if name not in RULES:
        raise ArchspecError(f'--weights: no torchvision weight mapping for the spec "{name}"; '
                            f'specs/torchvision/ has: {", ".join(sorted(RULES))}')
    state_dict = None
    if source != "torchvision":
        path = Path(source)
        if not path.is_file():
            raise ArchspecError('--weights takes "torchvision" or a state_dict file', file=source)
        import torch

        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
            raise ArchspecError(f"cannot read a state_dict: {type(e).__name__}: {e}", file=source) from None
        if not isinstance(state_dict, dict):
            raise ArchspecError(f"expected a state_dict (a mapping), got {type(state_dict).__name__}", file=source)

    def load(model) -> list[str]:
        return load_torchvision_weights(model, name, state_dict, skip_mismatched=True)

    return load
