"""Resume: exactness, refusal of foreign checkpoints, Ctrl-C and kill -9 of a real training process.

The exactness test trains 3 epochs straight and 1 + resume-to-3 with dropout, per-sample
augmentation, Adam and a per-batch cosine schedule (so the RNG, optimizer and scheduler state all
have to come back) and compares metrics and weights bit for bit.
"""

from __future__ import annotations

import io
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console

import archspec
from archspec.errors import ArchspecError
from archspec.recipes import load_recipe
from archspec.train.loop import train
from archspec.train.rundir import read_metrics_csv

from .conftest import SLOW_SPEC, child_env, tiny_spec_text, without_timing, write_file

pytestmark = pytest.mark.usefixtures("no_run_plots")  # no test here looks at a run's curves.png / lr.png

DROPOUT_SPEC = tiny_spec_text("drop", pool=None, dropout=0.3)  # dropout: its RNG state must resume too

RESUME_RECIPE = """
name: resumable
epochs: 3
batch_size: 16
optimizer: {name: adam, lr: 0.01}
schedule: {type: cosine, interval: batch}
augment: flip_crop
workers: 0
seed: 11
"""

SLOW_RECIPE = """
name: slowrecipe
epochs: {epochs}
batch_size: 32
optimizer: {{name: sgd, lr: 0.002}}
seed: 5
"""

def _train(spec_path: Path, recipe_path: Path, **kwargs):
    spec = archspec.load_spec(spec_path)
    recipe = load_recipe(str(recipe_path))
    kwargs.setdefault("limit_train", 48)
    kwargs.setdefault("limit_test", 32)
    return train(spec, recipe, device="cpu", console=Console(file=io.StringIO()), **kwargs)


def test_resume_ends_exactly_where_an_uninterrupted_run_does(tmp_path):
    spec = write_file(tmp_path, "drop.yaml", DROPOUT_SPEC)
    recipe = write_file(tmp_path, "recipe.yaml", RESUME_RECIPE)
    straight = _train(spec, recipe, run_dir=tmp_path / "straight")
    assert straight.status == "completed"

    first = _train(spec, recipe, run_dir=tmp_path / "pieces", stop_after_epoch=1)
    assert first.status == "interrupted" and first.epochs_completed == 1
    assert "--resume" in first.resume_command
    second = _train(spec, recipe, resume=tmp_path / "pieces")
    assert second.status == "completed" and second.run_dir == tmp_path / "pieces"

    assert without_timing(second.metrics) == without_timing(straight.metrics)
    assert [r["epoch"] for r in read_metrics_csv(tmp_path / "pieces" / "metrics.csv")] == [1, 2, 3]
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "pieces" / "last.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert torch.equal(a["lr_history"], b["lr_history"])
    assert torch.equal(a["step_losses"], b["step_losses"]) and a["step_losses"].numel() == a["lr_history"].numel()
    assert (tmp_path / "straight" / "steps.csv").read_text() == (tmp_path / "pieces" / "steps.csv").read_text()
    assert a["scheduler"] == b["scheduler"]
    assert (a["best_epoch"], a["best_test_acc"]) == (b["best_epoch"], b["best_test_acc"])


def test_resume_from_a_finished_run_trains_nothing_more(tmp_path):
    spec = write_file(tmp_path, "drop.yaml", DROPOUT_SPEC)
    recipe = write_file(tmp_path, "recipe.yaml", RESUME_RECIPE.replace("epochs: 3", "epochs: 1"))
    done = _train(spec, recipe, run_dir=tmp_path / "run")
    again = _train(spec, recipe, resume=tmp_path / "run")
    assert again.status == "completed" and again.epochs_completed == 1
    assert without_timing(again.metrics) == without_timing(done.metrics)


def test_resume_refuses_a_checkpoint_from_another_spec(tmp_path):
    spec = write_file(tmp_path, "drop.yaml", DROPOUT_SPEC)
    recipe = write_file(tmp_path, "recipe.yaml", RESUME_RECIPE)
    _train(spec, recipe, run_dir=tmp_path / "run", stop_after_epoch=1)

    wider = write_file(tmp_path, "wider.yaml", DROPOUT_SPEC.replace("out: 4,", "out: 8,").replace("drop", "wider", 1))
    with pytest.raises(ArchspecError) as info:
        _train(wider, recipe, resume=tmp_path / "run")
    text = str(info.value)
    assert 'from spec "drop"' in text and 'layer "conv1.weight" is [4, 3, 3, 3] in the checkpoint' in text
    assert "[8, 3, 3, 3] in the spec" in text and "state_dict" not in text

    renamed = write_file(tmp_path, "renamed.yaml", DROPOUT_SPEC.replace("name: drop", "name: other"))
    with pytest.raises(ArchspecError, match='checkpoint is from spec "drop", not "other"'):
        _train(renamed, recipe, resume=tmp_path / "run")

    edited = write_file(tmp_path, "edited.yaml", DROPOUT_SPEC.replace("dropout: 0.3", "dropout: 0.5"))
    with pytest.raises(ArchspecError, match="has changed since this checkpoint was written"):
        _train(edited, recipe, resume=tmp_path / "run")

    with pytest.raises(ArchspecError, match="no last.pt"):
        _train(spec, recipe, resume=tmp_path)

    # The optimizer/schedule state comes from the checkpoint, so a recipe that changes them is refused
    # (an Adam state loaded into SGD would otherwise fail with a KeyError deep inside torch).
    sgd = write_file(tmp_path, "sgd.yaml", RESUME_RECIPE.replace("{name: adam, lr: 0.01}", "{name: sgd, lr: 0.1}"))
    with pytest.raises(ArchspecError, match="cannot resume with a different optimizer") as info:
        _train(spec, sgd, resume=tmp_path / "run")
    assert "'adam'" in str(info.value) and "'sgd'" in str(info.value)
    assert yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["optimizer"]["name"] == "adam"


# --- real processes -------------------------------------------------------------------------


def _cmd(spec: Path, *args) -> list[str]:
    return [sys.executable, "-m", "archspec", "train", str(spec), "--device", "cpu", *map(str, args)]


def _env() -> dict[str, str]:
    return child_env(PYTHONUNBUFFERED="1")


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"training exited early ({proc.returncode}):\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the training process")
        time.sleep(0.02)


def _epochs_written(run: Path) -> int:
    try:
        return max(0, len((run / "metrics.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


@pytest.mark.slow  # real `python -m archspec` processes: each start imports torch
def test_ctrl_c_saves_and_the_run_resumes_without_gaps(tmp_path, cli):
    epochs = 4
    spec = write_file(tmp_path, "slow.yaml", SLOW_SPEC)
    recipe = write_file(tmp_path, "slow_recipe.yaml", SLOW_RECIPE.format(epochs=epochs))
    run = tmp_path / "run"
    proc = subprocess.Popen(_cmd(spec, "--recipe", recipe, "--run-dir", run, "--limit-train", 384,
                                 "--limit-test", 64), cwd=tmp_path, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(lambda: _epochs_written(run) >= 1, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert f"--resume {run}" in out
    last = torch.load(run / "last.pt", weights_only=True)
    done = last["epoch"]
    assert 1 <= done < epochs
    assert [r["epoch"] for r in read_metrics_csv(run / "metrics.csv")] == list(range(1, done + 1))

    # no --limit-* here: a resumed run keeps the data subset it was started with
    resumed = cli("train", spec, "--resume", run, "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    assert [r["epoch"] for r in read_metrics_csv(run / "metrics.csv")] == list(range(1, epochs + 1))
    final = torch.load(run / "last.pt", weights_only=True)
    assert final["epoch"] == epochs and final["limits"] == {"train": 384, "test": 64}
    assert final["lr_history"].numel() == epochs * 12  # 384 images / 32 per batch, every epoch


@pytest.mark.slow  # real `python -m archspec` processes: each start imports torch
def test_kill_9_at_random_moments_then_resume_has_each_epoch_once(tmp_path):
    epochs = 12
    spec = write_file(tmp_path, "slow.yaml", SLOW_SPEC)
    recipe = write_file(tmp_path, "slow_recipe.yaml", SLOW_RECIPE.format(epochs=epochs))
    run = tmp_path / "run"
    data = ["--limit-train", 256, "--limit-test", 32]
    rng = random.Random(1234)

    def start(args, n: int):
        log = tmp_path / f"log{n}.txt"
        handle = open(log, "w")  # noqa: SIM115 - closed below, after the process ends
        proc = subprocess.Popen(_cmd(spec, *args, *data), cwd=tmp_path, env=_env(), stdout=handle,
                                stderr=subprocess.STDOUT, text=True)
        return proc, handle, log

    proc, handle, log = start(["--recipe", recipe, "--run-dir", run], 0)
    killed_at = []  # epochs in last.pt right after each kill
    for n in range(1, 3):
        # Kill at a random moment of training (not while still importing torch): after a random number of
        # further epochs, plus a random fraction of a second (epochs take ~0.05-0.5 s here).
        target = _epochs_written(run) + rng.randint(0, 3)
        _wait_for(lambda log=log, target=target: "train: spec slow" in log.read_text()
                  and _epochs_written(run) >= target, proc)
        time.sleep(rng.uniform(0.0, 0.15))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        handle.close()
        killed_at.append(torch.load(run / "last.pt", weights_only=True)["epoch"])  # never torn
        proc, handle, log = start(["--resume", run], n)
    proc.wait(timeout=120)
    handle.close()
    assert proc.returncode == 0, log.read_text()
    assert killed_at and min(killed_at) < epochs  # at least one kill landed mid-run
    rows = read_metrics_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    assert len((run / "metrics.jsonl").read_text().splitlines()) == epochs
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == epochs
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
