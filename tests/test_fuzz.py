"""Property-based: random and mutated specs either load (and count) or raise ArchspecError; nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import archspec
from archspec.errors import ArchspecError
from archspec.layers import REGISTRY
from archspec.recipes import load_recipe

KINDS = sorted(k for k in REGISTRY if k != "module") + ["repeat", "stage", "nonsense"]
OPTION_NAMES = sorted({o for k in REGISTRY.values() for o in k.options} | {"bogus", "name", "trainable"})
SCALARS = st.one_of(
    st.integers(-3, 70), st.floats(-2, 3), st.just(float("nan")), st.booleans(), st.none(),
    st.sampled_from(["same", "max", "avg", "sum", "concat", "gated", "$w", "${w*2}", "${w/0}", "classes", "x", ""]),
)


def layer_strategy(depth: int):
    scalar_layer = st.builds(lambda k, v: {k: v}, st.sampled_from(KINDS), SCALARS)
    bare = st.sampled_from(KINDS)
    options = st.dictionaries(st.sampled_from(OPTION_NAMES), SCALARS, max_size=4)
    opt_layer = st.builds(lambda k, o: {k: o}, st.sampled_from(KINDS), options)
    leaf = st.one_of(bare, scalar_layer, opt_layer)
    if depth == 0:
        return leaf
    inner = st.lists(layer_strategy(depth - 1), min_size=0, max_size=4)
    nested = st.one_of(
        st.builds(lambda ls, t: {"repeat": {"times": t, "layers": ls}}, inner, st.integers(-1, 3)),
        st.builds(lambda ls: {"residual": {"layers": ls}}, inner),
        st.builds(lambda a, b, m: {"parallel": {"merge": m, "paths": [a, b]}}, inner, inner,
                  st.sampled_from(["sum", "concat", "mean", "gated", "bad"])),
    )
    return st.one_of(leaf, nested)


SPECS = st.fixed_dictionaries(
    {"layers": st.lists(layer_strategy(2), min_size=0, max_size=8)},
    optional={
        "dataset": st.sampled_from(["cifar10", "mnist", "nope"]),
        "input": st.lists(st.integers(-1, 40), min_size=0, max_size=4),
        "classes": st.integers(-1, 12),
        "vars": st.dictionaries(st.sampled_from(["w", "p", "classes"]), SCALARS, max_size=3),
        "blocks": st.just({"stage": {"params": {"out": None}, "layers": [{"conv": "$out"}, "relu"]}}),
    },
)


def check(path):
    try:
        spec = archspec.load_spec(path)
    except ArchspecError as e:
        assert str(e)  # has a message
        return
    summary = archspec.summarize(spec)
    assert summary.total_params >= 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(SPECS)
def test_random_specs_load_or_raise_archspec_error(tmp_path, data):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data))
    check(path)


VALID = """dataset: cifar10
vars: {w: 8}
blocks:
  stage:
    params: {out: null}
    layers: [conv: $out, bn, relu, pool: 2]
layers:
  - stage: $w
  - residual: {layers: [conv: "${w}", bn]}
  - parallel: {merge: concat, times: 2, layers: [conv: 4]}
  - repeat: {times: 2, layers: [conv: 8, relu]}
  - flatten
  - dropout: 0.2
  - linear: classes
"""


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.sampled_from(
    ["", " ", "\n", ":", "-", "{", "}", "[", "]", "$", "0", "9", "x", "&a", "*a", "!!python/name:os.system", "\t"])),
    min_size=1, max_size=4))
def test_mutated_specs_load_or_raise_archspec_error(tmp_path, edits):
    text = VALID
    for pos, insert in edits:
        pos = min(pos, len(text))
        text = text[:pos] + insert + text[pos + 1:]
    path = tmp_path / "mut.yaml"
    path.write_text(text)
    check(path)


# --------------------------------------------------------------------------------------------
# Hostile input (issue 11): random bytes, random nesting depths and random numbers in specs,
# recipes, CLI options and run-directory files. Each must end in success or one ArchspecError
# (exit 2 with a located first line), within a time and memory bound; never a traceback.
# Every test below runs in a few seconds (max_examples is sized for it); together well under a minute.

NUMBERS = [0, -1, 1, 3, 7, 0.5, 1e308, -1e308, float("nan"), float("inf"), float("-inf"), 2**64, -(2**63),
           10**30, 1e23, 2**53 + 1, 1_000_001, 1e-320]
NUMBER_TEXT = st.one_of(
    st.sampled_from(NUMBERS).map(lambda v: yaml.safe_dump(v).removesuffix("\n...\n").strip()),
    st.sampled_from(["1e308", "1e23", "2**64", "${2**64}", "${1e308}", "${10**15}", "-0", "0x7fffffffffffffff"]),
)
BOUND_SECONDS = 10
BOUND_MB = 256  # first calls import modules (tens of MB); a runaway allocation is GBs


def bounded(fn, *args, trace_memory: bool = True, **kwargs):
    """Call fn; it must end within BOUND_SECONDS and (traced with tracemalloc) allocate under BOUND_MB."""
    import time
    import tracemalloc

    if trace_memory:
        tracemalloc.start()
    start = time.monotonic()
    try:
        return fn(*args, **kwargs)
    finally:
        peak = tracemalloc.get_traced_memory()[1] if trace_memory else 0
        tracemalloc.stop()
        assert time.monotonic() - start < BOUND_SECONDS
        assert peak < BOUND_MB << 20, f"{peak / 2**20:.0f} MB"


def loads_or_one_line_error(load, path):
    """`load(path)` succeeds or raises one ArchspecError whose text is one located line."""
    try:
        return bounded(load, path)
    except ArchspecError as e:
        text = str(e)
        assert text and "\n" not in text and "Traceback" not in text, text
        return None


def nested(depth: int, style: str) -> str:
    if style == "list":
        return "[" * depth + "1" + "]" * depth
    if style == "map":
        return "{a: " * depth + "1" + "}" * depth
    return "".join(f"\n{'  ' * (i + 1)}k{i}:" for i in range(depth)) + " 1"  # block style


SPEC_SLOTS = [
    "dataset: cifar10\nlayers:\n  - conv: {X}\n  - flatten\n  - linear: 10\n",
    "dataset: cifar10\nlayers:\n  - conv: {{out: 8, kernel: {X}}}\n  - gap\n  - flatten\n  - linear: 10\n",
    "dataset: cifar10\nlayers:\n  - conv: {{out: 8, stride: {X}, padding: 0}}\n  - gap\n  - flatten\n  - linear: 10\n",
    "dataset: cifar10\nlayers:\n  - conv: {{out: 8, dilation: {X}}}\n  - gap\n  - flatten\n  - linear: 10\n",
    "dataset: cifar10\nlayers:\n  - conv: {{out: 8, groups: {X}}}\n  - gap\n  - flatten\n  - linear: 10\n",
    "dataset: cifar10\nlayers:\n  - pool: {{size: {X}, padding: 0}}\n  - flatten\n  - linear: 10\n",
    "dataset: cifar10\nlayers:\n  - flatten\n  - linear: {X}\n  - linear: 10\n",
    "dataset: cifar10\nlayers:\n  - flatten\n  - dropout: {X}\n  - scale: {X}\n  - linear: 10\n",
    "dataset: cifar10\nlayers:\n  - bn: {{eps: {X}, momentum: {X}}}\n  - leaky_relu: {X}\n  - flatten\n  - linear: 10\n",
    "dataset: cifar10\nlayers:\n  - parallel: {{times: {X}, layers: [relu]}}\n  - flatten\n  - linear: 10\n",
    "dataset: cifar10\nlayers:\n  - repeat: {{times: {X}, layers: [conv: 4]}}\n  - flatten\n  - linear: 10\n",
    "input: [{X}, 8, 8]\nlayers: [conv: 4, flatten]\n",
    "input: [3, {X}, {X}]\nclasses: {X}\nlayers: [gap, flatten, linear: classes]\n",
    "input: [3, 8, 8]\nvars: {{w: {X}}}\nlayers: [conv: $w, flatten, linear: $w]\n",
]


def check_spec(path):
    spec = loads_or_one_line_error(archspec.load_spec, path)
    if spec is not None:  # whatever loads must also count: no overflow or C++ error in torch
        summary = archspec.summarize(spec)
        assert 0 <= summary.total_params < 2**63


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(SPEC_SLOTS), NUMBER_TEXT)
def test_random_numbers_in_specs_load_and_count_or_raise_one_line(tmp_path, template, number):
    path = tmp_path / "num.yaml"
    path.write_text(template.format(X=number))
    check_spec(path)


RECIPE_SLOTS = [
    "epochs: {X}", "batch_size: {X}", "seed: {X}", "eval_every: {X}", "workers: {X}", "grad_clip: {X}",
    "optimizer: {{lr: {X}}}", "optimizer: {{weight_decay: {X}, eps: {X}}}", "optimizer: {{betas: [{X}, {X}]}}",
    "optimizer: {{name: sgd, lr: 0.1, momentum: {X}}}", "loss: {{label_smoothing: {X}}}",
    "schedule: {{type: step, step_size: {X}, gamma: {X}}}", "schedule: {{type: multistep, milestones: [{X}]}}",
    "schedule: {{type: onecycle, pct_start: {X}, div_factor: {X}, max_lr: {X}}}",
    "schedule: {{phases: [{{type: linear, until: {X}, start_factor: {X}}}, {{type: cosine}}]}}",
    "ema: {{decay: {X}, every: {X}, warmup_power: {X}}}", "init: whiten\nwhiten: {{samples: {X}, eps: {X}}}",
    "normalize: {{mean: [{X}], std: [{X}]}}",
]


def check_recipe(path):
    """Loads (then its torch optimizer and scheduler build) or raises one ArchspecError."""
    import torch

    from archspec.recipes.build import build_optimizer, build_scheduler

    recipe = loads_or_one_line_error(lambda p: load_recipe(str(p)), path)
    if recipe is not None:
        optimizer = build_optimizer(recipe, torch.nn.Linear(2, 2))
        build_scheduler(recipe, optimizer, 3)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(RECIPE_SLOTS), NUMBER_TEXT)
def test_random_numbers_in_recipes_load_and_build_or_raise_one_line(tmp_path, slot, number):
    path = tmp_path / "r.yaml"
    path.write_text("extends: adam\n" + slot.format(X=number) + "\n")
    check_recipe(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2000), st.sampled_from(["list", "map", "block"]),
       st.sampled_from(["spec-layers", "spec-option", "spec-vars", "recipe-augment", "recipe-optimizer"]))
@example(500, "list", "spec-layers")
@example(500, "map", "recipe-augment")  # the cases: 500 deep was a RecursionError
def test_random_nesting_depths_raise_one_line(tmp_path, depth, style, where):
    value = nested(min(depth, 600) if style == "block" else depth, style)
    path = tmp_path / "deep.yaml"
    if where.startswith("spec"):
        text = {"spec-layers": "input: [4]\nlayers: {V}\n", "spec-option": "input: [4]\nlayers:\n  - linear: {V}\n",
                "spec-vars": "input: [4]\nvars:\n  w: {V}\nlayers: [linear: 2]\n"}[where]
        path.write_text(text.replace("{V}", value))
        check_spec(path)
    else:
        key = where.split("-")[1]
        path.write_text(f"extends: adam\n{key}: {value}\n")
        check_recipe(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400), st.sampled_from([b"", b"layers:\n", b"dataset: cifar10\nlayers: [", b"epochs: "]))
def test_random_bytes_as_spec_or_recipe_raise_one_line(tmp_path, data, prefix):
    path = tmp_path / "bytes.yaml"
    path.write_bytes(prefix + data)
    check_spec(path)
    check_recipe(path)


# --- the CLI, in-process (typer's CliRunner) ---------------------------------------------------

OPTION_TEXT = st.one_of(
    st.sampled_from(["0", "-1", "1", "1e308", "-1e308", "nan", "inf", "-inf", str(2**64), str(-(2**63)), "1e23",
                     "", "x", "0.5", str(10**30)]),
    st.integers(-(2**70), 2**70).map(str),
)


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """Run each command once untraced: first calls import torch, rich and friends, which under
    tracemalloc takes long enough to look like a hang."""
    from typer.testing import CliRunner

    from archspec.cli import app

    folder = tmp_path_factory.mktemp("warm")
    spec = folder / "s.yaml"
    spec.write_text("input: [3, 8, 8]\nlayers: [conv: 4, flatten, linear: 2]\n")
    run = write_run(folder)
    for args in (["count", spec, "--json"], ["recipes", "show", "adam"], ["compare", run, run]):
        CliRunner().invoke(app, [str(a) for a in args])


def cli_exit(result) -> int:
    """0 or 2, never a traceback; an error's first line is `error: ...` (or click's usage error)."""
    assert "Traceback" not in result.output, result.output[-2000:]
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), (result.exit_code, result.output[-2000:])
    if result.exit_code == 2:
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert lines and (lines[0].startswith("error: ") or "Usage:" in lines[0]), result.output
    return result.exit_code


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["count-depth", "count-batch", "show-set", "plot-steps", "plot-dpi"]), OPTION_TEXT)
def test_random_cli_options_exit_0_or_2(tmp_path, cli, warm, command, value):
    spec = tmp_path / "s.yaml"
    spec.write_text("input: [3, 8, 8]\nlayers: [conv: 4, relu, flatten, linear: 2]\n")
    args = {
        "count-depth": ["count", spec, "--depth", value],
        "count-batch": ["count", spec, "--batch-size", value, "--json"],
        "plot-dpi": ["recipes", "plot", "quick", "--dpi", value if not value.isdigit() or int(value) > 1200 else "50",
                     "-o", tmp_path / "lr.png"],  # valid dpis only cost time: the fuzz is about the rest
        "show-set": ["recipes", "show", "adam", "--set", f"seed={value}", "--set", f"optimizer.lr={value}"],
        "plot-steps": ["recipes", "plot", "quick", "--set", "epochs=1", "--steps-per-epoch", value,
                       "-o", tmp_path / "lr.png"],
    }[command]
    bounded(lambda: cli_exit(cli(*args)), trace_memory=not command.startswith("plot"))  # matplotlib: time only


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["--lr", "--seed", "--batch-size", "--epochs", "--limit-train", "--workers"]), OPTION_TEXT)
def test_random_train_options_exit_0_or_2(tmp_path, cli, option, value):
    """Invalid values exit 2 before training; valid ones train a linear model on a few synthetic images."""
    if option in ("--epochs", "--workers") and value.isdigit() and int(value) <= 1_000_000:
        value = "1"  # valid: would train that many epochs (or start that many workers); the fuzz is the rest
    spec = tmp_path / "s.yaml"
    spec.write_text("dataset: synthetic\nlayers: [flatten, linear: 10]\n")
    limits = {"--epochs": "1", "--limit-train": "16", "--limit-test": "16"}
    limits.pop(option, None)
    args = ["train", spec, "--recipe", "quick", "--device", "cpu", "--runs-dir", tmp_path / "runs", "-q",
            *[x for pair in limits.items() for x in pair], option, value]
    cli_exit(cli(*args))


# --- run directories read by compare ----------------------------------------------------------


def write_run(folder: Path) -> Path:
    run = folder / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "status": "completed", "spec": "s", "recipe": "adam", "params": 100, "epochs": 2, "epochs_planned": 2,
        "best_test_acc": 0.5, "best_epoch": 1, "final_test_acc": 0.4, "final_train_loss": 1.0,
        "final_test_loss": 1.1, "train_seconds": 3.0, "images_per_second": 100.0}))
    (run / "spec.yaml").write_text("name: s\ninput: [4]\nlayers: [linear: 2]\n")
    (run / "recipe.yaml").write_text("name: adam\nepochs: 2\noptimizer: {name: adam, lr: 0.001}\n")
    (run / "metrics.csv").write_text("epoch,train_loss,test_loss,test_acc\n1,1.0,1.1,0.5\n2,0.9,1.0,0.4\n")
    (run / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 1.0, "test_acc": 0.5}\n')
    (run / "steps.csv").write_text("step,epoch,loss,lr\n1,1,1.0,0.001\n2,2,0.9,0.001\n")
    return run


RUN_FILES = ["summary.json", "spec.yaml", "recipe.yaml", "metrics.csv", "metrics.jsonl", "steps.csv"]
SUMMARY_KEYS = ["status", "spec", "recipe", "params", "epochs", "epochs_planned", "best_test_acc", "best_epoch",
                "final_test_acc", "final_train_loss", "train_seconds", "images_per_second", "dataset"]
JSON_VALUES = st.one_of(st.sampled_from(NUMBERS), st.text(max_size=5), st.none(), st.booleans(),
                        st.just([1, 2]), st.just({"a": 1}))


NUMBER_JSON = st.sampled_from(["0", "-1", "1e308", "1e400", "NaN", "Infinity", str(2**64), "1" * 400, "0.5"])


@st.composite
def damaged_run_file(draw) -> tuple[str, bytes]:
    """(file name, content): random bytes, deep nesting, or odd values where numbers belong."""
    kind = draw(st.sampled_from(["bytes", "nested", "summary", "metrics.jsonl", "csv"]))
    if kind == "bytes":
        return draw(st.sampled_from(RUN_FILES)), draw(st.binary(max_size=300))
    if kind == "nested":
        depth = draw(st.integers(0, 5000))
        name = draw(st.sampled_from(RUN_FILES))
        if name.endswith(".yaml"):
            return name, ("a: " + nested(min(depth, 400), draw(st.sampled_from(["list", "map", "block"])))).encode()
        return name, ("[" * depth + "]" * depth).encode()
    if kind == "summary":
        values = draw(st.dictionaries(st.sampled_from(SUMMARY_KEYS), st.one_of(NUMBER_JSON, st.sampled_from(
            ['"x"', "null", "true", "[1]", '{"a": 1}'])), max_size=5))
        return "summary.json", ("{" + ", ".join(f'"{k}": {v}' for k, v in values.items()) + "}").encode()
    number = draw(NUMBER_JSON)
    if kind == "metrics.jsonl":
        return kind, f'{{"epoch": {number}, "train_loss": {number}, "test_acc": {number}}}\n'.encode()
    name = draw(st.sampled_from(["metrics.csv", "steps.csv"]))
    header = "epoch,train_loss,test_acc" if name == "metrics.csv" else "step,epoch,loss,lr"
    return name, f"{header}\n{number},{number},{number},{number}\n".encode()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(damaged_run_file(), min_size=1, max_size=3),
       st.sampled_from([[], ["--json"], ["--csv"], ["--markdown"], ["--sort", "test_acc"], ["--sort", "time"],
                        ["--sort", "optimizer.lr"]]))
def test_random_run_dir_files_compare_exit_0_or_2(tmp_path_factory, cli, warm, files, flags):
    folder = tmp_path_factory.mktemp("runs")
    run, intact = write_run(folder), write_run(folder / "other")
    for name, content in files:
        (run / name).write_bytes(content)
    bounded(lambda: cli_exit(cli("compare", run, intact, *flags)))
