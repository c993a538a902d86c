"""Training memory (archspec/memory.py) against what torch really holds.

Each kind's `saved` answer is compared with autograd's saved tensors, on the CPU and on CUDA's code
paths (fake CUDA tensors), in fp32 and bf16 autocast; whole training steps of three specs of
different shapes are compared with the peak torch's MemTracker measures for archspec's own
`train_step` (and with `torch.cuda.max_memory_allocated` on a GPU, when there is one).
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from torch._subclasses.fake_tensor import FakeTensorMode

import archspec
from archspec.layers import REGISTRY
from archspec.layers.base import LayerKind
from archspec.memory import (
    Setup,
    compute_itemsize,
    estimate_memory,
    input_copy_itemsize,
    own_bytes,
    resolve_precision,
)
from archspec.recipes import load_recipe
from archspec.recipes.build import optimizer_memory

from . import memory_probe as probe
from .conftest import ROOT

LEAF_KINDS = sorted({impl.name for impl in REGISTRY.values() if not impl.composite})
# Kinds running scaled dot-product attention without a mask: fused kernels on the CPU and on GPUs,
# but fake CUDA tensors cannot pick a fused kernel and fall back to the unfused path.
UNFUSED_ON_FAKE_CUDA = {"attention", "encoder_block"}
BATCH = 3


def _one_layer(kind: str, tmp_path):
    """The kind's example as the only layer of a spec on an image (or, if it needs one, a flat or
    a token) input."""
    impl = REGISTRY[kind]
    for shape in ("[4, 6, 6]", "[12]", "[6, 8]"):
        path = tmp_path / "k.yaml"
        path.write_text(f"input: {shape}\nlayers:\n  - {impl.example}\n")
        try:
            return archspec.load_spec(path, allow_import=True).layers[0]
        except archspec.ArchspecError as e:
            if "needs" not in str(e):
                raise
    raise AssertionError(f"no input shape fits {kind}'s example")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("kind", LEAF_KINDS)
def test_every_kind_declares_what_autograd_saves(kind, device, precision, tmp_path):
    """A kind in the middle of a network (input needing grad, in the activation dtype) keeps
    exactly what it declares: its input, its output, and its own tensors to the byte."""
    if device == "cuda" and kind in UNFUSED_ON_FAKE_CUDA:
        pytest.skip("fake CUDA tensors take SDPA's unfused path (attention weights kept), which GPUs do not")
    node = _one_layer(kind, tmp_path)
    impl, o = node.impl, node.options
    declared = impl.saved(o, node.in_shape, node.out_shape, device)
    lowp = 2 if precision == "bf16" else None
    with FakeTensorMode():
        with torch.device(device):
            module = impl.build(o, node.in_shape)
            x = torch.randn(BATCH, *node.in_shape, dtype=torch.bfloat16 if lowp else torch.float32,
                            requires_grad=True)
        got = probe.saved_tensors(module, x, device, precision)
    if declared.alias or declared.view:
        assert got == probe.SavedTensors(False, False, 0)
        return
    act = compute_itemsize(declared, x.element_size(), lowp)
    copy = input_copy_itemsize(declared, x.element_size(), lowp)  # autocast keeps a cast copy instead
    assert (got.input, got.output) == (declared.input and not copy, declared.output)
    assert got.other_bytes == own_bytes(declared, BATCH, act, lowp, inp=x.element_size()) + (
        x.numel() * copy if copy else 0)


def test_a_kind_without_a_saved_method_is_assumed_to_keep_its_input():
    class Plain(LayerKind):
        name = "plain"

    assert Plain().saved({}, (3, 4, 4), (3, 4, 4), "cuda").input


# --- whole training steps ---------------------------------------------------------------------

CONV_BN_POOL = """
    name: conv_bn_pool
    dataset: cifar10
    recipe: adam
    layers:
      - conv: 32
      - bn
      - relu
      - pool: 2
      - conv: 64
      - bn
      - relu
      - pool: 2
      - dropout: 0.25
      - flatten
      - linear: 128
      - relu
      - dropout: 0.5
      - linear: classes
"""
MLP = """
    name: mlp
    dataset: mnist
    recipe: sgd
    layers:
      - flatten
      - linear: 512
      - relu
      - linear: 256
      - tanh
      - linear: classes
"""
RESIDUAL = """
    name: residual
    dataset: cifar10
    recipe: onecycle
    layers:
      - conv: {out: 32, bias: false}
      - bn
      - relu
      - resblock: 32
      - resblock: {out: 64, stride: 2}
      - residual: {layers: [conv: 64, bn, relu, conv: 64, bn]}
      - gap
      - flatten
      - linear: classes
"""
SPECS = {"conv_bn_pool": (CONV_BN_POOL, 64), "mlp": (MLP, 64), "residual": (RESIDUAL, 32)}


def _estimate(spec, recipe, batch, device, precision):
    model = archspec.build_model(spec, device="meta")
    setup = Setup(batch, device, precision, optimizer_memory(recipe.optimizer, device))
    return estimate_memory(spec, model, setup)


def _load(write, name):
    text, batch = SPECS[name]
    spec = archspec.load_spec(write(f"{name}.yaml", text))
    return spec, load_recipe(spec.recipe), batch


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_training_step_estimate_is_within_10_percent_of_the_measured_peak(name, precision, write):
    spec, recipe, batch = _load(write, name)
    measured = probe.step_peak(spec, recipe, batch, precision)
    estimate = _estimate(spec, recipe, batch, "cpu", precision)
    assert estimate.peak_bytes == pytest.approx(measured, rel=0.10), (estimate.peak_phase, measured)


def _kept_matches(spec, batch, device, precision):
    estimate = estimate_memory(spec, archspec.build_model(spec, device="meta"), Setup(batch, device, precision))
    loss = batch * spec.num_classes * 4  # the loss's log-probabilities: not part of the model
    measured = probe.forward_kept_bytes(spec, batch, device, precision)
    assert estimate.activation_bytes - loss == pytest.approx(measured, rel=0.01, abs=1)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_kept_activations_match_autograd_on_cuda_code_paths(name, precision, write):
    """The forward on fake CUDA tensors (fused dropout with bool masks, cuDNN batch norm, CUDA
    autocast) saves what the estimate for --device cuda counts as kept for backward."""
    spec, _, batch = _load(write, name)
    _kept_matches(spec, batch, "cuda", precision)


SHIPPED = sorted(p.name for p in (ROOT / "specs").glob("*.yaml") if p.name != "airbench.yaml")  # airbench: slow


@pytest.mark.parametrize(("device", "precision"), [("cuda", "bf16"), ("cpu", "fp32")])
@pytest.mark.parametrize("name", SHIPPED)
def test_kept_activations_of_every_shipped_spec_match_autograd(name, device, precision):
    _kept_matches(archspec.load_spec(ROOT / "specs" / name), 4, device, precision)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_training_step_estimate_on_a_real_gpu(name, precision, write):
    spec, recipe, batch = _load(write, name)
    measured = probe.cuda_step_peak(spec, recipe, batch, precision)
    estimate = _estimate(spec, recipe, batch, "cuda", precision)
    assert estimate.peak_bytes == pytest.approx(measured, rel=0.10), (estimate.peak_phase, measured)


# --- optimizer state and precision --------------------------------------------------------------

OPTIMIZERS = [
    {"name": "sgd", "lr": 0.1},
    {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
    {"name": "adam", "lr": 1e-3},
    {"name": "adam", "lr": 1e-3, "weight_decay": 1e-4, "amsgrad": True},
    {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01},
    {"name": "adagrad", "lr": 0.1},
    {"name": "rmsprop", "lr": 0.01, "momentum": 0.9, "centered": True},
]


@pytest.mark.parametrize("config", OPTIMIZERS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_optimizer_state_and_step_temporaries_match_torch(config, tmp_path):
    """State kept between steps and temporaries inside step(), measured on torch's CPU optimizers."""
    from torch import nn
    from torch.distributed._tools.mem_tracker import MemTracker

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "epochs": 1, "batch_size": 1, "optimizer": config}))
    recipe = load_recipe(str(path))
    expected = optimizer_memory(recipe.optimizer, "cpu")
    with FakeTensorMode():
        model = nn.Sequential(nn.Linear(300, 200), nn.Linear(200, 10))
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        optimizer = archspec.recipes.build.build_optimizer(recipe, model)
        tracker = MemTracker()
        tracker.track_external(model, optimizer)
        with tracker:
            optimizer.step()
            optimizer.step()
        state = tracker.get_tracker_snapshot("current")[torch.device("cpu")]
        peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    params = sum(p.numel() for p in model.parameters()) * 4
    opt = next(k for k in state if getattr(k, "value", None) == "Optstate")
    counters = 4 * len(list(model.parameters())) if expected.counters else 0
    assert state[opt] == expected.state * params + counters
    # torch's for-loop optimizers: temporaries of the largest parameter, one parameter at a time
    assert peak[opt] - state[opt] == pytest.approx(expected.scratch * 300 * 200 * 4, rel=0.01)


def test_estimate_precision_and_layout_rules_agree_with_training(write):
    from archspec.memory import _channels_last
    from archspec.train.device import resolve_precision as training_precision
    from archspec.train.device import wants_channels_last

    for name in ("conv_bn_pool", "mlp"):
        model = archspec.build_model(_load(write, name)[0], device="meta")
        for device in ("cpu", "cuda"):
            assert _channels_last(model, device) == wants_channels_last(model, torch.device(device))

    for device, names in (("cpu", ("auto", "fp32", "bf16")), ("cuda", ("auto", "fp32", "bf16", "fp16"))):
        for name in names:
            assert resolve_precision(name, device) == training_precision(name, torch.device(device)).name
    assert resolve_precision("auto", "cuda") == "bf16" and resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(archspec.ArchspecError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", "cpu")


def test_memory_grows_with_the_batch_but_weights_and_state_do_not(write):
    spec, recipe, _ = _load(write, "conv_bn_pool")
    small, big = (_estimate(spec, recipe, b, "cuda", "fp32") for b in (8, 16))
    assert small.params_bytes == big.params_bytes and small.optimizer_bytes == big.optimizer_bytes
    assert big.activation_bytes == 2 * small.activation_bytes - 2 * (32 + 64) * 4  # BN stats are per batch
    assert big.optimizer_bytes == 2 * big.grads_bytes + 4 * 12  # Adam: 2 per parameter, a counter per tensor (12)


def test_layers_before_the_first_trained_one_keep_nothing(write):
    """No graph exists before the first trainable layer: a frozen conv on the batch keeps nothing,
    and the ReLU after it keeps nothing; the trained conv keeps the ReLU's output for its weight
    gradient (counted where it was made, in the ReLU's row)."""
    spec = archspec.load_spec(write("frozen.yaml", """
        input: [3, 16, 16]
        classes: 4
        layers:
          - conv: {out: 8, trainable: false}
          - relu
          - conv: 8
          - flatten
          - linear: classes
    """))
    estimate = estimate_memory(spec, archspec.build_model(spec, device="meta"), Setup(4, "cpu", "fp32"))
    relu_out = 4 * 8 * 16 * 16 * 4
    assert estimate.layers == {"conv1": 0, "relu1": relu_out, "conv2": relu_out, "linear1": 0}
    assert estimate.batch_bytes == 4 * (3 * 16 * 16 * 4 + 8)
    loss = 4 * 4 * 4
    assert estimate.activation_bytes - loss == probe.forward_kept_bytes(spec, 4, "cpu", "fp32")


def test_bad_estimate_settings_are_one_line_errors(write):
    spec, recipe, _ = _load(write, "mlp")
    model = archspec.build_model(spec, device="meta")
    with pytest.raises(archspec.ArchspecError, match="batch size must be at least 1"):
        estimate_memory(spec, model, Setup(0))
    with pytest.raises(archspec.ArchspecError, match='device "tpu"'):
        estimate_memory(spec, model, Setup(2, "tpu"))
    assert json.loads(json.dumps(_estimate(spec, recipe, 2, "cuda", "auto").to_dict()))["precision"] == "bf16"


def test_kinds_with_no_memory_knowledge_get_the_defaults(write):
    """A plugin leaf kind keeps its input by default; a plugin composite's merge keeps nothing."""
    from archspec.layers.base import register
    from archspec.layers.composite import LAYER_LIST, Composite

    class Twice(LayerKind):
        name = "twice_mem"

        def build(self, o, shape):
            return torch.nn.Conv2d(shape[0], shape[0], 1)

    class Sum(Composite):
        name = "sum_mem"
        options = {"layers": LAYER_LIST}

        def combine(self, o, shape, outs):
            return outs[0]

        def build_composite(self, o, shape, children, out):
            return children[0]

    register(Twice)
    register(Sum)
    try:
        spec = archspec.load_spec(write("plug.yaml", """
            input: [2, 4, 4]
            classes: 3
            layers: [conv: 2, {sum_mem: {layers: [twice_mem, relu]}}, flatten, linear: classes]
        """))
        estimate = estimate_memory(spec, archspec.build_model(spec, device="meta"), Setup(5, "cpu", "fp32"))
    finally:
        del REGISTRY["twice_mem"], REGISTRY["sum_mem"]
    image = 5 * 2 * 4 * 4 * 4
    assert estimate.layers == {"conv1": image, "sum_mem1.twice_mem1": 0, "sum_mem1.relu1": image,
                               "sum_mem1": image, "linear1": 0}


# --- the count command ----------------------------------------------------------------------------


def test_count_prints_training_memory_for_a_batch_size(cli):
    result = cli("count", "specs/c5l3.yaml", "--batch-size", "32", "--device", "cpu")
    assert result.exit_code == 0, result.output
    spec = archspec.load_spec("specs/c5l3.yaml")
    estimate = _estimate(spec, load_recipe("adam"), 32, "cpu", "auto")
    from archspec.summary import human_bytes

    assert f"training memory at batch 32 (cpu, fp32, adam): peak {human_bytes(estimate.peak_bytes)}" in result.output
    assert f"saved for backward {human_bytes(estimate.activation_bytes)}" in result.output
    assert f"adam state {human_bytes(estimate.optimizer_bytes)}" in result.output


def test_count_json_carries_the_estimate_and_defaults_to_the_recipes_batch(cli, write):
    result = cli("count", "specs/c5l3.yaml", "--json")
    data = json.loads(result.output)
    memory = data["memory"]
    assert (memory["batch_size"], memory["device"], memory["precision"], memory["optimizer"]) == \
           (64, "cuda", "bf16", "adam")  # c5l3 names recipe adam: batch 64; CUDA's auto precision is bf16
    assert memory["peak_bytes"] == max(memory["forward_peak"], memory["backward_peak"], memory["step_peak"])
    top = [row for row in data["layers"] if row["depth"] == 0]
    loss = 64 * 10 * 4
    assert sum(row["saved_bytes"] for row in top) + loss == memory["activation_bytes"]
    conv = data["layers"][0]
    assert (conv["kind"], conv["kernel"], conv["input_shape"]) == ("conv", "3x3", [3, 32, 32])
    plain = json.loads(cli("count", write("s.yaml", "input: [4]\nclasses: 2\nlayers: [linear: classes]\n"),
                           "--json", "--precision", "fp32").output)
    assert plain["memory"]["batch_size"] == 64 and plain["memory"]["optimizer"] == "adam"  # like train: adam


@pytest.mark.parametrize("columns", [60, 80, 200, None])
def test_count_shows_every_number_whole_at_any_width(columns, cli, monkeypatch):
    from archspec.summary import human, human_bytes

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)  # piped: no width limit
    else:
        monkeypatch.setenv("COLUMNS", str(columns))
    result = cli("count", "specs/c5l3.yaml", "--batch-size", "128")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    if columns is not None:
        assert max(len(line) for line in lines) <= columns
    data = json.loads(cli("count", "specs/c5l3.yaml", "--batch-size", "128", "--json").output)
    tokens = set(result.output.replace("\n", "  ").split("  "))
    for row in data["layers"]:
        assert f"{row['params']:,}" in result.output
        if row["saved_bytes"]:
            assert human_bytes(row["saved_bytes"]).strip() in {t.strip() for t in tokens}
        if columns != 60 and row["macs"]:
            assert human(row["macs"]) in result.output
    memory = data["memory"]
    assert f"peak {human_bytes(memory['peak_bytes'])} in the forward" in result.output
    assert f"saved for backward {human_bytes(memory['activation_bytes'])}" in result.output


def test_the_docs_memory_example_is_the_real_output(cli, monkeypatch):
    """docs/cli.md shows `count specs/tutorial.yaml --batch-size 64 --device cpu` at 100 columns."""
    import re

    text = (ROOT / "docs" / "cli.md").read_text()
    section = text[text.index("## Training memory"):]
    shown = re.search(r"```text\n(.*?)```", section, re.S).group(1)
    monkeypatch.setenv("COLUMNS", "100")
    result = cli("count", "specs/tutorial.yaml", "--batch-size", "64", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert [line.rstrip() for line in result.output.splitlines()] == shown.rstrip("\n").splitlines()
