"""specs/torchvision/: one spec per torchvision classifier, equal to it in count and in function.

For every spec: its parameter count equals `torchvision.models.<name>()` (default arguments:
1000 classes, 224x224), and after `load_torchvision_weights` maps a randomly initialised
torchvision model's state_dict onto the archspec model, both give the same logits on a random
batch in eval mode (fp32, max abs difference < 1e-5). No download: random weights. The heavy
networks run in the slow suite; every count runs in the fast one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import archspec
from archspec.errors import ArchspecError
from archspec.weights import RULES, load_torchvision_weights

SPECS = Path(__file__).resolve().parents[1] / "specs" / "torchvision"
BUILDERS = sorted(p.stem for p in SPECS.glob("*.yaml"))
# The list.
REQUIRED = [
    "resnet18", "resnet34", "resnet50", "wide_resnet50_2", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "alexnet",
    "squeezenet1_0", "densenet121", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
    "regnet_y_400mf", "shufflenet_v2_x1_0", "convnext_tiny", "vit_b_16", "swin_t",
]
SLOW = {"vit_b_16", "wide_resnet50_2", "vgg16", "vgg16_bn", "vgg11", "vgg11_bn", "alexnet", "swin_t"}
# Everything else pools adaptively: a 64x64 batch is enough. Swin at 112: stages of 28, 14, 7 and 4
# pixels, so shifted windows with their masks and a padded last stage are all exercised.
IMAGE = {"vit_b_16": 224, "swin_t": 112}


def torchvision_model(name: str, device: str = "cpu"):
    from torchvision.models import get_model

    if name.startswith("regnet"):  # its builder computes widths with tensors: no meta device
        device = "cpu"
    with torch.device(device):
        return get_model(name)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_listed_builder_has_a_spec_and_a_mapping():
    assert set(REQUIRED) <= set(BUILDERS), sorted(set(REQUIRED) - set(BUILDERS))
    assert set(BUILDERS) <= set(RULES)


@pytest.mark.parametrize("name", BUILDERS)
def test_count_and_macs_equal_torchvision(name):
    """Parameters exactly; MACs within 1% of what torch's FlopCounterMode counts on torchvision's
    model (they come out equal: the analytic counts and the counter agree)."""
    spec = archspec.load_spec(SPECS / f"{name}.yaml")
    assert spec.name == name and spec.input_shape == (3, 224, 224) and spec.num_classes == 1000
    summary = archspec.summarize(spec)
    ref = torchvision_model(name, "meta").eval()
    assert summary.total_params == n_params(ref)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        ref(torch.empty(1, 3, 224, 224, device=next(ref.parameters()).device))
    assert abs(summary.macs - counter.get_total_flops() / 2) <= 0.01 * summary.macs


def _unsettle(model) -> None:
    """Torchvision initialises some tensors to constants (BN weight 1 / bias 0 / running stats,
    ConvNeXt's layer scale 1e-6, ViT's zero class token and head): spread them out so that a
    tensor copied to the wrong place changes the output."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if not t.is_floating_point() or t.numel() < 2 or not torch.all(t == t.flatten()[0]):
                continue
            noise = torch.rand(t.shape, generator=g)
            if key.endswith("layer_scale"):
                t.copy_(0.1 + 0.4 * noise)
            elif key.endswith(("running_var", "weight")) and t.flatten()[0] == 1:
                t.copy_(0.5 + noise)
            else:
                t.add_(0.2 * (noise - 0.5))


def logit_difference(name: str) -> float:
    torch.manual_seed(0)
    ref = torchvision_model(name).eval()
    _unsettle(ref)
    spec = archspec.load_spec(SPECS / f"{name}.yaml")
    model = archspec.build_model(spec, device="meta").to_empty(device="cpu").eval()  # every tensor is loaded
    assert load_torchvision_weights(model, name, ref.state_dict()) == []
    size = IMAGE.get(name, 64)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, theirs = model(x), ref(x)
    assert theirs.std() > 1e-3  # logits that vary: a real signal, not a collapsed network
    return (ours - theirs).abs().max().item()


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in BUILDERS])
def test_logits_equal_torchvision_after_weight_mapping(name):
    assert logit_difference(name) < 1e-5


def test_a_wrong_mapping_is_refused_in_one_line():
    spec = archspec.load_spec(SPECS / "resnet18.yaml")
    model = archspec.build_model(spec, device="meta")
    theirs = torchvision_model("resnet34", "meta").state_dict()
    with pytest.raises(ArchspecError, match="keys have no place in the archspec model, first: layer1.2"):
        load_torchvision_weights(model, "resnet18", theirs)


def test_fine_tuning_keeps_a_new_classifier(tmp_path):
    spec = archspec.load_spec(SPECS / "resnet18.yaml", dataset="synthetic")
    model = archspec.build_model(spec)
    ref = torchvision_model("resnet18")
    head = model.linear1.weight.clone()
    skipped = load_torchvision_weights(model, "resnet18", ref, skip_mismatched=True)
    assert skipped == ["linear1.weight", "linear1.bias"]
    assert torch.equal(model.linear1.weight, head)
    assert torch.equal(model.conv1.weight, ref.conv1.weight)
    with pytest.raises(ArchspecError, match=r"torchvision resnet18: linear1.weight is \[10, 512\] but fc.weight is \[1000, 512\]"):
        load_torchvision_weights(model, "resnet18", ref)


def test_vit_attention_macs_match_flop_counter_on_torchvision(cli):
    """`archspec count` prints attention MACs within 1% of FlopCounterMode's count of torchvision's
    own ViT-B/16 (they are equal: both come from the same counter), and the total too."""
    import json

    result = cli("count", SPECS / "vit_b_16.yaml", "--json")
    assert result.exit_code == 0, result.output
    counted = json.loads(result.output)
    ours = sum(r["macs"] for r in counted["layers"] if r["kind"].startswith("attention"))
    with torch.device("meta"):
        ref = torchvision_model("vit_b_16", "meta").eval()
        counter = FlopCounterMode(display=False)
        with counter:
            ref(torch.empty(1, 3, 224, 224))
    per_module = counter.get_flop_counts()
    theirs = sum(sum(per_module[k].values()) for k in per_module if k.endswith("self_attention")) / 2
    assert theirs > 6e9 and abs(ours - theirs) <= 0.01 * theirs
    assert abs(counted["macs"] - counter.get_total_flops() / 2) <= 0.01 * counted["macs"]


def test_cli_train_starts_from_torchvision_weights(tmp_path, cli):
    """`archspec train --weights FILE` fine-tunes from a torchvision state_dict: the network starts
    as torchvision's, the classifier for the new classes starts fresh."""
    ref = torchvision_model("squeezenet1_0")
    torch.save(ref.state_dict(), tmp_path / "squeezenet.pth")
    recipe = tmp_path / "still.yaml"
    recipe.write_text("name: still\nepochs: 1\nbatch_size: 8\noptimizer: {name: sgd, lr: 1.0e-12}\nseed: 1\n")
    runs = tmp_path / "runs"
    result = cli("train", SPECS / "squeezenet1_0.yaml", "--data", "synthetic", "--recipe", recipe, "--weights",
                 tmp_path / "squeezenet.pth", "--limit-train", "8", "--limit-test", "8", "--device", "cpu",
                 "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    (run,) = runs.iterdir()
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)["model"]
    assert torch.allclose(state["features.conv1.weight"], ref.features[0].weight, atol=1e-6)
    assert state["classifier.conv1.weight"].shape == (10, 512, 1, 1)

    bad = cli("train", SPECS / "resnet18.yaml", "--data", "synthetic", "--weights", tmp_path / "nope.pth",
              "--runs-dir", runs)
    assert bad.exit_code == 2 and "nope.pth: --weights takes" in bad.output


# Networks whose kinds came with this spec set; the others are the kinds test_memory checks.
MEMORY_FAST = {"mobilenet_v3_small", "shufflenet_v2_x1_0", "efficientnet_b0", "convnext_tiny", "vit_b_16", "swin_t"}


# bf16 everywhere (the case with autocast's casts and fp32 promotion); fp32 for the transformers.
MEMORY_CASES = [*((n, "bf16") for n in BUILDERS), ("vit_b_16", "fp32"), ("swin_t", "fp32")]


@pytest.mark.parametrize(("name", "precision"), [c if c[0] in MEMORY_FAST else pytest.param(*c, marks=pytest.mark.slow)
                                                 for c in MEMORY_CASES])
def test_training_memory_estimate_keeps_what_autograd_keeps(name, precision):
    """The activations archspec/memory.py says a CPU training step keeps for backward (batch 2,
    224x224) are, to the byte, what autograd saves in the forward (fake tensors: no memory or
    compute spent)."""
    from archspec.memory import Setup, estimate_memory

    try:
        from tests import memory_probe as probe
    except ImportError:
        import memory_probe as probe

    spec = archspec.load_spec(SPECS / f"{name}.yaml")
    estimate = estimate_memory(spec, archspec.build_model(spec, device="meta"), Setup(2, "cpu", precision))
    loss = 2 * 1000 * 4  # the loss's fp32 log-probabilities: not the model's
    assert estimate.activation_bytes - loss == probe.forward_kept_bytes(spec, 2, "cpu", precision)
