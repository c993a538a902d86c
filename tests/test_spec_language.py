"""The spec language: every kind, vars, expressions, blocks, repeat, extends, retargeting, codegen."""

from __future__ import annotations

import pytest
import torch

import archspec
from archspec.layers import REGISTRY


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def check(spec):
    """Counts from the meta device equal the real module; the forward pass has the inferred shape."""
    model = archspec.build_model(spec)
    summary = archspec.summarize(spec)
    assert summary.total_params == n_params(model)
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(2, *spec.input_shape))
    assert tuple(y.shape[1:]) == spec.output_shape
    return model, summary


@pytest.mark.parametrize("kind", sorted(k for k in REGISTRY if k != "module"))
def test_every_kind_example_builds_and_counts(kind, tmp_path):
    impl = REGISTRY[kind]
    assert impl.example, f"{kind} needs an example"
    before = {"image": [], "flat": ["flatten"], "tokens": ["patchify: {dim: 16, patch: 4}"]}[impl.example_input]
    layers = [*before, impl.example, "flatten", "linear: classes"]
    text = "input: [8, 16, 16]\nclasses: 5\nlayers:\n" + "".join(f"  - {line}\n" for line in layers)
    path = tmp_path / "k.yaml"
    path.write_text(text)
    check(archspec.load_spec(path))


def test_c5l3_by_hand_matches_published_count(write):
    spec = archspec.load_spec(write("c5l3.yaml", """
        dataset: cifar10
        layers:
          - conv: 128
          - relu
          - pool: 2
          - conv: 256
          - relu
          - pool: 2
          - conv: 512
          - relu
          - conv: 512
          - relu
          - conv: 256
          - relu
          - pool: 2
          - flatten
          - linear: 512
          - linear: 256
          - linear: 128
          - linear: classes
    """))
    _, summary = check(spec)
    assert summary.total_params == 7_281_802
    assert spec.layers[13].out_shape == (256 * 4 * 4,)


def test_vars_expressions_blocks_and_repeat(write):
    spec = archspec.load_spec(write("b.yaml", """
        input: [3, 32, 32]
        classes: 10
        vars: {width: 16, wide: "${width * 2}"}
        blocks:
          cbr:
            params: {out: null, k: 3}
            layers:
              - conv: {out: $out, kernel: $k, bias: false}
              - bn
              - relu
        layers:
          - cbr: $width
          - repeat: {times: 2, layers: [cbr: {out: "${wide}"}]}
          - cbr: {out: "${max(wide, 8) + channels}", k: 1}
          - gap
          - flatten
          - linear: classes
    """))
    model, summary = check(spec)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 32, 35]
    assert convs[-1].kernel_size == (1, 1)
    assert hasattr(model, "cbr1") and hasattr(model, "repeat1")
    # the resolved spec reloads to the same module tree
    assert summary.total_params == n_params(model)


def test_resolved_spec_round_trips(write, tmp_path):
    import yaml

    spec = archspec.load_spec(write("r.yaml", """
        dataset: mnist
        blocks:
          stage:
            params: [out]
            layers: [conv: $out, bn, relu, pool: 2]
        layers:
          - stage: 8
          - stage: {out: 16, name: second}
          - residual: {layers: [conv: 16, bn, relu, conv: 16, bn]}
          - parallel: {merge: concat, paths: [[conv: 4], [conv: {out: 4, kernel: 5}]]}
          - flatten
          - linear: classes
    """))
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(spec.resolved, sort_keys=False))
    again = archspec.load_spec(path)
    a, b = archspec.build_model(spec), archspec.build_model(again)
    assert list(a.state_dict()) == list(b.state_dict())
    assert archspec.summarize(again).total_params == n_params(a)
    assert hasattr(a, "second")


def test_dataset_retarget_reinfers_flatten(write):
    path = write("v.yaml", """
        dataset: cifar10
        layers: [conv: 8, pool: 2, conv: 16, pool: 2, flatten, linear: classes]
    """)
    cifar = archspec.load_spec(path)
    mnist = archspec.load_spec(path, dataset="mnist")
    assert cifar.layers[4].out_shape == (16 * 8 * 8,)
    assert mnist.input_shape == (1, 28, 28)
    assert mnist.layers[4].out_shape == (16 * 7 * 7,)
    check(mnist)


def test_extends_overrides_and_merges_vars(write):
    write("base.yaml", """
        dataset: cifar10
        vars: {w: 8, p: 0.1}
        recipe: adam
        layers: [conv: $w, relu, dropout: $p, gap, flatten, linear: classes]
    """)
    child = archspec.load_spec(write("child.yaml", """
        extends: base.yaml
        name: child
        recipe: sgd
        vars: {w: 32}
    """))
    assert child.name == "child" and child.recipe == "sgd"
    assert child.layers[0].options["out"] == 32
    assert child.layers[2].options["p"] == 0.1


def test_residual_projection_and_resblock_counts(write):
    spec = archspec.load_spec(write("res.yaml", """
        input: [16, 8, 8]
        classes: 10
        layers:
          - residual: {layers: [conv: {out: 32, stride: 2}, bn, relu, conv: 32, bn]}
          - resblock: {out: 64, stride: 2}
          - resblock: {convs: 1, bias: true}
          - gap
          - flatten
          - linear: classes
    """))
    model, _ = check(spec)
    # projection shortcut: 1x1 conv (16->32, no bias) + bn
    assert n_params(model.residual1.shortcut) == 16 * 32 + 64
    # torchvision-style BasicBlock with projection: 2 convs + 2 bn + 1x1 conv + bn
    assert n_params(model.resblock1) == 32 * 64 * 9 + 128 + 64 * 64 * 9 + 128 + 32 * 64 + 128


def test_gated_parallel(write):
    spec = archspec.load_spec(write("g.yaml", """
        input: [3, 16, 16]
        classes: 4
        layers:
          - parallel: {merge: gated, times: 3, layers: [conv: 8, relu, pool: 2]}
          - bn
          - gap
          - flatten
          - linear: classes
    """))
    model, _ = check(spec)
    gate = model.parallel1.gate
    assert (gate.in_features, gate.out_features) == (3, 3)


def test_trainable_false_freezes(write):
    spec = archspec.load_spec(write("f.yaml", """
        input: [3, 8, 8]
        classes: 2
        layers: [conv: {out: 4, trainable: false}, flatten, linear: classes]
    """))
    s = archspec.summarize(spec)
    assert s.total_params - s.trainable_params == 3 * 4 * 9 + 4


def test_codegen_builds_identical_model(write):
    spec = archspec.load_spec(write("c.yaml", """
        dataset: cifar10
        layers:
          - conv: {out: 8, name: stem}
          - resblock: 16
          - residual: {layers: [conv: 16, bn]}
          - parallel: {merge: gated, times: 2, layers: [conv: 8, relu]}
          - pool: 2
          - flatten
          - dropout: 0.2
          - linear: classes
    """))
    from archspec.codegen import to_pytorch

    namespace: dict = {}
    exec(compile(to_pytorch(spec), "generated.py", "exec"), namespace)  # noqa: S102 - our own generated code
    plain = namespace["build_model"]()
    ours = archspec.build_model(spec)
    plain.load_state_dict(ours.state_dict())
    ours.eval()
    plain.eval()
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(ours(x), plain(x))


def test_custom_module_needs_opt_in(write):
    path = write("m.yaml", """
        input: [4]
        classes: 4
        layers: [module: {import: "torch.nn:Tanh"}]
    """)
    with pytest.raises(archspec.ArchspecError, match="--allow-import"):
        archspec.load_spec(path)
    spec = archspec.load_spec(path, allow_import=True)
    check(spec)


def test_conv_padding_same_even_kernel_and_stride(write):
    spec = archspec.load_spec(write("p.yaml", """
        input: [3, 15, 15]
        classes: 2
        layers:
          - conv: {out: 4, kernel: 4}
          - conv: {out: 4, kernel: 3, stride: 2}
          - conv: {out: 4, kernel: 3, padding: valid}
          - flatten
          - linear: classes
    """))
    assert [n.out_shape for n in spec.layers[:3]] == [(4, 15, 15), (4, 8, 8), (4, 6, 6)]
    check(spec)
