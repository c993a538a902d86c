"""Experiment tracking: TensorBoard event files (read back with TensorBoard's own EventAccumulator) and
an MLflow store (read back with the MLflow client), each step exactly once across a resume.

Runs are tiny (synthetic 3x8x8 images, 64 of them, batch 16: 4 steps an epoch) on the CPU.
"""

from __future__ import annotations

import importlib.util
import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console

import archspec
from archspec.errors import ArchspecError
from archspec.recipes import load_recipe
from archspec.train import mlflow_log, tensorboard_log
from archspec.train.loop import train
from archspec.train.rundir import read_metrics_csv, read_steps_csv
from archspec.train.tracking import with_trackers

from .conftest import tiny_recipe_text, tiny_spec_text, write_file

SPEC = tiny_spec_text(bn=True)
RECIPE = tiny_recipe_text(3, seed=5, schedule="{type: cosine, interval: batch}")
STEPS_PER_EPOCH = 4

needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason='needs "archspec[mlflow]"')


def _run(tmp_path: Path, *, log=(), **kwargs):
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec_file, recipe_file = write_file(tmp_path, "tiny.yaml", SPEC), write_file(tmp_path, "recipe.yaml", RECIPE)
    recipe = with_trackers(load_recipe(str(recipe_file), overrides=kwargs.pop("overrides", [])), log)
    kwargs.setdefault("run_dir", tmp_path / "run")
    return train(archspec.load_spec(spec_file), recipe, device="cpu", limit_train=64, limit_test=32,
                 console=Console(file=io.StringIO()), progress=False, quiet=True, **kwargs)


def _events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def _scalars(accumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def _served(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """What `tensorboard --logdir` serves with its Python loader (`--load_fast=false`), which reads
    restart markers differently from the EventAccumulator above (its first one only starts a run)."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    accumulator = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    accumulator.Reload()
    return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in accumulator.Tensors(tag)]


def _expected(run_dir: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]], list[dict]]:
    steps = read_steps_csv(run_dir / "steps.csv")
    return ([(row["step"], row["loss"]) for row in steps], [(row["step"], row["lr"]) for row in steps],
            read_metrics_csv(run_dir / "metrics.csv"))


def test_tensorboard_events_hold_every_step_epoch_and_the_hparams(tmp_path):
    result = _run(tmp_path)
    assert result.status == "completed"
    assert len(list(result.run_dir.glob("events.out.tfevents.*"))) == 1  # by default, in the run directory
    events = _events(result.run_dir)
    losses, lrs, rows = _expected(result.run_dir)
    assert len(losses) == 3 * STEPS_PER_EPOCH
    # what `tensorboard --logdir runs` plots: each step's loss and lr (float32 in the event file) ...
    assert [s for s, _ in _scalars(events, "step/loss")] == [s for s, _ in losses]
    assert [v for _, v in _scalars(events, "step/loss")] == pytest.approx([v for _, v in losses], rel=1e-6)
    assert [v for _, v in _scalars(events, "step/lr")] == pytest.approx([v for _, v in lrs], rel=1e-6)
    assert len({v for _, v in lrs}) > 1  # a per-batch cosine: the rates really differ step to step
    # ... each epoch's metrics at the epoch's last step ...
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr"):
        assert _scalars(events, f"epoch/{key}") == [(row["epoch"] * STEPS_PER_EPOCH, pytest.approx(row[key], rel=1e-6))
                                                    for row in rows]
    # ... and the HParams row: the recipe's values with the final metrics.
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert _scalars(events, "final/best_test_acc") == [(12, pytest.approx(summary["best_test_acc"]))]
    assert _scalars(events, "final/test_loss") == [(12, pytest.approx(summary["final_test_loss"]))]
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["recipe.optimizer.lr"].number_value == pytest.approx(0.01)
    assert start.hparams["spec"].string_value == "tiny" and start.hparams["status"].string_value == "completed"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "final/best_test_acc" in {m.name.tag for m in experiment.metric_infos}
    assert not events.Tags()["graph"]  # the graph only with log_graph


def test_the_model_graph_is_optional_and_tracing_it_changes_nothing(tmp_path):
    plain = _run(tmp_path / "a", log=["none"])
    with_graph = _run(tmp_path / "b", log_graph=True)
    assert not list(plain.run_dir.glob("events.out.tfevents.*"))  # --log none: no event files
    assert _events(with_graph.run_dir).Tags()["graph"]
    # the trace ran on a copy in eval mode: BatchNorm statistics and RNG untouched, the run identical
    timing = {"epoch_seconds", "images_per_second"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in plain.metrics] == \
           [{k: v for k, v in r.items() if k not in timing} for r in with_graph.metrics]


class Killed(Exception):
    pass


def _fail_logging_at(monkeypatch, logger_class, epoch: int, before=None) -> None:
    """Make `logger_class` die in epoch `epoch`'s logging: as a kill -9 after that epoch's
    checkpoint was written and before the logger wrote it (`before(logger)` runs first)."""
    original = logger_class.on_epoch_end

    def on_epoch_end(self, run, row):
        if row["epoch"] == epoch:
            if before is not None:
                before(self)
            raise Killed
        original(self, run, row)

    monkeypatch.setattr(logger_class, "on_epoch_end", on_epoch_end)


def test_tensorboard_after_a_resume_shows_each_step_once(tmp_path, monkeypatch):
    straight = _run(tmp_path / "straight")

    def stale(logger):  # the dying session also wrote a step its checkpoint does not hold
        logger.writer.add_scalar("step/loss", 999.0, 10)
        logger.writer.flush()

    with monkeypatch.context() as patch:
        _fail_logging_at(patch, tensorboard_log.TensorBoardLogger, 2, before=stale)
        with pytest.raises(Killed):
            _run(tmp_path)
    run = tmp_path / "run"
    assert [r["epoch"] for r in read_metrics_csv(run / "metrics.csv")] == [1, 2]  # epoch 2 checkpointed, not logged
    assert (10, pytest.approx(999.0)) in _scalars(_events(run), "step/loss")  # shown until a resume purges it
    time.sleep(max(0.0, 1.05 - time.time() % 1))  # event files sort by their second: the next session's is later
    resumed = _run(tmp_path, resume=run)
    assert resumed.status == "completed" and resumed.epochs_completed == 3
    events = _events(run)
    losses, lrs, rows = _expected(run)
    assert _scalars(events, "step/loss") == [(s, pytest.approx(v, rel=1e-6)) for s, v in losses]
    assert _served(run, "step/loss") == [(s, pytest.approx(v, rel=1e-6)) for s, v in losses]
    assert [s for s, _ in _scalars(events, "step/lr")] == list(range(1, 13))
    assert [s for s, _ in _scalars(events, "epoch/test_acc")] == [4, 8, 12]
    assert [v for _, v in _scalars(events, "epoch/test_acc")] == pytest.approx([r["test_acc"] for r in rows])
    assert rows == [dict(r, epoch_seconds=rows[i]["epoch_seconds"], images_per_second=rows[i]["images_per_second"])
                    for i, r in enumerate(straight.metrics)]  # the resumed run is the uninterrupted one


def _mlflow(run_dir: Path):
    from mlflow.tracking import MlflowClient

    record = mlflow_log.read_record(run_dir)
    return MlflowClient(tracking_uri=record["tracking_uri"]), record["run_id"]


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@needs_mlflow
def test_mlflow_store_holds_the_runs_params_and_metrics(tmp_path):
    store = tmp_path / "mlruns"
    result = _run(tmp_path, log=["mlflow"], mlflow_uri=str(store))
    assert store.is_dir() and (result.run_dir / "mlflow.json").is_file()
    client, run_id = _mlflow(result.run_dir)
    assert mlflow_log.read_record(result.run_dir)["tracking_uri"] == store.resolve().as_uri()
    stored = client.get_run(run_id)
    assert stored.info.status == "FINISHED" and stored.info.run_name == "run"
    assert stored.data.params["recipe.optimizer.lr"] == "0.01" and stored.data.params["spec"] == "tiny"
    assert stored.data.params["recipe.schedule.type"] == "cosine" and stored.data.params["recipe.epochs"] == "3"
    assert stored.data.tags["archspec.run_dir"] == str(result.run_dir)
    assert stored.data.tags["archspec.status"] == "completed"
    losses, lrs, rows = _expected(result.run_dir)
    assert _history(client, run_id, "step/loss") == [(s, pytest.approx(v)) for s, v in losses]
    assert _history(client, run_id, "step/lr") == [(s, pytest.approx(v)) for s, v in lrs]
    assert _history(client, run_id, "epoch/test_acc") == [(4 * r["epoch"], pytest.approx(r["test_acc"])) for r in rows]
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert stored.data.metrics["final/best_test_acc"] == pytest.approx(summary["best_test_acc"])
    assert stored.data.metrics["final/epochs"] == 3
    # TensorBoard is still on: --log adds a tracker
    assert list(result.run_dir.glob("events.out.tfevents.*"))


@needs_mlflow
def test_mlflow_resume_continues_the_same_mlflow_run_without_duplicates(tmp_path, monkeypatch):
    store = str(tmp_path / "mlruns")
    with monkeypatch.context() as patch:
        _fail_logging_at(patch, mlflow_log.MlflowLogger, 2)
        with pytest.raises(Killed):
            _run(tmp_path, log=["mlflow"], mlflow_uri=store)
    client, run_id = _mlflow(tmp_path / "run")
    assert client.get_run(run_id).info.status == "FAILED"
    assert [s for s, _ in _history(client, run_id, "step/lr")] == [1, 2, 3, 4]  # epoch 2 checkpointed, not logged

    # The resumed run finds its MLflow run from mlflow.json (no --mlflow-uri needed) and fills the gap.
    resumed = _run(tmp_path, log=["mlflow"], resume=tmp_path / "run")
    assert resumed.status == "completed"
    assert _mlflow(tmp_path / "run")[1] == run_id
    losses, lrs, rows = _expected(tmp_path / "run")
    assert _history(client, run_id, "step/loss") == [(s, pytest.approx(v)) for s, v in losses]
    assert [s for s, _ in _history(client, run_id, "step/lr")] == list(range(1, 13))
    assert [s for s, _ in _history(client, run_id, "epoch/train_loss")] == [4, 8, 12]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1


@needs_mlflow
def test_cli_mlflow_uri_turns_mlflow_on_and_recipe_yaml_records_it(tmp_path, cli):
    import yaml

    write_file(tmp_path, "tiny.yaml", SPEC)
    result = cli("train", tmp_path / "tiny.yaml", "--recipe", "quick", "--epochs", "1", "--batch-size", "16",
                 "--limit-train", "32", "--limit-test", "16", "--device", "cpu", "--run-dir", tmp_path / "run",
                 "--mlflow-uri", tmp_path / "store", "--quiet")
    assert result.exit_code == 0, result.output
    client, run_id = _mlflow(tmp_path / "run")
    assert client.get_run(run_id).data.params["recipe.log"] == '["tensorboard", "mlflow"]'
    recipe = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert recipe["log"] == ["tensorboard", "mlflow"] and recipe["overrides"][-1] == "--log mlflow"


@needs_mlflow
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy's, inside MLflow's SQL store
def test_mlflow_default_store_is_mlflows_own_default_here(tmp_path, monkeypatch):
    """Without --mlflow-uri: MLflow's default, a SQLite file in the working directory (what `mlflow ui`
    started there reads), recorded with an absolute path so a resume from elsewhere finds it."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    result = _run(tmp_path, log=["mlflow"], overrides=["epochs=1"])
    assert (tmp_path / "mlflow.db").is_file()
    assert mlflow_log.read_record(result.run_dir)["tracking_uri"] == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    client, run_id = _mlflow(result.run_dir)
    assert client.get_run(run_id).data.params["recipe.optimizer.name"] == "adam"
    assert len(client.get_metric_history(run_id, "step/loss")) == STEPS_PER_EPOCH


def test_a_missing_tracker_package_is_one_line_naming_the_extra(tmp_path, cli, monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    with pytest.raises(ArchspecError, match="needs the mlflow package") as caught:
        _run(tmp_path, log=["mlflow"])
    assert 'pip install "archspec[mlflow]"' in caught.value.hint
    assert not (tmp_path / "run").exists()  # refused before the run directory is made

    write_file(tmp_path, "tiny.yaml", SPEC)
    result = cli("train", tmp_path / "tiny.yaml", "--log", "mlflow", "--device", "cpu", "--runs-dir", tmp_path / "r")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "needs the mlflow package" in result.output and "archspec[mlflow]" in result.output
    assert not (tmp_path / "r").exists()


def test_log_names_are_checked(tmp_path):
    recipe = load_recipe("quick")
    assert recipe.log == ("tensorboard",)
    assert with_trackers(recipe, ["mlflow"]).log == ("tensorboard", "mlflow")
    assert with_trackers(recipe, ["mlflow"]).overrides == ("--log mlflow",)  # recorded in recipe.yaml
    assert with_trackers(recipe, ["tensorboard"]) is recipe  # no change, nothing recorded
    assert with_trackers(recipe, ["none", "mlflow"]).log == ("mlflow",)
    assert with_trackers(recipe, ["none"]).log == ()
    with pytest.raises(ArchspecError, match='unknown tracker "wandb"'):
        with_trackers(recipe, ["wandb"])
    assert load_recipe("quick", overrides=["log=mlflow"]).log == ("mlflow",)
    assert load_recipe("quick", overrides=["log=[]"]).to_dict()["log"] == []
    with pytest.raises(ArchspecError, match="log"):
        load_recipe("quick", overrides=["log=wandb"])


def test_train_figures_take_format_and_dpi_and_a_bad_format_fails_first(tmp_path):
    result = _run(tmp_path, figure_format="svg", overrides=["epochs=1"], log=["none"])
    names = {p.name for p in result.run_dir.iterdir()}
    assert {"curves.svg", "lr.svg"} <= names and not {"curves.png", "lr.png"} & names
    assert (result.run_dir / "curves.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ArchspecError, match="unknown figure format"):
        _run(tmp_path, figure_format="bmp", run_dir=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
