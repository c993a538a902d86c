"""A new layer kind is one class: register a composite and a leaf kind here, in the test, and
every consumer (loader, resolved spec, build, counts, table labels, code generation, freezing)
must handle them with no change anywhere else."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

import archspec
from archspec.codegen import to_pytorch
from archspec.layers import REGISTRY
from archspec.layers.base import POS_INT, LayerKind, register
from archspec.layers.composite import LAYER_LIST, Composite


class TwoBranches(nn.Module):
    """out = left(x) + right(x), with the branches under attributes `left` and `right`."""

    def __init__(self, left: nn.Module, right: nn.Module):
        super().__init__()
        self.left = left
        self.right = right

    def forward(self, x):
        return self.left(x) + self.right(x)


class Branches(Composite):
    name = "branches"
    summary = "left + right"
    options = {"left": LAYER_LIST, "right": LAYER_LIST, "gain": {**POS_INT, "default": 1}}
    required = ("left", "right")
    layer_lists = ("left", "right")

    def child_lists(self, o):
        return [(("left",), o["left"]), (("right",), o["right"])]

    def child_paths(self, count):
        return ["left", "right"]

    def write_children(self, o, groups):
        return {**{k: v for k, v in o.items() if k not in self.layer_lists}, "left": groups[0], "right": groups[1]}

    def label(self, o, shape, written):
        return f"branches gain {o['gain']}"

    def combine(self, o, shape, outs):
        return outs[0]

    def build_composite(self, o, shape, children, out):
        return TwoBranches(*children)

    def extra_macs(self, o, shape, out):
        return 1000 * o["gain"]

    def code_composite(self, o, shape, child_codes, out):
        return f"TwoBranches({child_codes[0]}, {child_codes[1]})"


class Double(LayerKind):
    name = "double"
    summary = "a bias-free 1x1 conv keeping the channels"
    main = "factor"
    options = {"factor": {"type": "number", "default": 2}}

    def output_shape(self, o, shape):
        return shape

    def build(self, o, shape):
        return nn.Conv2d(shape[0], shape[0], 1, bias=False)

    def macs(self, o, shape, out):
        return 7

    def code(self, o, shape):
        return f"nn.Conv2d({shape[0]}, {shape[0]}, 1, bias=False)"

    def tidy_options(self, o):
        o["factor"] = float(o["factor"])

    def name_stem(self, written):
        return "twice"


@pytest.fixture
def plugin_kinds():
    register(Branches)
    register(Double)
    try:
        yield
    finally:
        del REGISTRY["branches"], REGISTRY["double"]


SPEC = """
    input: [3, 8, 8]
    classes: 4
    vars: {w: 6}
    layers:
      - conv: $w
      - branches:
          gain: 3
          left: [conv: {out: $w, trainable: false}, double]
          right: [conv: {out: $w, kernel: 1}, bn]
      - double: 3
      - flatten
      - linear: classes
"""


def test_a_new_composite_kind_needs_no_change_outside_its_class(write, plugin_kinds):
    spec = archspec.load_spec(write("plug.yaml", SPEC))
    model = archspec.build_model(spec)
    names = dict(model.named_modules())
    assert isinstance(names["branches1"], TwoBranches)
    assert isinstance(names["branches1.left.conv1"], nn.Conv2d) and isinstance(names["branches1.right.bn1"],
                                                                                 nn.BatchNorm2d)
    assert "twice1" in names and "branches1.left.twice1" in names  # the kind's own name stem
    assert not names["branches1.left.conv1"].weight.requires_grad  # trainable: false inside a group

    summary = archspec.summarize(spec)
    rows = {row.name: row for row in summary.layers}
    assert rows["branches1"].kind == "branches gain 3" and rows["branches1"].index == "1"
    assert rows["branches1.left.conv1"].index == "1.0.0" and rows["branches1.right.bn1"].index == "1.1.1"
    assert rows["branches1.left.conv1"].depth == 1
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    frozen = sum(p.numel() for p in names["branches1.left.conv1"].parameters())
    assert summary.trainable_params == summary.total_params - frozen
    # the composite's own MACs plus each group's, the leaf kind's MACs from its class
    inner = sum(rows[f"branches1.{p}"].macs for p in ("left.conv1", "left.twice1", "right.conv1", "right.bn1"))
    assert rows["branches1"].macs == inner + 3000 and rows["twice1"].macs == 7


def test_a_new_kind_round_trips_through_the_resolved_spec(write, plugin_kinds):
    spec = archspec.load_spec(write("plug.yaml", SPEC))
    layers = spec.resolved["layers"]
    assert layers[1] == {"branches": {"gain": 3, "left": [{"conv": {"out": 6, "trainable": False}}, "double"],
                                      "right": [{"conv": {"out": 6, "kernel": 1}}, "bn"]}}
    again = archspec.load_spec(write("resolved.yaml", yaml.safe_dump(spec.resolved, sort_keys=False)))
    assert [n.module_name for n in again.walk()] == [n.module_name for n in spec.walk()]
    assert archspec.summarize(again).to_dict()["layers"] == archspec.summarize(spec).to_dict()["layers"]


def test_a_new_kind_gets_generated_code_and_freezing(write, plugin_kinds):
    spec = archspec.load_spec(write("plug.yaml", SPEC))
    code = to_pytorch(spec)
    assert "model.get_submodule('branches1.left.conv1')" in code
    namespace: dict = {"TwoBranches": TwoBranches}  # a helper the generated code calls, as modules.py's are
    exec(compile(code, "generated.py", "exec"), namespace)  # noqa: S102 - our own generated code
    plain = namespace["build_model"]()
    ours = archspec.build_model(spec)
    assert [(n, p.requires_grad) for n, p in plain.named_parameters()] == \
        [(n, p.requires_grad) for n, p in ours.named_parameters()]
    plain.load_state_dict(ours.state_dict())
    plain.eval()
    ours.eval()
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(plain(x), ours(x))


def test_kind_hooks_for_user_code_and_tidy_values(write, plugin_kinds):
    spec = archspec.load_spec(write("plug.yaml", SPEC))
    node = spec.layers[2]
    assert node.module_name == "twice1"
    assert node.options["factor"] == 3.0 and isinstance(node.options["factor"], float)
    assert spec.resolved["layers"][2] == {"double": 3.0}
    Double.runs_user_code = True
    try:
        where = r"plug\.yaml:8:\d+: layers\[1\]\.branches\.left\[1\]: custom modules"
        with pytest.raises(archspec.ArchspecError, match=where):
            archspec.load_spec(write("plug.yaml", SPEC))
        assert archspec.load_spec(write("plug.yaml", SPEC), allow_import=True).num_classes == 4
    finally:
        Double.runs_user_code = False
