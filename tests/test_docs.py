"""The docs' YAML examples are real: every full spec in docs/*.md loads, and `# params: N` holds."""

from __future__ import annotations

import re

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
