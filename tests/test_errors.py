"""Bad specs: every failure is one ArchspecError line `file:line:col: key.path: message`, exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

import archspec
from archspec.errors import ArchspecError

HEAD = "dataset: cifar10\nlayers:\n"

# (name, file text, expected "line:col", a fragment of the message)
CASES = [
    ("negative width", HEAD + "  - conv: -4\n  - flatten\n  - linear: classes\n", "3:11", "conv.out: must be >= 1"),
    ("zero kernel", HEAD + "  - conv: {out: 4, kernel: 0}\n  - flatten\n  - linear: classes\n", "3:28",
     "conv.kernel: must be >= 1"),
    ("typo option", HEAD + "  - conv: {out: 8, kernal: 3}\n  - flatten\n  - linear: classes\n", "3:20",
     'did you mean "kernel"'),
    ("unknown kind", HEAD + "  - cnv: 8\n  - flatten\n  - linear: classes\n", "3:5", 'did you mean "conv"'),
    ("unknown bare kind", HEAD + "  - rleu\n  - flatten\n  - linear: classes\n", "3:5", 'did you mean "relu"'),
    ("linear before flatten", HEAD + "  - conv: 8\n  - linear: classes\n", "4:13", "add `- flatten`"),
    ("dropout 1.5", HEAD + "  - dropout: 1.5\n  - flatten\n  - linear: classes\n", "3:14", "dropout.p: must be <= 1"),
    ("wrong type", HEAD + "  - conv: {out: 8, bias: maybe}\n  - flatten\n  - linear: classes\n", "3:26",
     "expected true or false"),
    ("pool to zero", HEAD + "  - pool: 2\n" * 6 + "  - flatten\n  - linear: classes\n", "8:11", "0x0"),
    ("unknown top key", "dataset: cifar10\nlayrs: [flatten]\n", "2:1", 'did you mean "layers"'),
    ("duplicate key", "dataset: cifar10\nname: a\nname: b\nlayers: [flatten, linear: classes]\n", "3:1",
     'duplicate key "name"'),
    ("undefined var", HEAD + "  - conv: $width\n  - flatten\n  - linear: classes\n", "3:11", 'undefined name "width"'),
    ("bad expression", HEAD + '  - conv: "${8 * (2}"\n  - flatten\n  - linear: classes\n', "3:11", "cannot parse"),
    ("no eval", HEAD + '  - conv: "${__import__(1)}"\n  - flatten\n  - linear: classes\n', "3:11", "not allowed"),
    ("python tag", HEAD + "  - flatten\n  - linear: classes\nx: !!python/object/apply:os.system [ls]\n", "5:4",
     "not allowed"),
    ("yaml syntax", HEAD + "  - conv: {out: 8\n", "4:1", "YAML syntax error"),
    ("empty file", "", "1:1", "file is empty"),
    ("top level list", "- conv: 8\n", "1:1", "must be a mapping"),
    ("concat mismatch", HEAD + "  - parallel: {merge: concat, paths: [[conv: 4], [conv: {out: 4, stride: 2}]]}\n"
     "  - flatten\n  - linear: classes\n", "3:15", "same spatial size"),
    ("sum mismatch", HEAD + "  - parallel: {paths: [[conv: 4], [conv: 8]]}\n  - flatten\n  - linear: classes\n",
     "3:15", "equal shapes"),
    ("wrong class count", HEAD + "  - flatten\n  - linear: 7\n", "4:13", "there are 10 classes"),
    ("unknown dataset", "dataset: cifar11\nlayers: [flatten, linear: classes]\n", "1:10", 'did you mean "cifar10"'),
    ("value on bare kind", HEAD + "  - relu: 3\n  - flatten\n  - linear: classes\n", "3:11", "takes no value"),
    ("two keys in a layer", HEAD + "  - conv: 8\n    relu: null\n  - flatten\n  - linear: classes\n", "3:5",
     "exactly one key"),
    ("recursive blocks", "dataset: cifar10\nblocks:\n  a: {layers: [b]}\n  b: {layers: [a]}\n"
     "layers: [a, flatten, linear: classes]\n", "4:16", "uses itself"),
    ("unknown block param", "dataset: cifar10\nblocks:\n  s: {params: [out], layers: [conv: $out]}\n"
     "layers:\n  - s: {ot: 4}\n  - flatten\n  - linear: classes\n", "5:13", 'did you mean "out"'),
    ("missing block param", "dataset: cifar10\nblocks:\n  s: {params: [out], layers: [conv: $out]}\n"
     "layers:\n  - s\n  - flatten\n  - linear: classes\n", "5:5", 'needs parameter "out"'),
    ("identity shortcut mismatch", HEAD + "  - residual: {shortcut: identity, layers: [conv: 8]}\n"
     "  - flatten\n  - linear: classes\n", "3:15", "identity shortcut"),
    ("no input", "layers: [flatten, linear: 3]\n", "1:1", "no input shape"),
    ("bad repeat", HEAD + "  - repeat: {times: -1, layers: [relu]}\n  - flatten\n  - linear: classes\n", "3:21",
     "whole number >= 0"),
    ("groups do not divide", HEAD + "  - conv: {out: 8, groups: 2}\n  - flatten\n  - linear: classes\n", "3:11",
     "groups=2"),
    ("kernel too big", "input: [1, 4, 4]\nclasses: 2\nlayers:\n  - conv: {out: 2, kernel: 7, padding: 0}\n"
     "  - flatten\n  - linear: classes\n", "4:11", "does not fit"),
    ("string var", 'dataset: cifar10\nvars: {w: "wide"}\nlayers: [flatten, linear: classes]\n', "2:11",
     "vars must be numbers"),
    ("bad name option", HEAD + '  - conv: {out: 8, name: "a b"}\n  - flatten\n  - linear: classes\n', "3:26",
     "does not match"),
]


@pytest.mark.parametrize("name,text,where,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_spec_is_one_located_error(name, text, where, fragment, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ArchspecError) as info:
        archspec.load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{where}: "), message
    assert fragment in message
    assert "\n" not in message


def test_extends_cycle_and_missing_file(write):
    write("a.yaml", "extends: b.yaml\nlayers: [flatten]\n")
    b = write("b.yaml", "extends: a.yaml\n")
    with pytest.raises(ArchspecError, match="extends cycle: .*b.yaml -> a.yaml -> b.yaml"):
        archspec.load_spec(b)
    c = write("c.yaml", "extends: nowhere.yaml\n")
    with pytest.raises(ArchspecError, match=r"c.yaml:1:10: extends: .*no such file"):
        archspec.load_spec(c)


def test_billion_laughs_fails_fast(write):
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    path = write("lol.yaml", "\n".join(lines) + "\nlayers: [flatten]\n")
    with pytest.raises(ArchspecError, match="alias/anchor bomb"):
        archspec.load_spec(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ArchspecError, match="file not found"):
        archspec.load_spec(tmp_path / "nope.yaml")
    with pytest.raises(ArchspecError, match="is a directory"):
        archspec.load_spec(tmp_path)


def test_cli_prints_one_line_and_exits_2(cli, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + "  - conv: -4\n  - flatten\n  - linear: classes\n")
    for command in ("count", "validate", "show"):
        result = cli(command, path)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and "bad.yaml:3:11: layers[0].conv.out: must be >= 1, got -4" in lines[0]


def test_validate_does_not_import_torch(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("dataset: cifar10\nlayers: [conv: 8, resblock: 16, pool: 2, flatten, linear: classes]\n")
    code = (
        "import sys; from archspec.cli import app; from typer.testing import CliRunner; "
        f"r = CliRunner().invoke(app, ['validate', {str(path)!r}]); "
        "assert r.exit_code == 0, r.output; "
        "assert 'torch' not in sys.modules, 'validate imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
