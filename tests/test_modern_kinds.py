"""The kinds and language features modern networks need (issue 12, items 1, 2, 5, 6).

Each native kind is checked against the torch / torchvision module it stands for: same
parameters (copied across), same output. Shape names (`in_channels`), `if:`, kinds from block
parameters, comparisons and make_divisible are checked on small specs.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import archspec
from archspec.errors import ArchspecError


def load(write, text: str):
    return archspec.load_spec(write("s.yaml", text))


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def built(spec):
    torch.manual_seed(0)
    model = archspec.build_model(spec).eval()
    assert n_params(model) == archspec.summarize(spec).total_params
    return model


# --- shape names, if:, kinds from parameters, expressions ------------------------------------


def test_in_channels_makes_a_depthwise_conv_anywhere(write):
    spec = load(write, """
        input: [3, 16, 16]
        classes: 4
        blocks:
          dw: {layers: [conv: {out: $in_channels, groups: $in_channels, bias: false}]}
        layers:
          - conv: 8
          - dw
          - conv: 24
          - dw
          - gap
          - flatten
          - linear: {out: "${in_features * 2}"}
          - linear: classes
    """)
    model = built(spec)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.groups) for c in convs] == [(3, 8, 1), (8, 8, 8), (8, 24, 1), (24, 24, 24)]
    assert spec.layers[6].out_shape == (48,)


def test_block_param_defaults_see_the_block_input(write):
    # `c` is the block's input channels even though the conv that uses it sees `squeeze` channels
    spec = load(write, """
        input: [16, 8, 8]
        classes: 2
        blocks:
          se:
            params: {squeeze: "${in_channels // 4}", c: $in_channels}
            layers:
              - parallel:
                  merge: mul
                  paths:
                    - [identity]
                    - [gap, conv: {out: $squeeze, kernel: 1}, relu, conv: {out: $c, kernel: 1}, sigmoid]
        layers: [se, flatten, linear: classes]
    """)
    model = built(spec)
    ref = __import__("torchvision.ops", fromlist=["SqueezeExcitation"]).SqueezeExcitation(16, 4)
    ours = model.se1.parallel1
    ref_params = list(ref.parameters())
    with torch.no_grad():
        for p, q in zip(ours.parameters(), ref_params, strict=True):
            p.copy_(torch.randn_like(q))
            q.copy_(p)
    x = torch.randn(2, 16, 8, 8)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)


def test_if_and_kind_from_parameter(write):
    spec = load(write, """
        input: [8, 8, 8]
        classes: 2
        blocks:
          cba:
            params: {out: null, act: relu}
            layers:
              - conv: {out: $out, kernel: 1, bias: false, if: "${out != in_channels}"}
              - bn
              - $act
        layers:
          - cba: 8                          # same width: the conv is left out
          - cba: {out: 16, act: hardswish}
          - cba: {out: 16, act: relu6}
          - gap
          - flatten
          - linear: classes
    """)
    model = built(spec)
    assert [type(m).__name__ for m in model.cba1] == ["BatchNorm2d", "ReLU"]
    assert [type(m).__name__ for m in model.cba2] == ["Conv2d", "BatchNorm2d", "Hardswish"]
    assert [type(m).__name__ for m in model.cba3] == ["BatchNorm2d", "ReLU6"]


def test_kind_from_parameter_must_name_a_kind(write):
    with pytest.raises(ArchspecError, match='unknown layer kind "rleu"'):
        load(write, """
            input: [8]
            classes: 2
            blocks: {b: {params: {act: rleu}, layers: [$act]}}
            layers: [b, linear: classes]
        """)


def test_in_features_on_an_image_is_a_located_error(write):
    with pytest.raises(ArchspecError) as info:
        load(write, """
            input: [3, 8, 8]
            classes: 2
            layers:
              - conv: $in_features
              - flatten
              - linear: classes
        """)
    assert "s.yaml:4:" in str(info.value)
    assert '"in_features" is not defined for this layer\'s input [3, 8, 8] (defined here: in_channels)' in str(info.value)


def test_repeat_zero_times_and_comparisons(write):
    spec = load(write, """
        input: [4]
        classes: 2
        vars: {n: 0, deep: "${n > 0 and 1 or 0}"}
        layers:
          - repeat: {times: $n, layers: [linear: 4]}
          - linear: {out: "${8 if deep else 3}"}
          - linear: classes
    """)
    assert [n.kind for n in spec.layers] == ["linear", "linear"]
    assert spec.layers[0].out_shape == (3,)


def test_a_model_with_every_layer_left_out_is_a_located_error(write):
    with pytest.raises(ArchspecError, match=r"s.yaml:4:3: layers: no layer is left"):
        load(write, "input: [4]\nclasses: 4\nlayers:\n  - repeat: {times: 0, layers: [linear: 4]}\n  - relu: {if: 0}\n")
    with pytest.raises(ArchspecError, match="repeat.layers: expected a non-empty list of layers"):
        load(write, "input: [4]\nclasses: 4\nlayers:\n  - repeat: {times: 0, layers: []}\n  - linear: 4\n")


def test_make_divisible_is_torchvisions_rule():
    from torchvision.models._utils import _make_divisible

    from archspec.spec.expr import evaluate

    for v in [1, 7, 8, 16, 18, 30, 72 // 4, 120 // 4, 100, 37.5, 0.5 * 960]:
        for d in (4, 8, 16):
            assert evaluate(f"make_divisible({v}, {d})", {}) == _make_divisible(v, d)


def test_exponent_strings_are_numbers_where_numbers_are_meant(write):
    spec = load(write, """
        input: [3, 8, 8]
        classes: 2
        layers: [layernorm: {eps: 1e-6}, gap, flatten, linear: classes]
    """)
    assert spec.layers[0].options["eps"] == 1e-6


# --- norms, scales, drop path, channel plumbing -------------------------------------------------


def test_layernorm_on_images_is_convnext_layernorm2d(write):
    from torchvision.models.convnext import LayerNorm2d

    spec = load(write, "input: [6, 5, 5]\nclasses: 2\nlayers: [layernorm: {eps: 1.0e-6}, gap, flatten, linear: 2]\n")
    ours = built(spec).layernorm1
    ref = LayerNorm2d(6, eps=1e-6)
    with torch.no_grad():
        ours.weight.copy_(torch.randn(6))
        ours.bias.copy_(torch.randn(6))
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 6, 5, 5)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)


def test_layernorm_and_groupnorm_on_features(write):
    spec = load(write, "input: [12]\nclasses: 2\nlayers: [layernorm, groupnorm: 3, linear: classes]\n")
    model = built(spec)
    assert isinstance(model.layernorm1, nn.LayerNorm) and model.layernorm1.normalized_shape == (12,)
    assert isinstance(model.groupnorm1, nn.GroupNorm) and model.groupnorm1.num_groups == 3


def test_groupnorm_groups_must_divide(write):
    with pytest.raises(ArchspecError, match="groups=5 must divide the 12 channels"):
        load(write, "input: [12, 4, 4]\nclasses: 2\nlayers: [groupnorm: 5, gap, flatten, linear: classes]\n")


def test_layerscale_starts_at_init_and_scales_per_channel(write):
    spec = load(write, "input: [4, 3, 3]\nclasses: 2\nlayers: [layerscale: 0.5, gap, flatten, linear: 2]\n")
    ls = built(spec).layerscale1
    assert ls.scale.shape == (4, 1, 1) and torch.all(ls.scale == 0.5)
    x = torch.randn(2, 4, 3, 3)
    assert torch.equal(ls(x), x * 0.5)


def test_droppath_drops_whole_samples_in_training_only(write):
    spec = load(write, "input: [64]\nclasses: 2\nlayers: [droppath: 0.5, linear: classes]\n")
    dp = built(spec).droppath1
    x = torch.ones(200, 64)
    assert torch.equal(dp(x), x)  # eval: identity
    dp.train()
    torch.manual_seed(0)
    y = dp(x)
    per_sample = y.unique(dim=1)  # each row is all 0 or all 2
    assert per_sample.shape[1] == 1 and set(per_sample.flatten().tolist()) == {0.0, 2.0}


def test_chunk_and_channel_shuffle_match_shufflenet(write):
    from torchvision.models.shufflenetv2 import channel_shuffle

    spec = load(write, """
        input: [8, 4, 4]
        classes: 2
        layers:
          - parallel: {merge: concat, paths: [[chunk: 0], [chunk: 1, conv: {out: 4, kernel: 1}]]}
          - channel_shuffle: 2
          - gap
          - flatten
          - linear: classes
    """)
    model = built(spec)
    x = torch.randn(2, 8, 4, 4)
    x1, x2 = x.chunk(2, dim=1)
    conv = model.parallel1.paths[1].conv1
    expected = channel_shuffle(torch.cat([x1, conv(x2)], dim=1), 2)
    assert torch.allclose(model.channel_shuffle1(model.parallel1(x)), expected)


def test_pool_ceil_mode_shapes_match_torch(write):
    for h in (29, 30, 14, 7):
        spec = load(write, f"input: [1, {h}, {h}]\nclasses: 2\nlayers: [pool: {{size: 3, stride: 2, ceil: true}}, "
                           "flatten, linear: classes]\n")
        ref = nn.MaxPool2d(3, 2, ceil_mode=True)(torch.empty(1, 1, h, h, device="meta"))
        assert spec.layers[0].out_shape == tuple(ref.shape[1:])


# --- residual shortcuts, parallel mul -----------------------------------------------------------


def test_residual_with_a_shortcut_list_and_if_same(write):
    spec = load(write, """
        input: [8, 8, 8]
        classes: 2
        layers:
          - residual:                          # pre-activation style: conv-only shortcut
              layers: [bn, relu, conv: {out: 16, stride: 2}]
              shortcut: [conv: {out: 16, kernel: 1, stride: 2, bias: false}]
          - residual: {shortcut: if_same, layers: [conv: 16]}       # keeps the shape: identity added
          - residual: {shortcut: if_same, layers: [conv: 32]}       # changes it: no shortcut
          - gap
          - flatten
          - linear: classes
    """)
    model = built(spec)
    x = torch.randn(2, 8, 8, 8)
    r1, r2, r3 = model.residual1, model.residual2, model.residual3
    assert torch.allclose(r1(x), r1.body(x) + r1.shortcut(x))
    y = r1(x)
    assert torch.allclose(r2(y), r2.body(y) + y)
    assert torch.allclose(r3(y), r3.body(y)) and not hasattr(r3, "shortcut")
    assert spec.resolved["layers"][0]["residual"]["shortcut"] == [{"conv": {"out": 16, "kernel": 1, "stride": 2,
                                                                            "bias": False}}]


def test_residual_shortcut_must_match_the_body(write):
    with pytest.raises(ArchspecError, match=r"the shortcut gives \[4, 8, 8\] but the body gives \[16, 8, 8\]"):
        load(write, "input: [8, 8, 8]\nclasses: 2\nlayers:\n  - residual: {layers: [conv: 16], shortcut: [conv: 4]}"
                    "\n  - gap\n  - flatten\n  - linear: classes\n")


def test_parallel_mul_broadcasts_and_refuses_mismatches(write):
    with pytest.raises(ArchspecError, match="merge mul cannot broadcast"):
        load(write, "input: [8, 4, 4]\nclasses: 2\nlayers:\n  - parallel: {merge: mul, paths: [[identity], "
                    "[gap, conv: {out: 4, kernel: 1}]]}\n  - gap\n  - flatten\n  - linear: classes\n")


# --- tokens and attention -------------------------------------------------------------------------


TINY_VIT = """
    input: [3, 16, 16]
    classes: 5
    layers:
      - patchify: {dim: 32, patch: 4}     # 16 tokens of width 32
      - class_token
      - pos_embed
      - repeat: {times: 2, layers: [encoder_block: {heads: 4, mlp_ratio: 2}]}
      - layernorm: {eps: 1.0e-6}
      - token_pool: cls
      - linear: classes
"""


def test_token_shapes_are_inferred(write):
    spec = load(write, TINY_VIT)
    assert [n.out_shape for n in spec.layers] == [(16, 32), (17, 32), (17, 32), (17, 32), (17, 32), (32,), (5,)]
    model = built(spec)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_encoder_block_is_torchvisions_encoder_block(write):
    from torchvision.models.vision_transformer import EncoderBlock

    spec = load(write, TINY_VIT)
    ours = built(spec).repeat1.encoder_block1
    ref = EncoderBlock(4, 32, 64, 0.0, 0.0, norm_layer=lambda d: nn.LayerNorm(d, eps=1e-6)).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 17, 32)
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_attention_is_multihead_self_attention(write):
    spec = load(write, "input: [3, 8, 8]\nclasses: 2\nlayers: [patchify: {dim: 8, patch: 2}, attention: 2, "
                       "token_pool: mean, linear: classes]\n")
    ours = built(spec).attention1
    ref = nn.MultiheadAttention(8, 2, batch_first=True)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 16, 8)
    assert torch.allclose(ours(x), ref(x, x, x)[0], atol=1e-6)


def test_attention_heads_must_divide_width(write):
    with pytest.raises(ArchspecError, match="heads=3 must divide the token width 8"):
        load(write, "input: [3, 8, 8]\nclasses: 2\nlayers: [patchify: {dim: 8, patch: 2}, attention: 3, "
                    "token_pool: mean, linear: classes]\n")


def test_tokens_refused_where_images_are_needed(write):
    with pytest.raises(ArchspecError, match=r"conv needs an image input \[C, H, W\], got \[16, 8\]"):
        load(write, "input: [3, 8, 8]\nclasses: 2\nlayers: [patchify: {dim: 8, patch: 2}, conv: 4]\n")


def test_attention_macs_are_flop_counter_macs(write):
    from torch.utils.flop_counter import FlopCounterMode

    spec = load(write, TINY_VIT)
    summary = archspec.summarize(spec)
    block = next(r for r in summary.layers if r.kind.startswith("encoder_block"))
    with torch.device("meta"):
        ref = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True, norm_first=True).eval()
        counter = FlopCounterMode(display=False)
        with counter:
            ref(torch.empty(1, 17, 32))
    assert block.macs == counter.get_total_flops() // 2 > 0
    attention = 17 * 32 * 32 * 4 + 2 * 17 * 17 * 32  # q, k, v, out projections; QK^T and AV
    assert block.macs == attention + 2 * 17 * 32 * 64


# --- Swin ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size,shift", [((14, 14), 3), ((14, 14), 0), ((7, 7), 3), ((10, 12), 3), ((16, 9), 3)])
def test_window_attention_is_torchvisions_shifted_window_attention(write, size, shift):
    """Padding to whole windows, the cyclic shift and its mask, and the relative position bias
    (its index buffer too) agree with torchvision's module for the same weights."""
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    h, w = size
    spec = load(write, f"input: [32, {h}, {w}]\nclasses: 2\nlayers: [window_attention: {{heads: 4, shift: {shift}}}, "
                       "gap, flatten, linear: classes]\n")
    ours = built(spec).window_attention1
    torch.manual_seed(1)
    ref = ShiftedWindowAttention(32, [7, 7], [shift, shift], 4).eval()
    with torch.no_grad():
        ref.relative_position_bias_table.normal_()
    assert torch.equal(ours.relative_position_index, ref.relative_position_index)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, h, w, 32)
    assert torch.allclose(ours(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), ref(x), atol=1e-5)


def test_patch_merging_is_torchvisions(write):
    from torchvision.models.swin_transformer import PatchMerging

    spec = load(write, "input: [16, 7, 9]\nclasses: 2\nlayers: [patch_merging, gap, flatten, linear: classes]\n")
    assert spec.layers[0].out_shape == (32, 4, 5)
    ours = built(spec).patch_merging1
    ref = PatchMerging(16)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 7, 9, 16)
    assert torch.allclose(ours(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), ref(x), atol=1e-6)


# --- imported modules -----------------------------------------------------------------------------


def test_module_layer_probe_runs_in_eval_with_two_samples_and_counts_macs(write):
    spec = archspec.load_spec(write("m.yaml", """
        input: [3, 32, 32]
        classes: 1000
        vars: {n: 1000}
        layers:
          - module: {import: "torchvision.models:resnet18", kwargs: {num_classes: $n}}
    """), allow_import=True)
    summary = archspec.summarize(spec)
    assert spec.output_shape == (1000,)
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models import resnet18

    counter = FlopCounterMode(display=False)
    with counter, torch.device("meta"):
        resnet18().eval()(torch.empty(1, 3, 32, 32))
    assert summary.macs == counter.get_total_flops() // 2 > 0


def test_module_macs_unknown_is_not_zero(write, tmp_path, monkeypatch):
    # runs (so its shape is known) but refuses to run under a dispatch mode such as FlopCounterMode
    (tmp_path / "odd_module.py").write_text(
        "import torch\n"
        "from torch.utils._python_dispatch import _get_current_dispatch_mode\n"
        "class Odd(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        if _get_current_dispatch_mode() is not None:\n"
        "            raise RuntimeError('not countable')\n"
        "        return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = archspec.load_spec(write("u.yaml", """
        input: [4]
        classes: 4
        layers: [module: "odd_module:Odd"]
    """), allow_import=True)
    summary = archspec.summarize(spec)
    assert summary.layers[0].macs is None and summary.macs is None
    from archspec.summary import human

    assert human(summary.macs) == "unknown"


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("word,meant", [
    ("layer_norm", '"layernorm"'),
    ("LayerNorm", '"layernorm"'),
    ("attention_layer", None),
    ("self_attention", '"attention"'),
    ("transformer", '"encoder_block"'),
    ("stochastic_depth", '"droppath"'),
    ("cls_token", '"class_token"'),
    ("batchnorm2d", '"bn"'),
    ("conv2d", '"conv"'),
    ("dense", '"linear"'),
    ("norm", ('"layernorm"', '"bn"')),
    ("rleu", '"relu"'),
])
def test_unknown_kind_suggests_by_meaning_and_points_to_the_list(write, word, meant):
    with pytest.raises(ArchspecError) as info:
        load(write, f"input: [4]\nclasses: 2\nlayers: [{word}, linear: classes]\n")
    message = str(info.value)
    assert "`archspec validate --kinds` lists every kind" in message
    if isinstance(meant, tuple):  # several kinds mean it, in registry order
        hint = message.split("(did you mean ")[1].split("?)")[0]
        assert sorted(hint.split(" or ")) == sorted(meant)
    elif meant:
        assert f"(did you mean {meant}" in message
    assert "flatten" not in message


def test_padding_word_lists_the_allowed_words(write):
    with pytest.raises(ArchspecError, match='must be an integer >= 0 or one of same, valid; got string "full"'):
        load(write, "input: [3, 8, 8]\nclasses: 2\nlayers: [conv: {out: 4, padding: full}, gap, flatten, linear: 2]\n")


def test_validate_kinds_lists_every_kind(cli):
    from archspec.layers import REGISTRY

    result = cli("validate", "--kinds")
    assert result.exit_code == 0, result.output
    for kind in {k.name for k in REGISTRY.values()}:
        assert kind in result.output


# --- plain PyTorch code ---------------------------------------------------------------------------


def test_codegen_carries_the_new_kinds(write):
    from archspec.codegen import to_pytorch

    spec = load(write, """
        input: [3, 16, 16]
        classes: 5
        layers:
          - conv: 16
          - layernorm
          - residual:
              shortcut: [conv: {out: 16, kernel: 1}]
              layers: [conv: {out: 16, groups: 16}, groupnorm: 4, hardswish, layerscale: 0.1, droppath: 0.1]
          - residual: {shortcut: if_same, layers: [conv: 32, relu6]}
          - parallel: {merge: mul, paths: [[identity], [gap, conv: {out: 32, kernel: 1}, hardsigmoid]]}
          - parallel: {merge: concat, paths: [[chunk: 0], [chunk: 1, mish]]}
          - channel_shuffle: 4
          - pool: {size: 3, stride: 2, ceil: true}
          - patchify: {dim: 32, patch: 2}
          - class_token
          - pos_embed
          - attention: 4
          - encoder_block: 4
          - token_pool
          - linear: classes
    """)
    code = to_pytorch(spec)
    assert "class EncoderBlock" in code and "class SelfAttention" in code and "import torchvision" in code
    namespace: dict = {}
    exec(compile(code, "generated.py", "exec"), namespace)  # noqa: S102 - our own generated code
    plain = namespace["build_model"]().eval()
    ours = built(spec)
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(ours(x), plain(x))


# --- training memory ------------------------------------------------------------------------------

MODERN = {
    "se_inverted": """
        input: [3, 16, 16]
        classes: 5
        blocks:
          se:
            params: {c: $in_channels}
            layers:
              - parallel: {merge: mul, paths: [[identity], [gap, conv: {out: 4, kernel: 1}, relu, conv: {out: $c, kernel: 1},
                                                       hardsigmoid]]}
        layers:
          - conv: {out: 16, stride: 2, bias: false}
          - bn
          - hardswish
          - residual:
              shortcut: if_same
              layers: [conv: {out: 32, kernel: 1}, relu6, conv: {out: 32, groups: 32}, se, conv: {out: 16, kernel: 1},
                       droppath: 0.1]
          - residual: {shortcut: if_same, layers: [conv: {out: 24, kernel: 1}, groupnorm: 4, mish]}
          - gap
          - flatten
          - linear: classes
    """,
    "convnext_like": """
        input: [3, 16, 16]
        classes: 5
        layers:
          - conv: {out: 16, kernel: 4, stride: 4, padding: 0}
          - layernorm
          - residual: {layers: [conv: {out: 16, kernel: 7, groups: 16}, layernorm, conv: {out: 64, kernel: 1}, gelu,
                                conv: {out: 16, kernel: 1}, layerscale: 0.5, droppath: 0.1]}
          - gap
          - layernorm
          - flatten
          - linear: classes
    """,
    "shuffle_like": """
        input: [3, 16, 16]
        classes: 5
        layers:
          - conv: {out: 16, stride: 2, bias: false}
          - bn
          - relu
          - parallel: {merge: concat, paths: [[chunk: 0], [chunk: 1, conv: {out: 8, groups: 8, bias: false}, bn]]}
          - channel_shuffle: 2
          - gap
          - flatten
          - linear: classes
    """,
    "vit_like": TINY_VIT,
    "swin_like": """
        input: [3, 32, 32]
        classes: 5
        layers:
          - conv: {out: 16, kernel: 4, stride: 4, padding: 0}
          - layernorm
          - residual: {layers: [layernorm, window_attention: {heads: 2, window: 4}]}
          - residual: {layers: [layernorm, window_attention: {heads: 2, window: 4, shift: 2}]}
          - patch_merging
          - residual: {layers: [layernorm, conv: {out: 64, kernel: 1}, gelu, conv: {out: 32, kernel: 1}]}
          - gap
          - flatten
          - linear: classes
    """,
}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", sorted(MODERN))
def test_training_memory_of_modern_blocks_matches_autograd(name, precision, write):
    """The activations a CPU training step keeps for backward, as archspec/memory.py estimates them
    from each kind's `saved`, equal what autograd saves in these networks' forward."""
    from archspec.memory import Setup, estimate_memory

    from . import memory_probe as probe

    spec = load(write, MODERN[name])
    estimate = estimate_memory(spec, archspec.build_model(spec, device="meta"), Setup(4, "cpu", precision))
    measured = probe.forward_kept_bytes(spec, 4, "cpu", precision)
    assert estimate.activation_bytes - 4 * spec.num_classes * 4 == pytest.approx(measured, rel=0.01, abs=1)
