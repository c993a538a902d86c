"""Hostile and absurd input (issue 11, input side): one located line and exit code 2, fast, in
bounded memory; never a traceback, a hang or a C++ stack dump.

Cases that would exhaust memory or hang without the fix run in a child process with a memory cap
and a timeout (tests/bounded.py), so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import archspec
from archspec.data.datasets import load_dataset
from archspec.errors import ArchspecError
from archspec.recipes import load_recipe
from archspec.spec.yamlload import MAX_DEPTH, load_yaml

from .bounded import assert_one_line_error, run_bounded
from .test_data import cifar_batch, write_cifar10

HEAD = "dataset: cifar10\nlayers:\n"
TAIL = "  - flatten\n  - linear: 10\n"


def spec_error(path: Path) -> str:
    """The one-line error loading `path` gives (fails the test if it loads)."""
    with pytest.raises(ArchspecError) as e:
        archspec.load_spec(path)
    text = str(e.value)
    assert "\n" not in text, text
    return text


# --- YAML: size, depth, characters ------------------------------------------------------------


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_special_files_are_read_with_a_hard_cap(device):
    """stat() says 0 bytes for these: the old size check let them through and read() never ended."""
    if not Path(device).exists():
        pytest.skip(f"no {device}")
    outcome = run_bounded(["validate", device], memory_mb=1024, timeout_s=60)
    assert_one_line_error(outcome, contains=f"{device}: file is larger than 5 MB")
    assert outcome.seconds < 30 and (outcome.peak_rss_mb or 0) < 200


def test_yaml_nested_500_deep_is_a_located_error_in_specs_and_recipes(tmp_path):
    spec = tmp_path / "deep.yaml"
    spec.write_text(HEAD + "  - " + "[" * 500 + "]" * 500 + "\n")
    assert "deep.yaml:3:" in spec_error(spec)
    assert f"nested deeper than {MAX_DEPTH} levels" in spec_error(spec)
    recipe = tmp_path / "deep-recipe.yaml"
    recipe.write_text("epochs: 1\nbatch_size: 8\noptimizer: {name: sgd, lr: 0.1}\naugment: "
                      + "{a: " * 500 + "1" + "}" * 500 + "\n")
    with pytest.raises(ArchspecError, match=rf"deep-recipe.yaml:4:\d+: .*nested deeper than {MAX_DEPTH}"):
        load_recipe(str(recipe))


def test_nul_byte_in_a_spec_is_a_located_error(tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"dataset: cifar10\nlayers:\n  - conv: 8\x00\n" + TAIL.encode())
    assert spec_error(path).startswith(f"{path}:3:12: character #x0000 is not allowed")


def test_nul_byte_in_a_set_value_is_a_clean_error():
    with pytest.raises(ArchspecError, match="character #x0000"):
        load_recipe("adam", overrides=["optimizer.lr=1\x00"])


def test_not_utf8_points_at_the_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ArchspecError, match=r"latin1.yaml:1:10: not UTF-8"):
        load_yaml(path)


def _nested(kind: str, levels: int) -> str:
    item = "relu"
    for _ in range(levels):
        item = {
            "repeat": f"{{repeat: {{times: 1, layers: [{item}]}}}}",
            "residual": f"{{residual: {{layers: [{item}]}}}}",
            "parallel": f"{{parallel: {{paths: [[{item}], [relu]]}}}}",
        }[kind]
    return f"input: [4]\nlayers: [{item}]\n"


@pytest.mark.parametrize("kind", ["repeat", "residual", "parallel"])
def test_layer_nesting_limit_is_the_documented_32_whatever_the_form(tmp_path, kind):
    """Was: 21 repeats hit the YAML limit, "deeper than 64 levels (recursive alias?)"."""
    path = tmp_path / "nest.yaml"
    path.write_text(_nested(kind, 32))
    archspec.load_spec(path)
    path.write_text(_nested(kind, 33))
    assert spec_error(path).endswith("layers nested deeper than 32 levels")


def test_recursive_alias_is_still_named(tmp_path):
    path = tmp_path / "alias.yaml"
    path.write_text("a: &a [*a]\n")
    with pytest.raises(ArchspecError, match=r"alias.yaml:1:\d+: .*through aliases \(recursive alias\?\)"):
        load_yaml(path)


def test_docs_state_the_limits_the_code_enforces():
    from archspec.layers.base import MAX_INT_OPTION
    from archspec.spec import document, expand, tree, yamlload

    text = (Path(__file__).resolve().parents[1] / "docs" / "spec-language.md").read_text()
    section = text[text.index("## Limits"):]
    for number in (expand.MAX_LAYERS, expand.MAX_NESTING, document.MAX_EXTENDS, yamlload.MAX_DEPTH,
                   yamlload.MAX_NODES, MAX_INT_OPTION, tree.MAX_VALUES):
        assert f"{number:,}" in section, number
    assert f"{yamlload.MAX_BYTES // 1_000_000} MB" in section


# --- expansion is bounded before it happens ----------------------------------------------------


@pytest.mark.parametrize("times", ["1.0e+30", "10000000000000"])
def test_parallel_times_is_refused_before_building_anything(tmp_path, times):
    """Was: OverflowError (1e30) and MemoryError (1e13) tracebacks."""
    path = tmp_path / "par.yaml"
    path.write_text(HEAD + f"  - parallel: {{times: {times}, layers: [relu]}}\n" + TAIL)
    assert spec_error(path).startswith(f"{path}:3:23: layers[0].parallel.times: must be <= 1000000")


def test_parallel_times_300_million_is_refused_fast_in_bounded_memory(tmp_path):
    """Was: 79 s and 2.4 GB before the 20,000-layer limit applied."""
    path = tmp_path / "par.yaml"
    path.write_text(HEAD + "  - parallel: {times: 300000000, layers: [relu]}\n" + TAIL)
    outcome = run_bounded(["validate", str(path)], memory_mb=1024, timeout_s=120)
    assert_one_line_error(outcome, contains=f"{path}:3:23: layers[0].parallel.times: must be <= 1000000")
    assert outcome.seconds < 20 and (outcome.peak_rss_mb or 0) < 200


def test_parallel_copies_past_the_layer_budget_are_refused_before_expanding(tmp_path):
    path = tmp_path / "par.yaml"
    path.write_text(HEAD + "  - parallel: {times: 500000, layers: [relu]}\n" + TAIL)
    assert spec_error(path).endswith("layers[0].parallel: 500,000 paths would make more than 20,000 layers "
                                     "after expansion")


def test_repeat_times_past_the_layer_budget_is_refused_at_times(tmp_path):
    path = tmp_path / "rep.yaml"
    path.write_text(HEAD + "  - repeat: {times: 10000000000000, layers: [relu, relu]}\n" + TAIL)
    assert spec_error(path) == (f"{path}:3:21: layers[0].repeat.times: repeat times 10,000,000,000,000 would "
                                "make more than 20,000 layers after expansion")


def test_nested_blocks_cannot_expand_exponentially(tmp_path):
    """Each block uses the next one 16 times: 16**5 layers if expanded. The count stops it early."""
    blocks = "".join(f"  b{i}:\n    layers: [{', '.join([f'b{i + 1}'] * 16)}]\n" for i in range(5))
    path = tmp_path / "blocks.yaml"
    path.write_text("input: [4]\nblocks:\n" + blocks + "  b5:\n    layers: [relu]\nlayers: [b0]\n")
    assert "more than 20,000 layers after expansion" in spec_error(path)


# --- numbers: bounded and finite ---------------------------------------------------------------


def test_conv_1e308_is_one_line_not_a_cpp_stack_dump(tmp_path):
    """Was: `count` printed torch's 20-line C++ stack dump ("Overflow when unpacking long long")."""
    path = tmp_path / "conv.yaml"
    path.write_text(HEAD + "  - conv: 1.0e+308\n" + TAIL)
    outcome = run_bounded(["count", str(path)], memory_mb=1024, timeout_s=60)
    assert_one_line_error(outcome, contains=f"{path}:3:11: layers[0].conv.out: must be <= 1000000")
    assert len(outcome.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("value", "message"), [
    ("10000000000", "must be <= 1000000, got 10000000000"),
    (".nan", "must be a finite number, got nan"),
    ("{out: 8, dilation: 100000000000000000000}", "dilation: must be <= 1000000"),
])
def test_huge_or_nan_sizes_are_refused_in_the_schema(tmp_path, value, message):
    path = tmp_path / "conv.yaml"
    path.write_text(HEAD + f"  - conv: {value}\n" + TAIL)
    assert message in spec_error(path)


@pytest.mark.parametrize("layer", ["scale: {factor: .nan}", "scale: {factor: .inf}", "leaky_relu: .inf",
                                   "bn: {eps: .inf}"])
def test_non_finite_float_options_are_refused(tmp_path, layer):
    path = tmp_path / "nan.yaml"
    path.write_text(f"input: [4]\nlayers:\n  - {layer}\n")
    assert "must be a finite number" in spec_error(path)


def test_non_finite_vars_are_refused(tmp_path):
    path = tmp_path / "vars.yaml"
    path.write_text("input: [4]\nvars: {w: .inf}\nlayers: [linear: 4]\n")
    assert spec_error(path) == f"{path}:2:11: vars.w: must be a finite number, got inf"


def test_input_too_large_is_refused(tmp_path):
    path = tmp_path / "input.yaml"
    path.write_text("input: [3, 1000000, 1000000]\nlayers: [gap]\n")
    assert spec_error(path).endswith("input [3, 1000000, 1000000] has more than 1,000,000,000 values per sample")


def test_layer_too_large_to_build_is_refused_at_shape_time(tmp_path):
    """Every option in range, but 1e6 x 1e6 channels with a 100x100 kernel: 10^16 weights."""
    path = tmp_path / "big.yaml"
    path.write_text("input: [1000000, 1, 1]\nlayers:\n  - conv: {out: 1000000, kernel: 100}\n")
    assert spec_error(path).endswith("layers[0].conv: more than 1e+15 multiply-accumulates per sample (input "
                                     "[1000000, 1, 1]); this layer is too large to build")


def test_classes_are_bounded(tmp_path):
    path = tmp_path / "classes.yaml"
    path.write_text("input: [4]\nclasses: 100000000000000000000\nlayers: [linear: 4]\n")
    assert "classes: must be <= 1000000" in spec_error(path)


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), float("-inf")])
def test_lr_nan_or_inf_is_refused_naming_the_option(lr):
    with pytest.raises(ArchspecError, match=r"^--lr: must be a finite number"):
        load_recipe("adam", lr=lr)


@pytest.mark.parametrize(("text", "where"), [
    ("seed: 1e23", "r.yaml:2:7: seed: must be <= 9223372036854775807"),
    ("seed: 18446744073709551616", "r.yaml:2:7: seed: must be <= 9223372036854775807"),
    ("epochs: 1e23", "r.yaml:2:9: epochs: must be <= 1000000"),
    ("optimizer: {lr: .nan}", "r.yaml:2:17: optimizer.lr: must be a finite number, got nan"),
    ("workers: 100000", "r.yaml:2:10: workers: must be <= 256"),
])
def test_recipe_numbers_are_bounded_and_finite(tmp_path, text, where):
    path = tmp_path / "r.yaml"
    path.write_text(f"extends: adam\n{text}\n")
    with pytest.raises(ArchspecError) as e:
        load_recipe(str(path))
    assert where in str(e.value), str(e.value)


def test_train_lr_nan_is_exit_2_before_any_run_dir(tmp_path, write, cli):
    spec = write("s.yaml", "dataset: synthetic\nlayers: [flatten, linear: 10]\n")
    result = cli("train", spec, "--lr", "nan", "--runs-dir", tmp_path / "runs", "-q")
    assert result.exit_code == 2 and "--lr: must be a finite number, got nan" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("seed", [str(2**64), "-1"])
def test_train_seed_out_of_range_is_an_option_error(tmp_path, write, cli, seed):
    spec = write("s.yaml", "dataset: synthetic\nlayers: [flatten, linear: 10]\n")
    result = cli("train", spec, "--seed", seed, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "--seed" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("depth", ["-1", "0"])
def test_count_depth_below_one_is_refused(write, cli, depth):
    """Was: exit 0 with an empty table."""
    spec = write("s.yaml", "input: [4]\nlayers: [linear: 2]\n")
    result = cli("count", spec, "--depth", depth)
    assert result.exit_code == 2 and "--depth" in result.output


def test_recipes_plot_refuses_an_unbounded_number_of_steps(tmp_path):
    """1,000 epochs x 10^6 steps per epoch of a per-batch schedule: 10^9 scheduler steps."""
    outcome = run_bounded(["recipes", "plot", "onecycle", "--set", "epochs=1000", "--steps-per-epoch", "1000000",
                           "-o", str(tmp_path / "lr.png")], timeout_s=60)
    assert_one_line_error(outcome, contains="more than 200,000 steps to trace")
    assert not (tmp_path / "lr.png").exists()


# --- datasets ----------------------------------------------------------------------------------


def test_data_dir_that_is_a_file_is_a_clear_error(tmp_path):
    """Was: FileExistsError from mkdir (with download allowed)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ArchspecError, match=r"afile: the data directory is a file"):
        load_dataset("cifar10", "test", data_dir=afile, download=True)


class _DeclaredArray:
    """Pickles as numpy's own array rebuilder called with a huge shape (numpy itself passes (0,))."""

    def __init__(self, shape, code):
        self.shape, self.code = shape, code

    def __reduce__(self):
        return (np.zeros(1).__reduce__()[0], (np.ndarray, self.shape, self.code))


def test_tiny_pickle_declaring_huge_arrays_is_refused_before_allocating(tmp_path):
    """Was: a ~130-byte file loaded as 700,000 images (2.6 GB resident)."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = pickle.dumps({"data": _DeclaredArray((700_000, 3072), "B"), "labels": _DeclaredArray((700_000,), "l")},
                        protocol=4)
    assert len(data) < 200
    (folder / "test_batch").write_bytes(data)
    code = ("from archspec.data.datasets import load_dataset\n"
            f"load_dataset('cifar10', 'test', data_dir={str(tmp_path)!r}, download=False)\n")
    outcome = run_bounded([], python_code=code, memory_mb=1536, timeout_s=60)
    assert outcome.returncode == 1 and "ArchspecError" in outcome.stderr, outcome.stderr[-1500:]
    assert "declares an array of shape (700000, 3072) (2,150,400,000 bytes) but the file has only" in outcome.stderr
    assert (outcome.peak_rss_mb or 0) < 1000


def test_cifar_repickled_by_python3_with_protocol_2_loads(tmp_path):
    """Python 3 writes bytes in protocol 2 as `_codecs.encode(str, "latin1")` (and b"" as `bytes()`)."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        written[name] = {**cifar_batch(3, rng), b"filenames": [b"a.png", b"", b"c.png"]}
        data = pickle.dumps(written[name], protocol=2)
        assert b"_codecs\nencode" in data
        (folder / name).write_bytes(data)
    test = load_dataset("cifar10", "test", data_dir=tmp_path, download=False)
    assert np.array_equal(test.images.numpy().reshape(3, -1), written["test_batch"][b"data"])
    assert test.labels.tolist() == written["test_batch"][b"labels"]


class _Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize(("func", "args", "message"), [
    (__import__("_codecs").encode, ("x", "rot13"), "only allowed as encode"),
    (bytes, (10**9,), "only allowed without arguments"),
    (__import__("_codecs").decode, (b"x", "latin1"), 'refusing to unpickle "_codecs.decode"'),
])
def test_protocol_2_helpers_cannot_be_abused(tmp_path, func, args, message):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({"data": _Reduce(func, args), "labels": [0]}, protocol=2))
    with pytest.raises(ArchspecError, match=message):
        load_dataset("cifar10", "test", data_dir=tmp_path, download=False)


def test_well_formed_cifar_still_loads(tmp_path):
    write_cifar10(tmp_path)
    assert len(load_dataset("cifar10", "train", data_dir=tmp_path, download=False)) == 20


# --- run directories ---------------------------------------------------------------------------


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"status": "completed", "spec": "s", "recipe": "adam",
                                                  "best_test_acc": 0.5, "epochs": 1}))
    (run / "spec.yaml").write_text("name: s\nlayers: [relu]\n")
    (run / "recipe.yaml").write_text("name: adam\nepochs: 1\n")
    (run / "metrics.csv").write_text("epoch,train_loss,test_acc\n1,0.5,0.5\n")
    return run


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(9))


def test_compare_survives_an_alias_bomb_in_a_run_dir(tmp_path):
    """Was: compare/report hung with growing memory (plain yaml.safe_load of recipe.yaml)."""
    run = _run_dir(tmp_path)
    (run / "recipe.yaml").write_text(BOMB)
    outcome = run_bounded(["compare", str(run), "--json"], memory_mb=1024, timeout_s=60)
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    assert outcome.seconds < 30 and (outcome.peak_rss_mb or 0) < 600


def test_run_dir_files_nested_too_deep_are_problems_not_tracebacks(tmp_path):
    from archspec.experiments.runs import load_run

    run = _run_dir(tmp_path)
    (run / "summary.json").write_text("[" * 100_000 + "]" * 100_000)
    (run / "metrics.jsonl").write_text("{\"a\": " * 100_000 + "1" + "}" * 100_000 + "\n")
    (run / "spec.yaml").write_text("[" * 1000 + "]" * 1000)
    loaded = load_run(run)
    assert {"summary.json unreadable", "metrics.jsonl unreadable", "spec.yaml unreadable"} <= set(loaded.problems)


def test_run_dir_csv_with_nul_bytes_is_a_problem(tmp_path):
    from archspec.experiments.runs import load_run

    run = _run_dir(tmp_path)
    (run / "metrics.csv").write_bytes(b"epoch,train_loss\n1,\x000.5\n")
    (run / "steps.csv").write_bytes(b"step,epoch,loss,lr\n" + b"7" * 200_000 + b"\n")
    loaded = load_run(run)
    assert "metrics.csv unreadable" in loaded.problems
    assert loaded.steps == [] and "steps.csv unreadable" in loaded.problems


def test_run_spec_hint_reads_spec_yaml_bounded(tmp_path):
    from archspec.train.prepare import _saved_spec as _run_spec

    run = _run_dir(tmp_path)
    (run / "spec.yaml").write_text(BOMB)
    assert _run_spec(run) is None
    (run / "spec.yaml").write_text("name: s\ndataset: mnist\nlayers: [relu]\n")
    assert _run_spec(run)["dataset"] == "mnist"


def test_no_product_code_calls_plain_yaml_load():
    """Every YAML read goes through the bounded loader (archspec/spec/yamlload.py)."""
    root = Path(__file__).resolve().parents[1] / "archspec"
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.name != "yamlload.py" and any(call in p.read_text() for call in
                                                    ("yaml.safe_load(", "yaml.load(", "yaml.full_load(",
                                                     "yaml.unsafe_load("))]
    assert offenders == []


def test_recipes_in_run_dirs_still_round_trip(tmp_path):
    """The bounded loader reads what archspec writes (safe_dump) exactly as before."""
    from archspec.recipes import recipe_to_yaml

    recipe = load_recipe("fast")
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe_to_yaml(recipe))
    assert load_recipe(str(path)).to_dict() == recipe.to_dict()


SPECIAL_JSON = ["NaN", "Infinity", "-Infinity", "1e400", "1" * 400, '"x"', "null", "[1, 2]", '{"a": 1}', "true"]


@pytest.mark.parametrize("value", SPECIAL_JSON)
def test_compare_shows_any_summary_or_metrics_value(tmp_path, cli, value):
    """Was: `train_seconds: NaN` (ValueError) or a 400-digit number (OverflowError) broke the table;
    a damaged metrics row's epoch broke --plot. archspec writes such numbers as null: read them so."""
    from .test_fuzz import SUMMARY_KEYS, write_run

    run = write_run(tmp_path)
    other = write_run(tmp_path / "other")
    fields = ", ".join(f'"{key}": {value}' for key in SUMMARY_KEYS if key != "status")
    (run / "summary.json").write_text(f'{{"status": "completed", {fields}}}')
    (run / "metrics.jsonl").write_text("".join(f'{{"epoch": {value}, "{k}": {value}}}\n'
                                               for k in ("train_loss", "test_acc", "epoch_seconds")))
    (run / "metrics.csv").write_text(f"epoch,train_loss,test_acc\n{value},{value},{value}\n".replace('"', ""))
    plot = ["--plot", tmp_path / "p.png"] if value in ("NaN", "1" * 400, '"x"') else ["--csv"]  # plots are slow
    for flags in ([], ["--json"], ["--markdown"], ["--sort", "time"], plot):
        result = cli("compare", run, other, *flags)
        assert result.exit_code == 0 and result.exception is None, (flags, result.output[-1500:])
