"""archspec/train's seams: run observers, the one scheduler rule, prepare_run, the loader's raw images
for whitening, and the package's lazily imported names. Tiny synthetic runs on the CPU."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

import archspec
from archspec.recipes import load_recipe
from archspec.recipes.build import lr_curve, scheduler_due
from archspec.train.checkpoint import load_checkpoint
from archspec.train.loop import SYNC_EVERY, train
from archspec.train.observers import RunObserver
from archspec.train.prepare import prepare_run
from archspec.train.rundir import read_metrics_csv

from .conftest import tiny_spec_text

pytestmark = pytest.mark.usefixtures("no_run_plots")  # no test here looks at a run's curves.png / lr.png

ROOT = Path(__file__).resolve().parents[1]

SPEC = tiny_spec_text("phases")


def _train(spec_path, recipe, tmp_path, **kwargs):
    kwargs.setdefault("limit_train", 64)
    return train(archspec.load_spec(spec_path), recipe, device="cpu", workers=0, limit_test=16,
                 run_dir=tmp_path / "run", console=Console(file=io.StringIO()), progress=False, **kwargs)


class Recorder(RunObserver):
    """Writes down every event it sees, and what the run directory held at on_epoch_end."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.steps: list[int] = []
        self.progress = []
        self.rows = []
        self.checkpointed: list[int] = []
        self.summary = None

    def running(self, run):
        @contextlib.contextmanager
        def held():
            self.events.append("open")
            yield
            self.events.append("close")

        return held()

    def on_start(self, run):
        self.events.append("start")

    def on_epoch_start(self, run, epoch):
        self.events.append(f"epoch {epoch}")

    def on_step(self, run, step):
        self.steps.append(step)

    def on_progress(self, run, progress):
        self.progress.append(progress)

    def on_epoch_trained(self, run, outcome):
        self.events.append(f"trained {len(outcome.step_losses)} steps")

    def on_epoch_end(self, run, row):
        self.rows.append(row)
        self.checkpointed.append(load_checkpoint(run.out / "last.pt")["epoch"])

    def on_finish(self, run, summary):
        self.events.append(f"finish {summary['status']}")
        self.summary = summary


def test_an_observer_sees_every_event_in_order(write, tmp_path):
    steps = SYNC_EVERY + 5
    recipe = load_recipe("adam", epochs=2, batch_size=4)
    recorder = Recorder()
    result = _train(write("s.yaml", SPEC), recipe, tmp_path, limit_train=4 * steps, observers=[recorder])
    assert result.status == "completed"
    assert recorder.events == ["start", "open", "epoch 1", f"trained {steps} steps", "epoch 2",
                               f"trained {steps} steps", "close", "finish completed"]
    assert recorder.steps == list(range(1, steps + 1)) * 2
    assert [(p.epoch, p.step) for p in recorder.progress] == [(1, SYNC_EVERY), (2, SYNC_EVERY)]
    assert all(p.loss > 0 and 0 <= p.acc <= 1 and p.images_per_second > 0 for p in recorder.progress)
    assert recorder.rows == result.metrics
    assert recorder.checkpointed == [1, 2]  # on_epoch_end comes after the epoch's checkpoint
    assert recorder.summary == result.summary


class StopAfter(RunObserver):
    """What early stopping will look like: end the run from on_epoch_end."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, run, row):
        if row["epoch"] == self.epoch:
            run.end("completed", f"early stop after epoch {row['epoch']}")


def test_an_observer_can_end_the_run_after_an_epoch(write, tmp_path):
    recipe = load_recipe("adam", epochs=4, batch_size=16)
    console = io.StringIO()
    result = train(archspec.load_spec(write("s.yaml", SPEC)), recipe, device="cpu", limit_train=64, limit_test=16,
                   run_dir=tmp_path / "run", console=Console(file=console, width=200), observers=[StopAfter(2)])
    assert (result.status, result.epochs_completed, result.message) == ("completed", 2, "early stop after epoch 2")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["status"], summary["epochs"], summary["epochs_planned"]) == ("completed", 2, 4)
    assert [row["epoch"] for row in read_metrics_csv(tmp_path / "run" / "metrics.csv")] == [1, 2]
    assert "early stop after epoch 2" in console.getvalue()  # the display says why the run ended there


def test_scheduler_due():
    assert [scheduler_due("epoch", s, 3) for s in range(1, 7)] == [False, False, True, False, False, True]
    assert all(scheduler_due("batch", s, 3) for s in range(1, 7))


@pytest.mark.parametrize("overrides", [
    ["schedule.type=step", "schedule.step_size=1", "schedule.gamma=0.5"],  # per epoch
    ["schedule.type=onecycle"],  # per batch
    ["schedule={phases: [{type: linear, start_factor: 0.1, epochs: 1}, {type: cosine}]}"],
])
def test_the_trained_lr_of_every_step_is_the_recipes_lr_curve(write, tmp_path, overrides):
    recipe = load_recipe("sgd", overrides=overrides, epochs=3, batch_size=16)
    result = _train(write("s.yaml", SPEC), recipe, tmp_path)  # 64 images: 4 steps per epoch
    trained = load_checkpoint(result.run_dir / "last.pt")["lr_history"].tolist()
    assert len(trained) == 12 and len(set(trained)) > 1
    assert trained == lr_curve(recipe, 4)


def test_prepare_run_picks_the_recipe_like_train(write, tmp_path):
    spec = write("s.yaml", SPEC.replace("name: phases", "name: phases\nrecipe: sgd"))
    assert prepare_run(spec).recipe.name == "sgd"  # the spec's `recipe:`
    assert prepare_run(write("t.yaml", SPEC)).recipe.name == "adam"  # the default
    assert prepare_run(spec, recipe="quick", epochs=3).recipe.epochs == 3
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text("name: own\nepochs: 5\nbatch_size: 8\noptimizer: {name: sgd, lr: 0.1}\n")
    own = prepare_run(spec, resume=run, overrides=["seed=4"])  # resuming: the run's own recipe
    assert (own.recipe.name, own.recipe.epochs, own.recipe.seed) == ("own", 5, 4)
    assert prepare_run(spec, recipe="adam", resume=run).recipe.name == "adam"  # named beats the run's


def test_a_dataset_less_spec_takes_the_recipes_dataset_in_train_and_sweep(write, tmp_path):
    from archspec.experiments.sweep import plan

    spec = write("s.yaml", SPEC.replace("dataset: synthetic\n", ""))
    recipe = write("r.yaml", """
        name: withdata
        epochs: 1
        batch_size: 8
        optimizer: {name: sgd, lr: 0.1}
        dataset: mnist-mini
        """)
    inputs = prepare_run(spec, recipe=str(recipe))
    assert archspec.load_spec(spec).dataset is None
    assert inputs.spec.dataset == "mnist-mini" and list(inputs.spec.input_shape) == [1, 28, 28]
    _, cells = plan([spec], str(recipe), grid=[("optimizer.lr", ["0.1", "0.2"])], out=tmp_path / "sw",
                    check_state=False)
    assert [c.spec.dataset for c in cells] == ["mnist-mini", "mnist-mini"]
    assert [c.spec.resolved for c in cells] == [inputs.spec.resolved] * 2


@pytest.mark.parametrize("augment, data_path, kind", [
    ("none", "auto", "DeviceBatches"),
    ("flip_crop", "device", "AugmentedDeviceBatches"),
    ("flip_crop", "loader", "AugmentedBatches"),
])
def test_every_training_loader_gives_its_raw_images_for_whitening(augment, data_path, kind):
    from archspec.data.loader import make_loaders

    bundle = make_loaders("synthetic", input_shape=(3, 8, 8), num_classes=4, batch_size=8, augment=augment,
                          limit_train=32, limit_test=8, seed=0, data_path=data_path, num_workers=0)
    reference = make_loaders("synthetic", input_shape=(3, 8, 8), num_classes=4, batch_size=8,
                             limit_train=32, limit_test=8, seed=0)
    assert type(bundle.train).__name__ == kind
    images, mean, std = bundle.train.raw_images(5)
    ref_images, ref_mean, ref_std = reference.train.raw_images(5)
    assert images.dtype == torch.uint8 and images.shape == (5, 3, 8, 8)
    assert torch.equal(images.cpu(), ref_images.cpu())  # as stored: not augmented, not shuffled
    assert torch.equal(mean.cpu(), ref_mean.cpu()) and torch.equal(std.cpu(), ref_std.cpu())
    assert mean.shape == std.shape == (3, 1, 1)


def _pythons(*codes: str) -> list[str]:
    """Each code's stdout, run in fresh interpreters side by side (each spends seconds importing torch)."""
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT) for code in codes]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outs.append(out)
    return outs


def test_the_package_names_are_the_functions_and_import_torch_only_when_used():
    out, alone = _pythons(
        "import sys, inspect\n"
        "import archspec.train\n"
        "print('torch' in sys.modules)\n"
        "from archspec.train import train, evaluate\n"  # loop imports the evaluation module first
        "from archspec.train import EvalResult, RunResult\n"
        "import archspec.train.evaluation\n"
        "from archspec.train import evaluate as again\n"
        "print(inspect.isfunction(train), inspect.isfunction(evaluate), again is evaluate,\n"
        "      inspect.isclass(EvalResult), inspect.isclass(RunResult))\n",
        "import inspect\nfrom archspec.train import evaluate\nprint(inspect.isfunction(evaluate))\n")
    assert out.split() == ["False", "True", "True", "True", "True", "True"]
    assert alone.strip() == "True"  # RecursionError before
