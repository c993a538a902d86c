"""archspec/train: the run directory, metrics, divergence, pre-flight checks, eval and the CLI.

All runs are tiny: `synthetic` 3x8x8 images, a few dozen of them, 1-3 epochs on the CPU.
"""

from __future__ import annotations

import csv
import io
import json
import os
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console

import archspec
from archspec.atomic_write import atomic_torch_save, atomic_write_bytes, atomic_write_json, atomic_write_text
from archspec.errors import ArchspecError
from archspec.recipes import load_recipe
from archspec.train import checkpoint as ckpt_mod
from archspec.train.evaluation import evaluate
from archspec.train.loop import train
from archspec.train.rundir import METRIC_FIELDS, new_run_dir, read_metrics_csv, read_steps_csv

from .conftest import TINY_RECIPE, TINY_SPEC

WIDE_SPEC = TINY_SPEC.replace("name: tiny", "name: wide").replace("out: 4,", "out: 6,")

SUMMARY_KEYS = {"best_test_acc", "best_epoch", "final_test_acc", "epochs", "params", "train_seconds",
                "images_per_second", "spec", "recipe", "dataset", "device", "torch", "status"}


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _run(tmp_path: Path, *, spec_text: str = TINY_SPEC, recipe_text: str = TINY_RECIPE, overrides=(),
         **kwargs):
    spec = archspec.load_spec(_file(tmp_path, "tiny.yaml", spec_text))
    recipe = load_recipe(str(_file(tmp_path, "recipe.yaml", recipe_text)), overrides=list(overrides))
    out = io.StringIO()
    kwargs.setdefault("runs_root", tmp_path / "runs")
    kwargs.setdefault("limit_train", 64)
    kwargs.setdefault("limit_test", 32)
    result = train(spec, recipe, device="cpu", console=Console(file=out, width=120), **kwargs)
    return result, out.getvalue()


def test_run_directory_has_every_file(tmp_path):
    result, output = _run(tmp_path)
    run = result.run_dir
    assert result.status == "completed" and result.epochs_completed == 2
    assert run.parent == tmp_path / "runs" and run.name.startswith("tiny-tinyrecipe-")
    for name in ("spec.yaml", "recipe.yaml", "metrics.csv", "metrics.jsonl", "steps.csv", "summary.json",
                 "curves.png", "lr.png", "last.pt", "best.pt"):
        assert (run / name).is_file(), name
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]

    rows = read_metrics_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    with open(run / "metrics.csv") as handle:
        assert tuple(next(csv.reader(handle))) == METRIC_FIELDS
    jsonl = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in jsonl] == [1, 2] and set(jsonl[0]) == set(METRIC_FIELDS)
    for row in rows:
        assert 0.0 <= row["train_acc"] <= 1.0 and 0.0 <= row["test_acc"] <= 1.0
        assert row["train_loss"] > 0 and row["lr"] == pytest.approx(0.01)
        assert row["epoch_seconds"] > 0 and row["images_per_second"] > 0
    assert rows == result.metrics  # floats round-trip exactly through the CSV

    summary = json.loads((run / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["status"] == "completed" and summary["epochs"] == 2 and summary["spec"] == "tiny"
    assert summary["recipe"] == "tinyrecipe" and summary["dataset"] == "synthetic" and summary["device"] == "cpu"
    assert summary["params"] == archspec.summarize(archspec.load_spec(tmp_path / "tiny.yaml")).total_params
    assert summary["final_test_acc"] == rows[-1]["test_acc"]
    assert summary["best_test_acc"] == max(r["test_acc"] for r in rows)
    assert rows[summary["best_epoch"] - 1]["test_acc"] == summary["best_test_acc"]

    assert yaml.safe_load((run / "spec.yaml").read_text()) == archspec.load_spec(tmp_path / "tiny.yaml").resolved
    recipe_back = load_recipe(str(run / "recipe.yaml"))
    assert recipe_back.to_dict() == load_recipe(str(tmp_path / "recipe.yaml")).to_dict()
    for png in ("curves.png", "lr.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    last = torch.load(run / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and last["spec_name"] == "tiny" and len(last["metrics"]) == 2
    assert {"model", "optimizer", "scheduler", "rng", "spec_fingerprint", "data_epoch"} <= set(last)
    assert last["lr_history"].numel() == 2 * 4  # 64 images / 16 per batch, two epochs

    # steps.csv: one row per step; each epoch's batch losses average (all batches are 16) to its train_loss.
    steps = read_steps_csv(run / "steps.csv")
    assert [(r["step"], r["epoch"]) for r in steps] == [(i + 1, i // 4 + 1) for i in range(8)]
    assert [r["lr"] for r in steps] == pytest.approx(last["lr_history"].tolist())
    assert [r["loss"] for r in steps] == pytest.approx(last["step_losses"].tolist())
    for row in rows:
        losses = [r["loss"] for r in steps if r["epoch"] == row["epoch"]]
        assert sum(losses) / len(losses) == pytest.approx(row["train_loss"], rel=1e-6)
    assert len({r["loss"] for r in steps}) == 8  # really per step, not an epoch mean repeated
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["epoch"] == summary["best_epoch"]

    # stdout was not a terminal: plain lines, one per epoch, no escape codes
    assert "\x1b" not in output
    assert "epoch 1/2" in output and "epoch 2/2" in output and "summary: status completed" in output


def test_terminal_output_has_table_rows_and_summary_panel(tmp_path, tiny_spec, tiny_recipe):
    spec = archspec.load_spec(tiny_spec)
    recipe = load_recipe(str(tiny_recipe))
    out = io.StringIO()
    console = Console(file=out, width=140, force_terminal=True, color_system=None)
    train(spec, recipe, device="cpu", console=console, runs_root=tmp_path / "runs", limit_train=32, limit_test=16)
    text = out.getvalue()
    assert text.count("train loss") == 1  # one header, then one row per epoch
    assert "1/2" in text and "2/2" in text
    assert "tiny + tinyrecipe on synthetic" in text and "best test acc" in text and "throughput" in text

    quiet = io.StringIO()
    train(spec, recipe, device="cpu", console=Console(file=quiet, width=140, force_terminal=True),
          runs_root=tmp_path / "runs", limit_train=32, limit_test=16, quiet=True, progress=False)
    lines = quiet.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("summary: status completed")


def test_training_learns_and_weights_are_saved(tmp_path):
    result, _ = _run(tmp_path, overrides=["epochs=3"], limit_train=128)
    accs = [row["train_acc"] for row in result.metrics]
    assert accs[-1] > 0.5  # synthetic classes are learnable; chance is 0.25
    spec = archspec.load_spec(tmp_path / "tiny.yaml")
    model = archspec.build_model(spec)
    model.load_state_dict(torch.load(result.run_dir / "last.pt", weights_only=True)["model"])
    again = evaluate(spec, result.run_dir / "last.pt", device="cpu", limit_test=32)
    assert again.test_acc == pytest.approx(result.metrics[-1]["test_acc"])
    assert again.test_loss == pytest.approx(result.metrics[-1]["test_loss"], rel=1e-5)


def test_eval_every_skips_test_columns_but_always_evaluates_last(tmp_path):
    result, _ = _run(tmp_path, overrides=["epochs=3", "eval_every=2"])
    rows = read_metrics_csv(result.run_dir / "metrics.csv")
    assert [r["test_acc"] is None for r in rows] == [True, False, False]
    assert result.best_epoch in (2, 3)


def test_same_seed_same_run(tmp_path):
    a, _ = _run(tmp_path, overrides=["epochs=1"], runs_root=tmp_path / "a")
    b, _ = _run(tmp_path, overrides=["epochs=1"], runs_root=tmp_path / "b")
    assert a.run_dir != b.run_dir
    keys = ("train_loss", "train_acc", "test_loss", "test_acc")
    assert [[r[k] for k in keys] for r in a.metrics] == [[r[k] for k in keys] for r in b.metrics]


def test_divergence_stops_with_status_and_learning_rate(tmp_path):
    """Epoch 1 trains normally; the schedule then multiplies the lr by 1e8 and the loss blows up."""
    recipe = TINY_RECIPE.replace("{name: adam, lr: 0.01}", "{name: sgd, lr: 0.01}") + textwrap.dedent("""
        schedule:
          phases:
            - {type: constant, epochs: 1}
            - {type: constant, factor: 1.0e+8}
        """)
    result, output = _run(tmp_path, recipe_text=recipe, overrides=["epochs=5"], limit_train=160)
    assert result.status == "diverged" and result.epochs_completed == 1
    assert "epoch 2 at learning rate 1e+06" in result.message and "--lr 0.001" in result.message
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["epochs"] == 1
    for name in ("last.pt", "best.pt"):
        kept = torch.load(result.run_dir / name, weights_only=True)
        assert kept["epoch"] == 1  # the last good epoch, not the diverged one
        assert all(torch.isfinite(t).all() for t in kept["model"].values())
    assert [r["epoch"] for r in read_metrics_csv(result.run_dir / "metrics.csv")] == [1]
    assert "diverged" in output


def test_loss_blowup_is_divergence(tmp_path):
    """A finite but exploding loss (more than 10x the first) also stops the run."""
    from archspec.train.divergence import DIVERGENCE_FACTOR, loss_problem

    assert loss_problem(2.0, True, 2.3) is None
    assert "10x" in loss_problem(2.3 * DIVERGENCE_FACTOR + 1, True, 2.3)
    assert "NaN" in loss_problem(float("nan"), True, 2.3)
    assert "NaN" in loss_problem(1.0, False, 2.3)


def test_unwritable_run_dir_fails_before_training(tmp_path, monkeypatch):
    import archspec.data.loader as loader_module

    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded before the run directory was checked")

    monkeypatch.setattr(loader_module, "make_loaders", no_data)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the runs directory should be")
    with pytest.raises(ArchspecError, match="cannot create runs directory"):
        _run(tmp_path, runs_root=blocker)
    with pytest.raises(ArchspecError, match="not a directory"):
        _run(tmp_path, run_dir=blocker)
    if os.geteuid() != 0:  # root ignores permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ArchspecError, match="not writable"):
            _run(tmp_path, run_dir=locked)


def test_full_disk_fails_before_training(tmp_path, monkeypatch):
    import shutil as shutil_module

    import archspec.data.loader as loader_module
    from archspec.train import rundir

    monkeypatch.setattr(loader_module, "make_loaders", lambda *a, **k: pytest.fail("data loaded"))
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda path: shutil_module._ntuple_diskusage(10, 9, 1))
    with pytest.raises(ArchspecError, match="not enough free disk"):
        _run(tmp_path, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_run_dir_names_are_unique(tmp_path):
    first = new_run_dir(tmp_path, "my spec", "adam", now=0)
    second = new_run_dir(tmp_path, "my spec", "adam", now=0)
    third = new_run_dir(tmp_path, "my spec", "adam", now=0)
    assert first.name.startswith("my-spec-adam-") and second.name == first.name + "-2"
    assert third.name == first.name + "-3"


def test_existing_run_dir_with_a_run_is_refused(tmp_path):
    result, _ = _run(tmp_path, overrides=["epochs=1"])
    with pytest.raises(ArchspecError, match="already holds a run") as info:
        _run(tmp_path, run_dir=result.run_dir)
    assert "--resume" in info.value.hint


def test_precision_and_device_errors():
    from archspec.train.device import resolve_device, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu).autocast_dtype is None
    assert resolve_precision("bf16", cpu).autocast_dtype is torch.bfloat16
    with pytest.raises(ArchspecError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ArchspecError, match="unknown precision"):
        resolve_precision("fp8", cpu)
    with pytest.raises(ArchspecError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(ArchspecError, match="CUDA is not available"):
            resolve_device("cuda")


def test_bf16_autocast_trains_on_cpu(tmp_path):
    result, _ = _run(tmp_path, overrides=["epochs=1", "precision=bf16"])
    assert result.status == "completed" and result.summary["precision"] == "bf16"
    assert 0 < result.metrics[0]["train_loss"] < 10


def test_eval_refuses_a_checkpoint_of_another_spec(tmp_path):
    result, _ = _run(tmp_path, overrides=["epochs=1"])
    wide = archspec.load_spec(_file(tmp_path, "wide.yaml", WIDE_SPEC))
    with pytest.raises(ArchspecError) as info:
        evaluate(wide, result.run_dir, device="cpu")
    message = str(info.value)
    assert 'from spec "tiny"' in message and "conv1.weight" in message
    assert "[4, 3, 3, 3]" in message and "[6, 3, 3, 3]" in message
    assert "Missing key" not in message and "Unexpected key" not in message


def test_eval_per_class_counts_add_up(tmp_path):
    result, _ = _run(tmp_path, overrides=["epochs=1"])
    spec = archspec.load_spec(tmp_path / "tiny.yaml")
    res = evaluate(spec, result.run_dir, device="cpu", limit_test=32)
    assert [name for name, *_ in res.per_class] == ["class0", "class1", "class2", "class3"]
    assert sum(total for _, _, total, _ in res.per_class) == res.num_images == 32
    assert sum(correct for _, correct, _, _ in res.per_class) == round(res.test_acc * 32)
    assert res.checkpoint.endswith("best.pt") and res.epoch == 1


def test_corrupt_or_foreign_checkpoint_is_a_clear_error(tmp_path, tiny_spec):
    spec = archspec.load_spec(tiny_spec)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"definitely not a zip file")
    with pytest.raises(ArchspecError, match="cannot read checkpoint"):
        evaluate(spec, bad, device="cpu")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ArchspecError, match="not an archspec checkpoint"):
        evaluate(spec, foreign, device="cpu")
    with pytest.raises(ArchspecError, match="checkpoint not found"):
        evaluate(spec, tmp_path / "missing.pt", device="cpu")


def test_atomic_writes_replace_whole_files_and_leave_no_litter(tmp_path):
    target = tmp_path / "metrics.csv"
    atomic_write_text(target, "old\n")
    atomic_write_bytes(target, b"new\n")
    assert target.read_bytes() == b"new\n"
    atomic_write_json(tmp_path / "s.json", {"a": 1})
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": 1}

    ckpt = tmp_path / "last.pt"
    atomic_torch_save({"x": torch.arange(3)}, ckpt)
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises, the old file must survive
        atomic_torch_save({"x": lambda: None}, ckpt)
    assert torch.equal(torch.load(ckpt, weights_only=True)["x"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "metrics.csv", "s.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == 0o666 & ~umask  # not mkstemp's 0600


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    ckpt_mod.seed_everything(5)
    state = ckpt_mod.capture_rng()
    atomic_torch_save({"rng": state}, tmp_path / "rng.pt")
    expected = (torch.rand(3), random.random(), np.random.rand())
    ckpt_mod.seed_everything(99)
    ckpt_mod.restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


def test_cli_train_then_eval(tmp_path, cli, tiny_spec, tiny_recipe):
    spec, recipe = tiny_spec, tiny_recipe
    runs = tmp_path / "runs"
    result = cli("train", spec, "--recipe", recipe, "--epochs", "1", "--limit-train", "32", "--limit-test", "16",
                 "--device", "cpu", "--runs-dir", runs, "--seed", "7", "--batch-size", "8", "--lr", "0.005")
    assert result.exit_code == 0, result.output
    (run,) = runs.iterdir()
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert saved["seed"] == 7 and saved["batch_size"] == 8 and saved["epochs"] == 1
    assert saved["optimizer"]["lr"] == 0.005
    assert len(read_metrics_csv(run / "metrics.csv")) == 1

    shown = cli("eval", spec, "--checkpoint", run, "--device", "cpu", "--limit-test", "16")
    assert shown.exit_code == 0, shown.output
    assert "per-class accuracy" in shown.output and "class3" in shown.output and "test accuracy" in shown.output
    as_json = cli("eval", spec, "--checkpoint", run / "last.pt", "--device", "cpu", "--limit-test", "16", "--json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["images"] == 16 and len(data["per_class"]) == 4 and 0 <= data["test_acc"] <= 1


def test_cli_eval_and_resume_reuse_the_dataset_a_run_was_retargeted_to(tmp_path, cli):
    spec = _file(tmp_path, "digits.yaml", """
        name: digits
        dataset: mnist-mini
        layers:
          - conv: {out: 4, kernel: 3, padding: 1}
          - relu
          - pool: 4
          - flatten
          - linear: classes
        """)
    recipe = _file(tmp_path, "recipe.yaml", TINY_RECIPE)
    run = tmp_path / "run"
    trained = cli("train", spec, "--data", "synthetic", "--recipe", recipe, "--epochs", "1", "--limit-train", "32",
                  "--limit-test", "16", "--device", "cpu", "--run-dir", run)
    assert trained.exit_code == 0, trained.output
    assert yaml.safe_load((run / "spec.yaml").read_text())["input"] == [3, 32, 32]
    shown = cli("eval", spec, "--checkpoint", run / "best.pt", "--device", "cpu", "--limit-test", "16", "--json")
    assert shown.exit_code == 0, shown.output
    assert "trained on synthetic" in shown.stderr and json.loads(shown.stdout)["images"] == 16
    resumed = cli("train", spec, "--resume", run, "--device", "cpu", "--limit-train", "32", "--limit-test", "16")
    assert resumed.exit_code == 0, resumed.output


def test_cli_exit_codes_for_divergence_and_bad_input(tmp_path, cli):
    spec = _file(tmp_path, "tiny.yaml", TINY_SPEC)
    recipe = _file(tmp_path, "recipe.yaml", TINY_RECIPE.replace("adam", "sgd"))
    common = ["--recipe", recipe, "--limit-train", "160", "--limit-test", "16", "--device", "cpu"]
    diverged = cli("train", spec, *common, "--lr", "1e6", "--epochs", "3", "--runs-dir", tmp_path / "runs")
    assert diverged.exit_code == 3, diverged.output
    assert "learning rate" in diverged.output
    fp16 = cli("train", spec, *common, "--set", "precision=fp16", "--runs-dir", tmp_path / "runs2")
    assert fp16.exit_code == 2 and "fp16 needs a CUDA GPU" in fp16.output
    assert not (tmp_path / "runs2").exists()  # refused before a run directory was made
    missing = cli("eval", spec, "--checkpoint", tmp_path / "nope.pt", "--device", "cpu")
    assert missing.exit_code == 2 and "checkpoint not found" in missing.output


def test_drop_last_trains_only_full_batches_and_refuses_when_there_is_none(tmp_path):
    result, _ = _run(tmp_path, overrides=["epochs=2", "drop_last=true"], limit_train=70)  # batch 16
    assert result.status == "completed"
    assert result.summary["images_seen"] == 2 * 64  # 4 full batches an epoch; the 6 left over are dropped
    steps = read_steps_csv(result.run_dir / "steps.csv")
    assert [(r["step"], r["epoch"]) for r in steps] == [(i + 1, i // 4 + 1) for i in range(8)]
    kept, _ = _run(tmp_path, overrides=["epochs=1"], limit_train=70, runs_root=tmp_path / "kept")
    assert kept.summary["images_seen"] == 70
    with pytest.raises(ArchspecError) as err:
        _run(tmp_path, overrides=["drop_last=true", "batch_size=128"], limit_train=70, runs_root=tmp_path / "none")
    assert "no full training batch: 70 training images and batch size 128 with drop_last" in str(err.value)
    assert "drop_last=false" in err.value.hint
