"""The shipped specs (specs/*.yaml) against plain-PyTorch ground truth (tests/reference_models.py).

For every spec: archspec's count equals the reference count (and the published one where a report
gives it), the built model really has that many parameters, and it produces the reference's output
shape. For the nets that are cheap to build, the archspec model is also shown to compute the same
function: the reference's weights (and BN statistics) are copied in by position and the outputs
compared in eval mode.

Reference models are built on the meta device when only their shapes matter, so the 127M/135M
parameter variants cost nothing there; the archspec model of each big variant is built for real
once (marked slow).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import archspec

try:  # tests/ as a package, or (pytest's default rootdir-less import mode) as a plain directory
    from tests import reference_models as ref
except ImportError:
    import reference_models as ref

SPECS = Path(__file__).resolve().parents[1] / "specs"
SPEC_NAMES = sorted(p.stem for p in SPECS.glob("*.yaml"))
from archspec.recipes import builtin_names  # noqa: E402

RECIPES = set(builtin_names())

# Variants 4 and 5 are variant 2's network: their archspec models are built on the meta device
# (shapes and counts only) so the 127M-parameter network is materialised once, for variant 2.
META_BUILD = {"variant4", "variant5"}
HEAVY = {"variant2", "variant3"}
# Nets whose archspec model must compute exactly the reference's function given its weights.
SAME_FUNCTION = [
    "c5l3", "variant1", "adaptive_block", "tutorial", "linear", "mlp", "mlp_norelu", "mlp_tanh",
    "mynet", "mynet500", "vgg_a", "vgg_a_bn", "resnet18", "mnist_quick",
]


def spec_path(name: str) -> Path:
    return SPECS / f"{name}.yaml"


def reference_count(name: str) -> int:
    builder, _ = ref.REFERENCES[name]
    with torch.device("meta"):
        return ref.count(builder())


def reference_output_shape(builder, input_shape, batch: int = 2) -> tuple[int, ...]:
    with torch.device("meta"):
        model = builder().eval()
        return tuple(model(torch.empty(batch, *input_shape)).shape)


def build_params():
    return [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in SPEC_NAMES]


def test_every_shipped_spec_has_a_reference_model():
    assert SPEC_NAMES, "no specs found"
    assert set(SPEC_NAMES) == set(ref.REFERENCES)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_spec_metadata(name):
    spec = archspec.load_spec(spec_path(name))
    assert spec.name == name
    assert spec.recipe in RECIPES
    description = spec.resolved.get("description", "")
    assert isinstance(description, str) and len(description) > 40


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_count_matches_reference(name):
    spec = archspec.load_spec(spec_path(name))
    total = archspec.summarize(spec).total_params
    assert total == reference_count(name)
    if name in ref.PUBLISHED:
        assert total == ref.PUBLISHED[name]


@pytest.mark.parametrize("name", build_params())
def test_built_model_matches_count_and_output_shape(name):
    spec = archspec.load_spec(spec_path(name))
    builder, input_shape = ref.REFERENCES[name]
    assert tuple(spec.input_shape) == input_shape
    device = "meta" if name in META_BUILD else "cpu"
    with torch.device(device):
        model = archspec.build_model(spec).eval()
        x = torch.randn(2, *input_shape)
        with torch.no_grad():
            out = model(x)
    assert sum(p.numel() for p in model.parameters()) == archspec.summarize(spec).total_params
    assert tuple(out.shape) == reference_output_shape(builder, input_shape) == (2, spec.num_classes)


def _randomise(model: nn.Module, seed: int) -> None:
    """Give every parameter and BN statistic a distinctive value, so a copy in the wrong place shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.mark.parametrize("name", SAME_FUNCTION)
def test_same_function_as_reference(name):
    builder, input_shape = ref.REFERENCES[name]
    torch.manual_seed(0)
    reference = builder()
    _randomise(reference, seed=1)
    model = archspec.build_model(archspec.load_spec(spec_path(name)))

    ref_items = list(reference.state_dict().items())
    our_items = list(model.state_dict().items())
    assert len(ref_items) == len(our_items)
    mapped = {}
    for (ref_key, ref_t), (our_key, our_t) in zip(ref_items, our_items, strict=True):
        assert ref_t.shape == our_t.shape, f"{ref_key} {tuple(ref_t.shape)} vs {our_key} {tuple(our_t.shape)}"
        mapped[our_key] = ref_t
    model.load_state_dict(mapped, strict=True)

    reference.eval()
    model.eval()
    x = torch.randn(4, *input_shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference(x)
        got = model(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_variant5_retargeted_to_mnist():
    """`--data mnist`: 1x28x28 input, pools 28 -> 14 -> 7 -> 3, so the head sees 1024*3*3."""
    spec = archspec.load_spec(spec_path("variant5"), dataset="mnist")
    assert tuple(spec.input_shape) == (1, 28, 28)
    assert spec.num_classes == 10
    with torch.device("meta"):
        expected = ref.count(ref.variant2_mnist())
    assert expected == 112_370_698
    assert archspec.summarize(spec).total_params == expected
    with torch.device("meta"):
        model = archspec.build_model(spec).eval()
        out = model(torch.empty(2, 1, 28, 28))
    assert sum(p.numel() for p in model.parameters()) == expected
    assert tuple(out.shape) == (2, 10)


def test_extending_specs_only_override_what_they_say():
    """variant4/5 change name, description and recipe of variant2; nothing else."""
    base = archspec.load_spec(spec_path("variant2")).resolved
    for name in ("variant4", "variant5"):
        raw = yaml.safe_load(spec_path(name).read_text())
        assert set(raw) == {"extends", "name", "description", "recipe"}
        resolved = archspec.load_spec(spec_path(name)).resolved
        differing = {k for k in set(base) | set(resolved) if base.get(k) != resolved.get(k)}
        assert differing <= {"name", "description", "recipe", "extends"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["specs/c5l3.yaml"], ref.PUBLISHED["c5l3"]),
        (["specs/mynet500.yaml"], ref.PUBLISHED["mynet500"]),
        (["specs/variant5.yaml", "--data", "mnist"], 112_370_698),
    ],
)
def test_cli_count_prints_the_exact_count(args, expected):
    from typer.testing import CliRunner

    from archspec.cli import app

    args = [str(SPECS.parent / args[0]), *args[1:]]
    result = CliRunner().invoke(app, ["count", *args])
    assert result.exit_code == 0, result.output
    assert f"{expected:,}" in result.output or str(expected) in result.output
