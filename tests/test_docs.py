"""The docs' examples are real: every full spec in docs/*.md loads and `# params: N` holds, every
`$ archspec` line of the CLI guide exits 0, and every Python block of docs/*.md and the README runs."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

import archspec

from .conftest import ROOT

DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"```yaml\n(.*?)```", re.S)


def spec_examples():
    for doc in DOCS:
        for i, block in enumerate(FENCE.findall(doc.read_text())):
            data = yaml.safe_load(block)
            if isinstance(data, dict) and "layers" in data:
                yield pytest.param(block, id=f"{doc.name}#{i}")


@pytest.mark.parametrize("block", list(spec_examples()))
def test_doc_spec_example_loads_and_counts(block, tmp_path):
    path = tmp_path / "example.yaml"
    path.write_text(block)
    spec = archspec.load_spec(path)
    summary = archspec.summarize(spec)
    m = re.search(r"#\s*params:\s*([\d_,]+)", block)
    if m:
        assert summary.total_params == int(m.group(1).replace(",", "").replace("_", ""))


def test_spec_language_doc_lists_every_kind():
    from archspec.layers import REGISTRY

    text = (ROOT / "docs" / "spec-language.md").read_text()
    for kind in REGISTRY:
        assert f"`{kind}`" in text, f"docs/spec-language.md does not document `{kind}`"


def test_shipped_json_schema_matches_registry():
    import json

    from archspec.spec.schema import full_schema

    shipped = json.loads((ROOT / "archspec" / "spec" / "spec.schema.json").read_text())
    assert shipped == json.loads(json.dumps(full_schema())), (
        "regenerate: python -m archspec.spec.schema > archspec/spec/spec.schema.json")


def test_specs_validate_against_shipped_json_schema():
    """The editor schema accepts every shipped spec (it is not the checker, but it must not lie)."""
    import json

    from jsonschema import Draft202012Validator

    schema = json.loads((ROOT / "archspec" / "spec" / "spec.schema.json").read_text())
    validator = Draft202012Validator(schema)
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, f"{path.name}: {errors[0].message}"


def console_commands():
    for doc in [ROOT / "docs" / "cli.md"]:  # the CLI guide's console blocks are all runnable
        for block in re.findall(r"```console\n(.*?)```", doc.read_text(), re.S):
            for line in block.splitlines():
                if line.startswith("$ archspec "):
                    yield pytest.param(line[2:], id=f"{doc.name}: {line[11:60]}")


@pytest.mark.parametrize("command", list(console_commands()))
def test_doc_console_examples_run(command, tmp_path, monkeypatch):
    """Each `$ archspec ...` line in a docs console block exits 0 (runs go to a temp dir)."""
    import shlex

    from typer.testing import CliRunner

    from archspec.cli import app

    monkeypatch.chdir(ROOT)
    args = shlex.split(command)[1:]
    if args[0] == "train":
        args += ["--runs-dir", str(tmp_path / "runs"), "--device", "cpu"]
    if args[0] == "lr-find":  # its plot goes to the temp dir too (the last -o counts)
        args += ["-o", str(tmp_path / "lr_find.png"), "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


# --- Python blocks --------------------------------------------------------------------------------------------
#
# Every ```python block of docs/*.md and README.md runs, as written, in a temp dir holding the repo's specs.
# A block that is a fragment (it uses a model or a loader the prose describes) gets a prelude defining those
# names; a block that needs data the tests cannot have (CIFAR-10, a GPU) or that would take minutes gets
# explicit substitutions. Each substitution must match the block's text, so a doc edit that makes one stale
# fails here instead of silently testing something else. A block with neither is run untouched.

PY_FENCE = re.compile(r"```python\n(.*?)```", re.S)

PRELUDES = {
    "data.md": "epochs = 2\n",
    "experiments.md": """
        import torch
        import archspec
        from archspec.experiments.export import export_model
        spec = archspec.load_spec("specs/mnist_quick.yaml")
        torch.save({"model": archspec.build_model(spec).state_dict()}, "weights.pt")
        export_model(spec, "weights.pt")   # writes mnist_quick.torchscript.pt, as `archspec export` does
        """,
    "performance.md": """
        import torch
        device, batch_seed, epoch = "cpu", 7, 0
        images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
        index = torch.randperm(32)[:8]
        mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
        """,
    "recipes.md": """
        import archspec
        from archspec.data.loader import make_loaders
        model = archspec.build_model(archspec.load_spec("specs/mnist_quick.yaml"))
        train_loader = make_loaders("mnist-mini", input_shape=(1, 28, 28), num_classes=10, batch_size=64,
                                    limit_train=256, limit_test=64).train
        """,
}

# (old, new) pairs: no CIFAR-10 download, no GPU, and a few hundred images instead of 6,000.
SUBSTITUTIONS = {
    "data.md": [('"cifar10"', '"synthetic"'), ('device="cuda"', 'device="cpu", limit_train=256, limit_test=128')],
    "training.md#2": [('epochs=2), device="cpu"', 'epochs=1), device="cpu", limit_train=256, limit_test=128')],
    "training.md#3": [("limit_train=512, limit_test=128", "limit_train=256, limit_test=64")],
    "spec-language.md": [('archspec.load_torchvision_weights(model, "resnet18")  # torchvision', "#")],  # offline
}

# What each block must leave behind (beyond not raising): the names it promises its reader.
EXPECTED = {
    "data.md": lambda ns: ns["x"].dtype.is_floating_point and ns["y"].dtype is __import__("torch").int64,
    "experiments.md": lambda ns: tuple(ns["logits"].shape) == (8, 10),
    "performance.md": lambda ns: tuple(ns["x"].shape) == (8, 3, 32, 32) and ns["x"].dtype.is_floating_point,
    "recipes.md": lambda ns: ns["interval"] in ("batch", "epoch") and Path("lr.svg").stat().st_size > 0,
    # TensorBoard holds one test accuracy per epoch, and MLflow the run's best of them.
    "training.md#0": lambda ns: ns["result"].status == "completed"
    and [round(e.value, 6) for e in ns["events"].Scalars("epoch/test_acc")]
    == [round(m["test_acc"], 6) for m in ns["result"].metrics]
    and abs(ns["client"].get_run(ns["record"]["run_id"]).data.metrics["final/best_test_acc"]
            - ns["result"].best_test_acc) < 1e-6,
    # lr 1e-9: nothing improves after epoch 1, so patience 2 stops the 10-epoch run after epoch 3.
    "training.md#1": lambda ns: (ns["result"].status, ns["result"].epochs_completed) == ("completed", 3)
    and ns["result"].summary["early_stop"]["stopped_epoch"] == 3
    and ns["result"].message.startswith("early stop after epoch 3"),
    "training.md#2": lambda ns: ns["result"].status == "completed" and (ns["result"].run_dir / "best.pt").exists(),
    "training.md#3": lambda ns: ns["result"].status == "completed",
    "README.md": lambda ns: sum(p.numel() for p in ns["model"].parameters()) == 127_055_370,
    "spec-language.md": lambda ns: __import__("torch").equal(ns["model"].conv1.weight, ns["theirs"].conv1.weight),
}


def python_blocks():
    for doc in [*DOCS, ROOT / "README.md"]:
        blocks = PY_FENCE.findall(doc.read_text())
        for i, block in enumerate(blocks):
            key = doc.name if len(blocks) == 1 else f"{doc.name}#{i}"
            yield pytest.param(doc.name, key, block, id=key)


def _adapted(doc: str, key: str, block: str) -> str:
    for old, new in SUBSTITUTIONS.get(key, []):
        assert old in block, f"{key}: the test substitutes {old!r}, which the block no longer contains"
        block = block.replace(old, new)
    return textwrap.dedent(PRELUDES.get(key, "")) + block


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # experiments.md loads a TorchScript file
@pytest.mark.parametrize(("doc", "key", "block"), list(python_blocks()))
def test_doc_python_block_runs(doc, key, block, tmp_path, monkeypatch):
    (tmp_path / "specs").symlink_to(ROOT / "specs", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    exec(compile(_adapted(doc, key, block), f"{doc} python block", "exec"), namespace)  # noqa: S102 - our docs
    assert EXPECTED[key](namespace), f"{key} ran but did not produce what the docs say"


def test_every_python_block_has_an_expectation():
    keys = {p.values[1] for p in python_blocks()}
    assert keys == set(EXPECTED), "add the new block to EXPECTED (and PRELUDES/SUBSTITUTIONS if it needs them)"
    assert set(PRELUDES) | set(SUBSTITUTIONS) <= keys, "a prelude or substitution for a block that is gone"
