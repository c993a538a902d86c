"""Executors: a 4-cell sweep on a local Ray instance (2 CPUs) gives the local executor's numbers; a
Ray worker killed mid-cell is retried and resumes from its checkpoint; a study runs its trials as
Ray tasks reporting to one keeper actor; the folder lock; option and missing-extra errors.

The Ray tests share one Ray instance (module fixture): starting it costs several seconds, and every
worker process imports torch once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from archspec.errors import ArchspecError
from archspec.experiments import sweep as sw
from archspec.experiments.executors import LocalExecutor, RayExecutor, make_executor
from archspec.experiments.folder_lock import check_visible, lock_folder
from archspec.experiments.runs import load_run

from .conftest import ROOT, TINY_MNIST_SPEC, quiet_console, write_file

pytestmark = pytest.mark.usefixtures("no_run_plots")  # no test here looks at a run's curves.png / lr.png

LIMITS = {"limit_train": 1000, "limit_test": 300}


@pytest.fixture
def spec_file(tmp_path):
    return write_file(tmp_path, "tiny.yaml", TINY_MNIST_SPEC)


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as patch:  # workers import this checkout's archspec
        patch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def _one_thread(fn, *args, **kwargs):
    """Run `fn` with torch on one thread, as each 1-CPU Ray worker is (the thread count can change
    the order of float sums, and the test compares exact numbers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_ray_sweep_matches_the_local_sweep(ray_instance, spec_file, tmp_path):
    grid = sw.parse_grid(["optimizer.lr=0.001,0.003", "seed=1,2"])
    results = {}
    for name, executor in (("local", LocalExecutor()), ("ray", RayExecutor(cpus_per_trial=1))):
        out, cells = sw.plan([spec_file], "quick", grid=grid, out=tmp_path / name)
        result = _one_thread(sw.run, cells, out, device="cpu", console=quiet_console(), quiet=True,
                             executor=executor, **LIMITS)
        assert set(result.statuses.values()) == {"completed"} and len(result.statuses) == 4
        results[name] = {c.run_dir.name: load_run(c.run_dir) for c in cells}
        assert not getattr(executor, "started", False)  # it joined the fixture's instance...
        executor.close()
    assert ray_instance.is_initialized()  # ...so closing it left that instance running
    for cell, local_run in results["local"].items():
        ray_run = results["ray"][cell]
        assert not ray_run.problems and ray_run.summary["run_dir"] == str(tmp_path / "ray" / cell)
        keys = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")
        assert [[row[k] for k in keys] for row in ray_run.metrics] == \
            [[row[k] for k in keys] for row in local_run.metrics], cell
    accs = {round(r.metrics[-1]["test_acc"], 4) for r in results["ray"].values()}
    assert len(accs) > 1  # the four cells really are different runs


def _ray_cell_processes() -> list[int]:
    """PIDs of Ray workers running a cell task right now (Ray names the process after the task)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith("ray::cell"):
                pids.append(int(entry.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker through /proc")
def test_killed_ray_worker_is_retried_from_its_checkpoint(ray_instance, spec_file, tmp_path):
    out, cells = sw.plan([spec_file], "quick", sets=["epochs=6"], out=tmp_path / "ray")
    (cell,) = cells
    metrics = cell.run_dir / "metrics.jsonl"
    killed: dict[str, object] = {}

    def kill_after_epoch_2() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = metrics.read_text().count("\n") if metrics.is_file() else 0
            workers = _ray_cell_processes()
            if rows >= 2 and workers:
                killed["spec_mtime"] = (cell.run_dir / "spec.yaml").stat().st_mtime_ns
                os.kill(workers[0], signal.SIGKILL)
                killed["rows"] = rows
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_after_epoch_2)
    killer.start()
    executor = RayExecutor(cpus_per_trial=1, max_retries=2)
    console = quiet_console()
    result = sw.run(cells, out, device="cpu", console=console, quiet=True, executor=executor, **LIMITS)
    killer.join()
    assert killed, "the worker was never seen mid-cell"
    assert result.statuses == {1: "completed"}
    assert "(resumed)" in console.file.getvalue()  # the retry found the checkpoint...
    assert (cell.run_dir / "spec.yaml").stat().st_mtime_ns == killed["spec_mtime"]  # ...and did not start over
    ray_run = load_run(cell.run_dir)
    assert [r["epoch"] for r in ray_run.metrics] == [1, 2, 3, 4, 5, 6] and not ray_run.problems

    # Exact resume: the killed-and-retried cell ends with the numbers of an uninterrupted run.
    _, again = sw.plan([spec_file], "quick", sets=["epochs=6"], out=tmp_path / "local")
    _one_thread(sw.run, again, tmp_path / "local", device="cpu", console=quiet_console(), quiet=True, **LIMITS)
    local_run = load_run(again[0].run_dir)
    assert [r["test_acc"] for r in ray_run.metrics] == [r["test_acc"] for r in local_run.metrics]
    assert [r["train_loss"] for r in ray_run.metrics] == [r["train_loss"] for r in local_run.metrics]


@pytest.mark.slow
def test_tune_runs_trials_as_ray_tasks_with_one_study_keeper(ray_instance, spec_file, tmp_path):
    optuna = pytest.importorskip("optuna")
    from archspec.experiments import tune as tn

    space = tmp_path / "space.yaml"
    space.write_text("params:\n  optimizer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n  vars.width: [4, 8]\n"
                     "sampler: {name: random, seed: 1}\npruner: {name: median, startup_trials: 1}\n")
    study = tn.plan(spec_file, "quick", space, trials=4, out=tmp_path / "study")
    executor = RayExecutor(cpus_per_trial=1)
    console = quiet_console()
    result = tn.run(study, executor=executor, options=sw.TrainOptions(device="cpu", quiet=True, **LIMITS),
                    console=console)
    assert executor.slots() == 2
    assert len(result.rows) == 4 and {r["state"] for r in result.rows} <= {"COMPLETE", "PRUNED"}
    stored = optuna.load_study(study_name=tn.STUDY_NAME, storage=tn.storage_url(tmp_path / "study"))
    for trial in stored.trials:  # the keeper actor got every epoch's report of every trial task
        run = load_run(tmp_path / "study" / trial.user_attrs["run_dir"])
        assert sorted(trial.intermediate_values) == [r["epoch"] for r in run.metrics]
        assert run.status == {"COMPLETE": "completed", "PRUNED": "stopped"}[trial.state.name]
    assert {p.name for p in result.figures} >= {"history.png", "intermediate.png"}


def test_folder_lock_has_one_owner_and_workers_check_they_see_it(tmp_path):
    with lock_folder(tmp_path / "sweep") as lock:
        check_visible(tmp_path / "sweep", lock.token)
        with pytest.raises(ArchspecError, match=r"another archspec command is using this folder \(.* pid "):
            lock_folder(tmp_path / "sweep")
        with pytest.raises(ArchspecError, match="not visible on worker node"):
            check_visible(tmp_path / "elsewhere", lock.token)
    with lock_folder(tmp_path / "sweep"):  # released: the next command may take it
        pass


def test_executor_options_are_checked(cli, spec_file, monkeypatch):
    with pytest.raises(ArchspecError, match="--address, --gpus-per-trial only apply to --executor ray"):
        make_executor("local", address="auto", gpus_per_trial=1)
    with pytest.raises(ArchspecError, match='unknown executor "slurm"'):
        make_executor("slurm")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if archspec[ray] were not installed
    result = cli("sweep", spec_file, "--recipe", "quick", "--executor", "ray", "--device", "cpu")
    assert result.exit_code == 2
    assert "--executor ray needs the ray package" in result.output and 'pip install "archspec[ray]"' in result.output
