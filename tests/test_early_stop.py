"""Early stopping (`early_stop:` in a recipe): the rule, the run it ends, and resume exactness."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import archspec
from archspec.errors import ArchspecError
from archspec.recipes import load_recipe
from archspec.recipes.recipe import EarlyStopConfig
from archspec.train.early_stop import early_stop_state
from archspec.train.loop import train
from archspec.train.rundir import read_metrics_csv

from .conftest import TINY_SPEC, quiet_console, tiny_recipe_text, without_timing, write_file

pytestmark = pytest.mark.usefixtures("no_run_plots")  # no test here looks at a run's curves.png / lr.png

# A learning rate so small that the test loss moves by far less than min_delta: after epoch 1
# nothing counts as an improvement, so patience 2 ends the 8-epoch run after epoch 3.
RECIPE = tiny_recipe_text(8, name="stalls", optimizer="{name: sgd, lr: 1.0e-9}", seed=2,
                          early_stop="{metric: test_loss, patience: 2, min_delta: 0.001}", log="none")


def _rows(values, key="test_loss"):
    return [{"epoch": i + 1, key: v} for i, v in enumerate(values)]


@pytest.mark.parametrize(("values", "config", "expected"), [
    ([1.0, 0.9, 0.95, 0.92, 0.91], EarlyStopConfig(patience=3), (0.9, 2, 3, 5)),
    ([1.0, 0.9, 0.95, 0.92], EarlyStopConfig(patience=3), (0.9, 2, 2, None)),
    ([1.0, 0.9, 0.85], EarlyStopConfig(patience=1, min_delta=0.1), (1.0, 1, 1, 2)),  # 0.1 less is not more than 0.1
    ([1.0, 0.8, 0.75], EarlyStopConfig(patience=1, min_delta=0.1), (0.8, 2, 1, 3)),
    ([0.5, 0.6, 0.7], EarlyStopConfig(metric="test_acc", patience=2), (0.7, 3, 0, None)),  # auto: accuracy up
    ([0.5, 0.6, 0.7], EarlyStopConfig(metric="test_acc", mode="min", patience=2), (0.5, 1, 2, 3)),
    ([1.0, None, None, 0.9, None], EarlyStopConfig(patience=1), (0.9, 4, 0, None)),  # unmeasured epochs: no count
    ([1.0, math.nan, 0.9], EarlyStopConfig(patience=2), (0.9, 3, 0, None)),  # NaN: not an improvement
    ([math.nan, math.nan], EarlyStopConfig(patience=2), (None, None, 2, 2)),
])
def test_the_rule(values, config, expected):
    state = early_stop_state(_rows(values, config.metric), config)
    assert (state.best, state.best_epoch, state.wait, state.stopped_epoch) == expected


def test_recipe_key_defaults_and_errors():
    config = load_recipe("quick", overrides=["early_stop={}"]).early_stop
    assert config == EarlyStopConfig(metric="test_loss", patience=3, min_delta=0.0, mode="auto")
    assert config.goal == "min" and EarlyStopConfig(metric="train_acc").goal == "max"
    recipe = load_recipe("quick", overrides=["early_stop.metric=test_acc", "early_stop.patience=5"])
    assert load_recipe("quick", overrides=[f"early_stop={json.dumps(recipe.to_dict()['early_stop'])}"]).early_stop \
        == recipe.early_stop  # to_dict() writes it back as recipe.yaml holds it
    assert "early_stop" not in load_recipe("quick").to_dict()
    for bad, message in [("early_stop.metric=val_loss", 'did you mean "train_loss"'),
                         ("early_stop.patience=0", ">= 1"), ("early_stop.min_delta=-1", ">= 0"),
                         ("early_stop.mode=up", "auto, min, max"), ("early_stop.wait=3", 'unknown key "wait"')]:
        with pytest.raises(ArchspecError, match=message):
            load_recipe("quick", overrides=[bad])


def _files(tmp_path: Path) -> tuple[Path, Path]:
    return write_file(tmp_path, "tiny.yaml", TINY_SPEC), write_file(tmp_path, "stalls.yaml", RECIPE)


def _train(tmp_path: Path, *overrides: str, **kwargs):
    spec, recipe = _files(tmp_path)
    kwargs.setdefault("run_dir", tmp_path / "run")
    return train(archspec.load_spec(spec), load_recipe(str(recipe), overrides=list(overrides)), device="cpu",
                 limit_train=48, limit_test=32, console=quiet_console(), progress=False, **kwargs)


def test_a_stalled_run_stops_early_completed_with_the_reason(tmp_path):
    result = _train(tmp_path)
    assert result.status == "completed" and result.epochs_completed == 3 and result.epochs == 8
    assert result.message.startswith("early stop after epoch 3: test_loss has not improved by more than 0.001")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 3 and summary["message"] == result.message
    rows = read_metrics_csv(tmp_path / "run" / "metrics.csv")
    assert summary["early_stop"] == {"metric": "test_loss", "patience": 2, "min_delta": 0.001, "mode": "auto",
                                     "goal": "min", "best": rows[0]["test_loss"], "best_epoch": 1, "wait": 2,
                                     "stopped_epoch": 3}
    assert abs(rows[2]["test_loss"] - rows[0]["test_loss"]) < 0.001  # the premise: it really stalled

    # Without the rule the same run goes on; with a generous patience it completes all epochs.
    full = _train(tmp_path, "early_stop.patience=20", "epochs=4", run_dir=tmp_path / "full")
    assert full.status == "completed" and full.epochs_completed == 4 and full.message == ""
    assert json.loads((tmp_path / "full" / "summary.json").read_text())["early_stop"]["stopped_epoch"] is None


def test_early_stopping_survives_resume_exactly(tmp_path):
    straight = _train(tmp_path, run_dir=tmp_path / "straight")
    first = _train(tmp_path, stop_after_epoch=2)
    assert first.status == "interrupted" and first.epochs_completed == 2
    resumed = _train(tmp_path, resume=tmp_path / "run")
    assert resumed.status == "completed" and resumed.epochs_completed == 3 and resumed.message == straight.message
    assert without_timing(resumed.metrics) == without_timing(straight.metrics)

    # Resuming a run that stopped early trains nothing: it is finished.
    weights = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    again = _train(tmp_path, resume=tmp_path / "run")
    assert again.status == "completed" and again.epochs_completed == 3 and again.message == straight.message
    assert without_timing(again.metrics) == without_timing(straight.metrics)
    after = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(weights[k], after[k]) for k in weights)

    # ... unless the resumed recipe's rule says otherwise.
    longer = _train(tmp_path, "early_stop.patience=3", resume=tmp_path / "run")
    assert longer.status == "completed" and longer.epochs_completed == 4
    assert longer.message.startswith("early stop after epoch 4")


def test_cli_exit_code_is_zero_and_the_reason_is_printed(tmp_path, cli):
    spec, recipe = _files(tmp_path)
    result = cli("train", spec, "--recipe", recipe, "--device", "cpu",
                 "--limit-train", "48", "--limit-test", "32", "--run-dir", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    assert "early stop after epoch 3" in result.output
