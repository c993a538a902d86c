"""archspec tune: the search-space file, a 6-trial TPE study with pruning on mnist-mini that is killed
(SIGKILL) and resumed, compare/report over its trials, the on_epoch hook, spec vars, missing extras.

Trials are tiny (a width-8/16 conv on 2,000 mnist-mini digits, 2 epochs, ~0.3 s each): the study
test's time goes mostly into one extra interpreter start (the process that is killed).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import archspec
from archspec.errors import ArchspecError
from archspec.experiments import space as sp
from archspec.experiments import tune as tn
from archspec.experiments.runs import EXPECTED_FILES, load_run

from .conftest import ROOT, TINY_MNIST_SPEC, child_env, tiny_spec_text, write_file

optuna = pytest.importorskip("optuna")

pytestmark = pytest.mark.usefixtures("no_run_plots")  # no test here looks at a run's curves.png / lr.png


# Trials 0 and 1 are never pruned (startup_trials: 2): the test kills the study during trial 1.
SPACE = """
metric: test_acc
params:
  optimizer.lr: {low: 1.0e-5, high: 3.0e-2, log: true}
  vars.width: [8, 16]
sampler: {name: tpe, seed: 0}
pruner: {name: median, startup_trials: 2}
"""

BN_DROPOUT_SPEC = tiny_spec_text(bn=True, dropout=0.2)  # the spec test_compare compares runs of

DATA = ["--limit-train", "2000", "--limit-test", "500", "--device", "cpu"]


@pytest.fixture
def study_files(tmp_path):
    return write_file(tmp_path, "tiny.yaml", TINY_MNIST_SPEC), write_file(tmp_path, "space.yaml", SPACE)


def _env() -> dict[str, str]:
    """A child that is no rank of a distributed launch, on one torch thread."""
    env = child_env(OMP_NUM_THREADS="1")
    return {k: v for k, v in env.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}


def _rows(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except OSError:
        return 0


def _kill_during_trial_1(args: list[str], cwd: Path) -> None:
    """Start `archspec tune` and SIGKILL it once trial 1 has finished epoch 1 (so it is mid-run)."""
    proc = subprocess.Popen([sys.executable, "-m", "archspec", *args], cwd=cwd, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = cwd / "out" / "trial-0001" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    try:
        while _rows(metrics) < 1:
            assert proc.poll() is None, f"tune ended before it could be killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "trial 1 never finished an epoch"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()


@pytest.mark.slow
def test_study_with_pruning_survives_sigkill_and_its_trials_are_runs(study_files, tmp_path, cli, monkeypatch):
    spec, space = study_files
    monkeypatch.chdir(tmp_path)
    args = ["tune", spec.name, "--recipe", "quick", "--space", space.name, "--trials", "6", "--out", "out", *DATA,
            "--quiet"]
    _kill_during_trial_1(args, tmp_path)
    out = tmp_path / "out"
    killed_spec = (out / "trial-0001" / "spec.yaml").stat().st_mtime_ns
    storage = tn.storage_url(out)
    before = optuna.load_study(study_name=tn.STUDY_NAME, storage=storage)
    assert [t.state.name for t in before.trials] == ["COMPLETE", "RUNNING"]  # killed mid-trial, not finished

    result = cli(*args)  # the same command continues the study
    assert result.exit_code == 0, result.output
    assert "trial 1 was cut off by a stopped command" in result.output

    study = optuna.load_study(study_name=tn.STUDY_NAME, storage=storage)
    trials = study.trials
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 1]
    assert trials[1].state.name == "FAIL" and len(retry) == 1
    assert retry[0].params == trials[1].params and retry[0].user_attrs["run_dir"] == "trial-0001"
    # ... resumed from its epoch-1 checkpoint (a fresh start would have rewritten spec.yaml):
    assert (out / "trial-0001" / "spec.yaml").stat().st_mtime_ns == killed_spec
    assert retry[0].state.name == "COMPLETE" and sorted(retry[0].intermediate_values) == [1, 2]

    counted = [t for t in trials if t.number != 1]
    states = [t.state.name for t in counted]
    assert len(counted) == 6 and set(states) <= {"COMPLETE", "PRUNED"}
    assert states.count("PRUNED") > 0

    # Every trial's run directory is complete, and its status says how the trial ended.
    run_dirs = sorted(t.user_attrs["run_dir"] for t in counted)
    assert run_dirs == sorted(p.name for p in out.iterdir() if p.is_dir()) and len(set(run_dirs)) == 6
    for trial in counted:
        run = load_run(out / trial.user_attrs["run_dir"])
        assert not run.problems and all((run.path / name).is_file() for name in (*EXPECTED_FILES, "last.pt"))
        pruned = trial.state.name == "PRUNED"
        assert run.status == ("stopped" if pruned else "completed")
        assert [r["epoch"] for r in run.metrics] == ([1] if pruned else [1, 2])
        assert run.metrics[-1]["test_acc"] == pytest.approx(list(trial.intermediate_values.values())[-1])
        if not pruned:
            assert trial.value == pytest.approx(run.metrics[-1]["test_acc"])
        assert run.recipe["optimizer"]["lr"] == pytest.approx(trial.params["optimizer.lr"])
        assert run.spec["layers"][0]["conv"]["out"] == trial.params["vars.width"]  # the spec var was searched

    listed = json.loads(cli("compare", out, "--json").stdout)
    assert sorted(row["run"] for row in listed) == run_dirs

    for name in ("history.png", "importance.png", "intermediate.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = tmp_path / "report.html"
    assert cli("report", out, "-o", page).exit_code == 0
    html = page.read_text()
    assert f"<h2>Search: {out}</h2>" in html and html.count('alt="optimisation history"') == 1
    assert 'alt="parameter importance"' in html

    # The same folder with another search definition is refused, not mixed in.
    other = cli("tune", spec.name, "--recipe", "quick", "--space", space.name, "--trials", "6", "--out", "out",
                "--pruner", "none", *DATA)
    assert other.exit_code == 2 and "other settings (differs in: space)" in other.output


def test_space_file_is_checked_against_recipe_and_spec(study_files, write):
    spec, _ = study_files
    good = write("good.yaml", """
        params:
          optimizer.lr: {low: 1.0e-4, high: 1.0e-1, log: true}
          batch_size: {type: int, low: 32, high: 128, step: 32}
          augment: [none, flip_crop]
          vars.width: {type: int, low: 4, high: 16}
        """)
    study = tn.plan(spec, "quick", good, trials=3)
    assert [p.kind for p in study.space.params] == ["float", "int", "choice", "int"]
    assert study.space.metric == "test_acc" and study.space.direction == "maximize"
    assert study.space.sampler == {"name": "tpe"} and study.space.pruner == {"name": "median"}
    assert study.space.params[1].grid_values() == [32, 64, 96, 128]
    cell = study.cell(tn.Ticket(7, {"optimizer.lr": 0.01, "batch_size": 64, "augment": "flip_crop",
                                    "vars.width": 12}, "trial-0007"))
    assert cell.recipe.optimizer.lr == 0.01 and cell.recipe.batch_size == 64 and cell.recipe.augment == "flip_crop"
    assert cell.spec.resolved["layers"][0]["conv"]["out"] == 12 and cell.run_dir == study.out / "trial-0007"
    assert study.out == Path("runs") / "tune-tinymnist-good"

    grid = write("grid.yaml", "params:\n  optimizer.lr: [0.1, 0.01]\n  vars.width: [4, 8, 16]\nsampler: grid\n")
    assert tn.plan(spec, "quick", grid).trials == 6  # the grid's size


@pytest.mark.parametrize("text, where, message", [
    ("params:\n  optimizer.lrr: {low: 0.1, high: 1}\n", "2:3", 'unknown key "lrr" (did you mean "lr"?)'),
    ("params:\n  optimizer.lr: {low: 1, high: 0.1}\n", "2:32", "high (0.1) must be greater than low (1)"),
    ("params:\n  optimizer.lr: {low: 0, high: 1, log: true}\n", "2:23", "a log range needs low > 0"),
    ("params:\n  optimizer.lr: {low: 0.1, hi: 1}\n", "2:28", 'unknown key "hi"'),
    ("params:\n  batch_size: {type: int, low: 1.5, high: 8}\n", "2:32", "must be a whole number"),
    ("params:\n  vars.depth: [1, 2]\n", "2:3", 'the spec has no variable "depth"'),
    ("params:\n  vars.width: [0, 4]\n", "2:3", "vars.width=0 does not work"),
    ("params:\n  optimizer.lr: {low: 0.1, high: 1}\nsampler: grid\n", "2:3", "the grid sampler needs a list"),
    ("params:\n  augment: [none, none]\n", "2:12", "a value is listed twice"),
    ("params: {}\n", "1:9", "no parameters to search"),
    ("metric: accuracy\nparams:\n  optimizer.lr: [0.1]\n", "1:9", "must be one of test_acc"),
    ("params:\n  optimizer.lr: [0.1]\npruner: {name: median, startup: 2}\n", "3:24", 'unknown key "startup"'),
])
def test_space_file_errors_are_located_one_liners(study_files, write, text, where, message):
    spec, _ = study_files
    path = write("bad.yaml", text)
    with pytest.raises(ArchspecError) as info:
        tn.plan(spec, "quick", path, trials=2)
    error = str(info.value)
    assert error.startswith(f"{path}:{where}: "), error
    assert message in error and "\n" not in error


def test_sampler_and_trials_options_are_checked(study_files, cli):
    spec, space = study_files
    with pytest.raises(ArchspecError, match='unknown sampler "tpf" \\(did you mean "tpe"\\?\\)'):
        sp.read_space(space, sampler="tpf")
    with pytest.raises(ArchspecError, match="give --trials N"):
        tn.plan(spec, "quick", space)
    result = cli("tune", spec, "--recipe", "quick", "--space", space, "--trials", "2", "--parallel", "2")
    assert result.exit_code == 2 and "--parallel needs --executor ray" in result.output


def test_without_optuna_the_command_names_the_extra(study_files, cli, monkeypatch, tmp_path):
    spec, space = study_files
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now raises ImportError
    result = cli("tune", spec, "--recipe", "quick", "--space", space, "--trials", "2", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "archspec tune needs the optuna package" in result.output
    assert 'pip install "archspec[tune]"' in result.output
    assert not (tmp_path / "o").exists()  # nothing trained, nothing written
    assert cli("tune", spec, "--recipe", "quick", "--space", space, "--trials", "2", "--dry-run").exit_code == 0


def test_an_observer_can_stop_a_run_for_good(tmp_path):
    """The seam the pruner uses (ReportToStudy): `run.end("stopped", ...)` from on_epoch_end ends the
    run after that epoch, and a sweep or study treats a stopped cell as finished, never resumed."""
    from archspec.experiments import sweep as sw
    from archspec.recipes import load_recipe
    from archspec.train.loop import train
    from archspec.train.observers import RunObserver
    from archspec.train.state import STATUS_STOPPED

    class StopAfterTwo(RunObserver):
        def __init__(self):
            self.seen = []

        def on_epoch_end(self, run, row):
            self.seen.append([r["epoch"] for r in run.history.metrics])
            if row["epoch"] == 2:
                run.end(STATUS_STOPPED, "stopped after epoch 2: enough")

    write_file(tmp_path, "tiny.yaml", BN_DROPOUT_SPEC)
    spec = archspec.load_spec(tmp_path / "tiny.yaml")
    recipe = load_recipe("quick", overrides=["epochs=3", "batch_size=16"])
    observer = StopAfterTwo()
    result = train(spec, recipe, device="cpu", run_dir=tmp_path / "run", limit_train=64, limit_test=32,
                   quiet=True, progress=False, observers=[observer])
    assert observer.seen == [[1], [1, 2]]
    assert result.status == "stopped" and result.epochs_completed == 2
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["message"] == "stopped after epoch 2: enough"
    cell = sw.Cell(1, tmp_path / "tiny.yaml", "tiny", (), [], tmp_path / "run", spec=spec, recipe=recipe)
    assert sw.cell_state(cell) == "done"


def test_spec_vars_can_be_set_when_loading(study_files):
    spec, _ = study_files
    assert archspec.load_spec(spec).resolved["layers"][0]["conv"]["out"] == 8
    wide = archspec.load_spec(spec, vars={"width": 32})
    assert wide.vars["width"] == 32 and wide.resolved["layers"][0]["conv"]["out"] == 32
    with pytest.raises(ArchspecError, match='no variable "widht" to set \\(did you mean "width"\\?\\)'):
        archspec.load_spec(spec, vars={"widht": 4})


def test_a_diverged_trial_counts_as_the_worst_value(tmp_path, write):
    """Optuna's samplers skip failed trials; a diverged one must count, as the worst score, or a
    learning-rate search keeps proposing learning rates that diverge."""
    spec = write("tiny.yaml", BN_DROPOUT_SPEC)
    space = write("lr.yaml", "params:\n  optimizer.lr: [1.0e+6, 1.0e-3]\nsampler: grid\npruner: none\n")
    study = tn.plan(spec, "quick", space, out=tmp_path / "study", sets=["batch_size=16"])
    result = tn.run(study, options=tn.TrainOptions(device="cpu", limit_train=64, limit_test=32, quiet=True,
                                                   progress=False))
    by_lr = {r["params"]["optimizer.lr"]: r for r in result.rows}
    assert by_lr[1e6]["state"] == "COMPLETE" and by_lr[1e6]["value"] == 0.0 and by_lr[1e6]["status"] == "diverged"
    assert load_run(tmp_path / "study" / by_lr[1e6]["run_dir"]).status == "diverged"
    assert by_lr[1e-3]["value"] > 0 and result.best["params"] == {"optimizer.lr": 1e-3}


def test_shipped_and_documented_search_spaces_are_valid(write):
    import re

    for path in sorted((ROOT / "specs" / "spaces").glob("*.yaml")):
        study = tn.plan(ROOT / "specs" / "tutorial.yaml", "sgd", path, trials=12)
        assert study.space.params, path
    text = (ROOT / "docs" / "experiments.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if b.lstrip().startswith(("metric", "params"))]
    assert blocks
    for i, block in enumerate(blocks):
        assert sp.read_space(write(f"doc{i}.yaml", block)).params
