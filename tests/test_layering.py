"""Where code lives: the spec layer stands on its own, per-kind knowledge stays in archspec/layers,
and the spec/layers/compile/codegen/summary functions stay short enough to read on one screen."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from archspec.errors import ArchspecError
from archspec.layers import REGISTRY
from archspec.spec.schema_check import check_schema

PACKAGE = Path(__file__).resolve().parents[1] / "archspec"
MAX_FUNCTION_LINES = 60
SHORT_FUNCTIONS = ["spec", "layers", "compile.py", "codegen.py", "summary.py", "catalog.py", "train"]


def _modules(*parts: str) -> list[Path]:
    out = []
    for part in parts:
        path = PACKAGE / part
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


def _imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_spec_modules_never_import_data():
    offenders = [f"{path.name}: {name}" for path in _modules("spec")
                 for name in _imported(ast.parse(path.read_text())) if name.startswith("archspec.data")]
    assert offenders == []


def test_loading_a_named_dataset_spec_imports_neither_data_nor_torch():
    code = (
        "import sys, archspec\n"
        "spec = archspec.load_spec('specs/variant2.yaml', dataset='mnist')\n"
        "assert spec.input_shape == (1, 28, 28), spec.input_shape\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('archspec.data'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)


def _kind_branches(tree: ast.AST) -> list[int]:
    """Lines comparing something's `.kind` with a layer kind's name."""
    def names(node) -> set:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return set().union(*(names(e) for e in node.elts))
        return set()

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Attribute) and o.attr == "kind" for o in operands) and \
                    any(names(o) & set(REGISTRY) for o in operands):
                lines.append(node.lineno)
    return lines


def test_no_branch_on_a_layer_kind_name_outside_layers():
    offenders = [f"{path.relative_to(PACKAGE)}:{line}" for path in _modules(".")
                 if "layers" not in path.relative_to(PACKAGE).parts
                 for line in _kind_branches(ast.parse(path.read_text()))]
    assert offenders == []


def test_the_check_itself_finds_a_kind_branch():
    assert _kind_branches(ast.parse("if node.kind in ('pool', 'maxpool'):\n    pass\n")) == [1]
    assert _kind_branches(ast.parse("if step.kind == 'onecycle':\n    pass\n")) == []


def test_functions_fit_on_a_screen():
    long = []
    for path in _modules(*SHORT_FUNCTIONS):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


def test_check_schema_reports_through_the_callers_locator():
    schema = {"type": "object", "properties": {"size": {"type": "integer", "minimum": 1}},
              "additionalProperties": False}
    seen = []

    def error_at(path, message):
        seen.append((path, message))
        return ArchspecError(message, path=".".join(map(str, path)))

    check_schema({"size": 3}, schema, error_at)
    assert seen == []
    with pytest.raises(ArchspecError, match=r"^size: must be >= 1, got 0$"):
        check_schema({"size": 0}, schema, error_at)
    assert seen == [(("size",), "must be >= 1, got 0")]
    # `choose` picks among several violations (recipes prefer typos)
    with pytest.raises(ArchspecError, match='unknown key "sise"'):
        check_schema({"size": 0, "sise": 1}, schema, error_at,
                     choose=lambda errors: next(e for e in errors if e.validator == "additionalProperties"))
