"""Multi-process training: `archspec train --devices N` under torchrun with DDP, on the CPU (Gloo).

The end-to-end test starts real processes (torchrun, two ranks): it is the slowest test of the
suite (~30 s, mostly two interpreters importing torch, twice), so one test covers a fresh run and a
resume. The rest checks the launcher and the single-process defaults in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import archspec
from archspec.errors import ArchspecError
from archspec.recipes import load_recipe
from archspec.train import distributed
from archspec.train.evaluation import evaluate
from archspec.train.loop import train
from archspec.train.rundir import read_metrics_csv

from .conftest import tiny_spec_text

ROOT = Path(__file__).resolve().parents[1]

# BatchNorm on purpose: its running statistics are per rank, and the checkpoint must still be the
# model whose test accuracy was reported.
SPEC = tiny_spec_text("tinybn", bn=True)

TRAIN_N, TEST_N, WORLD = 256, 64, 2


def _archspec(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in distributed.ENV_KEYS + (distributed.EXIT_FILE_ENV,)}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "archspec", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow  # six interpreters (torchrun + 2 ranks, twice) each import torch
def test_two_process_run_writes_one_coherent_run_dir_and_resumes(tmp_path):
    (tmp_path / "tiny.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    common = ["--recipe", "quick", "--data", "synthetic", "--limit-train", str(TRAIN_N), "--limit-test",
              str(TEST_N), "--device", "cpu", "--devices", str(WORLD)]
    first = _archspec(tmp_path, "train", "tiny.yaml", *common, "--epochs", "2", "--run-dir", "run")
    assert first.returncode == 0, first.stdout + first.stderr

    # Only rank 0 wrote (no second run dir, no stray files) and only rank 0 printed.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tiny.yaml"]
    run = tmp_path / "run"
    events = [p.name for p in run.glob("events.out.tfevents.*")]
    assert len(events) == 1  # TensorBoard: rank 0's only
    assert sorted(p.name for p in run.iterdir() if p.name not in events) == sorted(
        ["best.pt", "curves.png", "last.pt", "lr.png", "metrics.csv", "metrics.jsonl", "recipe.yaml", "spec.yaml",
         "steps.csv", "summary.json"])
    assert first.stdout.count("epoch 1/2") == 1 and first.stdout.count("summary:") == 1
    assert "x 2 processes (DDP)" in first.stdout

    rows = read_metrics_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == WORLD
    # The epoch metrics are all-reduced: they count every rank's shard, i.e. the whole training set.
    assert summary["images_seen"] == 2 * TRAIN_N
    for row in rows:  # an accuracy over 256 images is a multiple of 1/256, over one 128-image shard of 1/128
        assert 0.0 <= row["train_acc"] <= 1.0
        assert abs(row["train_acc"] * TRAIN_N - round(row["train_acc"] * TRAIN_N)) < 1e-9

    # last.pt holds the plain module's weights and loads into a single-process model; evaluated
    # alone it reproduces the test accuracy the two ranks reported (BN statistics are rank 0's).
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["world_size"] == WORLD and not any(k.startswith("module.") for k in ckpt["model"])
    spec = archspec.load_spec(tmp_path / "tiny.yaml", dataset="synthetic")
    archspec.build_model(spec).load_state_dict(ckpt["model"])
    result = evaluate(spec, run / "last.pt", device="cpu", limit_test=TEST_N)
    assert result.num_images == TEST_N
    assert result.test_acc == pytest.approx(rows[-1]["test_acc"])
    assert result.test_loss == pytest.approx(rows[-1]["test_loss"], rel=1e-5)

    # A single-process resume of a two-process run is refused (other shards, other steps per epoch)...
    recipe = load_recipe(str(run / "recipe.yaml"))
    with pytest.raises(ArchspecError, match="trained on 2 process"):
        train(spec, recipe, dataset="synthetic", device="cpu", resume=run, quiet=True, progress=False)

    # ... and a two-process one continues the run: every rank loads last.pt.
    again = _archspec(tmp_path, "train", "tiny.yaml", *common, "--epochs", "3", "--resume", "run")
    assert again.returncode == 0, again.stdout + again.stderr
    resumed = read_metrics_csv(run / "metrics.csv")
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    assert resumed[:2] == rows
    assert json.loads((run / "summary.json").read_text())["images_seen"] == 3 * TRAIN_N
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tiny.yaml"]


def test_devices_relaunches_the_same_command_under_torchrun(tmp_path, cli, monkeypatch):
    calls = []
    monkeypatch.setattr("archspec.cli.launch", lambda n, command: calls.append((n, command)) or 3)
    for key in distributed.ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    result = cli("train", "specs/tiny.yaml", "--devices", "4", "--device", "cpu", "--epochs", "5", "--set", "seed=1",
                 "--set", "augment=flip_crop", "--quiet", "--run-dir", tmp_path / "r", "--force")  # 4 > cores: forced
    assert result.exit_code == 3  # the launched run's exit code is the command's
    ((n, command),) = calls
    assert n == 4 and command[:2] == ["train", "specs/tiny.yaml"] and "--devices" not in command
    args = command[2:]
    pairs = {args[i]: args[i + 1] for i in range(len(args)) if args[i] in ("--device", "--epochs", "--run-dir")}
    assert pairs == {"--device": "cpu", "--epochs": "5", "--run-dir": str(tmp_path / "r")}
    assert [args[i + 1] for i, a in enumerate(args) if a == "--set"] == ["seed=1", "augment=flip_crop"]
    assert "--quiet" in args and "--force" in args and "--allow-import" not in args

    cmd = distributed.torchrun_command(4, command)
    assert cmd[:7] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4", "-m"]
    assert cmd[7:] == ["archspec", *command]


def test_devices_needs_the_hardware(cli, monkeypatch):
    monkeypatch.setattr("archspec.cli.launch", lambda n, command: pytest.fail("must not launch"))
    for key in distributed.ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    if not torch.cuda.is_available():
        result = cli("train", "x.yaml", "--devices", "2", "--device", "cuda")
        assert result.exit_code == 2 and "CUDA is not available" in result.output
    with pytest.raises(ArchspecError, match="at least 1"):
        distributed.check_devices(0, "cpu")


def test_single_process_group_is_local(monkeypatch):
    for key in distributed.ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    group = distributed.from_environment()
    assert not group.enabled and group.is_main and group.world_size == 1
    assert group.sum([torch.tensor(2.5), 3, torch.tensor(4, dtype=torch.int64)], "cpu") == [2.5, 3.0, 4.0]
    assert group.any(True, "cpu") and not group.any(False, "cpu")
    assert group.decide(lambda: "runs/x") == "runs/x"
    assert distributed.setup(group, torch.device("cpu")) == torch.device("cpu")
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(model, group, torch.device("cpu")) is model

    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ArchspecError, match="inconsistent torchrun environment"):
        distributed.from_environment()


def test_one_ctrl_c_delivered_twice_is_one_stop_request():
    stop = distributed.GroupStopRequest()
    import signal

    stop._handle(signal.SIGINT, None)
    stop._handle(signal.SIGINT, None)  # torchrun's forwarded copy: not "stop now"
    assert stop.requested and stop.signal_name == "SIGINT"
