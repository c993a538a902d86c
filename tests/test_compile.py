"""The recipe's `compile:` key: resolution per device, and a real torch.compile run on the CPU.

The compiled run is the one slow test here (inductor compiles C++ kernels with the system compiler:
~20-40 s on 2 cores); it checks what a user relies on: the compiled run trains the same model as an
eager one, its compile time is reported apart, and its checkpoints are plain state_dicts.
"""

from __future__ import annotations

import io
import shutil

import pytest
import torch
from rich.console import Console

import archspec
from archspec.errors import ArchspecError
from archspec.recipes import load_recipe
from archspec.train.loop import train
from archspec.train.torch_compile import CompileClock, resolve_compile

from .conftest import write_file

pytestmark = pytest.mark.usefixtures("no_run_plots")  # no test here looks at a run's curves.png / lr.png

SPEC = """
name: tinybn
dataset: synthetic
input: [3, 8, 8]
classes: 4
layers:
  - conv: {out: 6, bias: false}
  - bn
  - relu
  - pool: 2
  - flatten
  - linear: classes
"""

RECIPE = """
name: r
epochs: 1
batch_size: 64
optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
seed: 5
"""

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(("value", "device", "expected"), [
    ("auto", CPU, None), ("auto", CUDA, "default"), (None, CUDA, "default"),
    (False, CUDA, None), (True, CPU, "default"), ("default", CPU, "default"),
    ("max-autotune-no-cudagraphs", CPU, "max-autotune-no-cudagraphs"), ("reduce-overhead", CUDA, "reduce-overhead"),
])
def test_resolve_compile(value, device, expected):
    assert resolve_compile(value, device) == expected


def test_reduce_overhead_needs_cuda_and_unknown_values_are_refused():
    with pytest.raises(ArchspecError, match="CUDA graphs and needs a CUDA device"):
        resolve_compile("reduce-overhead", CPU)
    with pytest.raises(ArchspecError, match="compile must be one of auto, false, true, default"):
        resolve_compile("fast", CPU)


def test_recipe_compile_key_validates_and_round_trips(tmp_path):
    path = write_file(tmp_path, "r.yaml", RECIPE + "compile: false\n")
    recipe = load_recipe(str(path))
    assert recipe.compile is False and recipe.to_dict()["compile"] is False
    assert load_recipe(str(path), overrides=["compile=reduce-overhead"]).compile == "reduce-overhead"
    assert load_recipe("adam").compile == "auto"
    with pytest.raises(ArchspecError) as err:
        load_recipe(str(path), overrides=["compile=turbo"])
    assert "compile" in str(err.value) and "turbo" in str(err.value)


def test_compile_clock_times_each_new_batch_shape_once():
    clock = CompileClock("default", CPU)
    clock.start_epoch()
    for batch in (64, 64, 8, 64, 8):
        with clock.step(torch.zeros(batch, 3)):
            pass
    assert clock.images == 64 + 8 and clock.shapes_seen == {(64, 3), (8, 3)}
    clock.start_epoch()
    with clock.step(torch.zeros(64, 3)):
        pass
    assert clock.images == 0 and clock.seconds == 0.0  # shapes compiled in an earlier epoch are not new
    eager = CompileClock(None, CPU)
    with eager.step(torch.zeros(64, 3)):
        pass
    assert eager.images == 0 and not eager.shapes_seen


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="torch.compile on CPU needs a C compiler")
def test_compiled_run_matches_eager_and_reports_compile_time_apart(tmp_path):
    spec = archspec.load_spec(write_file(tmp_path, "s.yaml", SPEC))
    results = {}
    for value in ("false", "true"):
        recipe = load_recipe(str(write_file(tmp_path, "r.yaml", RECIPE)), overrides=[f"compile={value}"])
        out = io.StringIO()
        results[value] = (train(spec, recipe, device="cpu", runs_root=tmp_path / value, limit_train=200,
                                limit_test=64, console=Console(file=out, width=120)), out.getvalue())
    (eager, _), (compiled, output) = results["false"], results["true"]
    assert eager.status == compiled.status == "completed"
    assert eager.summary["compile"] is False and eager.summary["compile_seconds"] == 0.0
    assert eager.summary["images_seen"] == 200
    assert compiled.summary["compile"] == "default"
    # 200 images in batches of 64: shapes 64 and 8 compile once each; those steps are timed apart.
    assert compiled.summary["compile_seconds"] > 0
    assert compiled.summary["images_seen"] == 200 - 64 - 8
    assert "torch.compile (default)" in output and "compiling" in output
    # The same training, up to float reassociation in the generated kernels.
    assert compiled.metrics[0]["train_loss"] == pytest.approx(eager.metrics[0]["train_loss"], rel=1e-4)
    assert compiled.metrics[0]["test_loss"] == pytest.approx(eager.metrics[0]["test_loss"], rel=1e-4)
    eager_state = torch.load(eager.run_dir / "last.pt", weights_only=True)["model"]
    compiled_state = torch.load(compiled.run_dir / "last.pt", weights_only=True)["model"]
    assert list(compiled_state) == list(eager_state)  # plain names: no "_orig_mod." prefix
    for name, value in eager_state.items():
        torch.testing.assert_close(compiled_state[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_a_compile_failure_is_a_one_line_error_with_the_eager_hint(tmp_path, monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed  # noqa: F401 - the class torch raises

    import archspec.train.setup as setup_mod

    class Failing(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            from torch._dynamo.exc import InternalTorchDynamoError

            raise InternalTorchDynamoError("cannot trace this\nlong dynamo trace ...")

    monkeypatch.setattr(setup_mod, "compile_model", lambda model, mode: Failing(model))
    spec = archspec.load_spec(write_file(tmp_path, "s.yaml", SPEC))
    recipe = load_recipe(str(write_file(tmp_path, "r.yaml", RECIPE)), overrides=["compile=true"])
    with pytest.raises(ArchspecError) as err:
        train(spec, recipe, device="cpu", runs_root=tmp_path / "runs", limit_train=64, limit_test=32,
              console=Console(file=io.StringIO()))
    text = str(err.value)
    assert "torch.compile (default) failed on this model: InternalTorchDynamoError: cannot trace this" in text
    assert "\n" not in text and "long dynamo trace" not in text
    assert err.value.hint == "train eagerly with --set compile=false"
