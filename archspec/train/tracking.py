"""Experiment trackers: what the recipe's `log:` names, and what every tracker logs.

A tracker is one `RunObserver` class (archspec.train.observers) in its own module:
`tensorboard_log.TensorBoardLogger` (event files in the run directory; the default) and
`mlflow_log.MlflowLogger` (an MLflow tracking store; `log: [tensorboard, mlflow]` or
`archspec train --log mlflow`). This module holds what they share, so both show the same run
under the same names:

    step/loss, step/lr                 every optimizer step (x: the global step, from 1)
    epoch/<metrics.csv column>         every epoch, at the global step of the epoch's last step
    final/<summary.json key>           once, when the run ends (with the hyperparameters)

Why loggers catch up instead of logging as they go: they log what the run's `History` holds and the
store does not have yet, after each epoch's checkpoint is written. What was logged therefore always
belongs to a checkpointed epoch, and a resumed run (whose history comes from the checkpoint) logs
each step once: TensorBoard by rewriting the last epoch under a purge step, MLflow by continuing
after the last step its store holds. Trackers run on rank 0 only (they write files).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from archspec.errors import ArchspecError
from archspec.recipes.recipe import TRACKERS
from archspec.train.rundir import step_rows

if TYPE_CHECKING:
    from archspec.train.observers import RunObserver
    from archspec.train.state import History, Run

EPOCH_KEYS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_seconds", "images_per_second")
FINAL_KEYS = ("best_test_acc", "best_epoch", "final_test_acc", "final_test_loss", "final_train_loss",
              "final_train_acc", "epochs", "train_seconds", "images_per_second")
_NEEDS = {"tensorboard": "torch.utils.tensorboard", "mlflow": "mlflow.tracking"}  # tracker -> what it imports


def check_available(names: Iterable[str]) -> None:
    """Fail before a run starts when a tracker's package is missing, saying which extra brings it
    (archspec.extras). The loggers import it again when the run starts: by then it is loaded."""
    from archspec.extras import require

    for name in names:
        require(_NEEDS[name], feature=f"log: {name}")


def with_trackers(recipe, add: Iterable[str]):
    """The recipe with trackers added to its `log:` (`--log mlflow`); "none" empties the list. A change
    is listed in the recipe's `overrides`, as the other command-line changes are."""
    from dataclasses import replace

    names, applied = list(recipe.log), []
    for name in add:
        if name == "none":
            names = []
        elif name not in TRACKERS:
            raise ArchspecError(f'unknown tracker "{name}"; choose from {", ".join(TRACKERS)} or none', path="--log")
        elif name not in names:
            names.append(name)
        applied.append(f"--log {name}")
    if tuple(names) == recipe.log:
        return recipe
    return replace(recipe, log=tuple(names), overrides=(*recipe.overrides, *applied))


def trackers(run: Run, *, mlflow_uri: str | None = None, graph: bool = False) -> list[RunObserver]:
    """One logger per name in the recipe's `log:`, in that order."""
    made: list[RunObserver] = []
    for name in run.recipe.log:
        if name == "tensorboard":
            from archspec.train.tensorboard_log import TensorBoardLogger

            made.append(TensorBoardLogger(graph=graph))
        elif name == "mlflow":
            from archspec.train.mlflow_log import MlflowLogger

            made.append(MlflowLogger(uri=mlflow_uri))
    return made


# --- what they log --------------------------------------------------------------------------------


def pending_steps(run: Run, after: int) -> list[dict[str, Any]]:
    """The history's step rows (step, epoch, loss, lr) after global step `after`."""
    h = run.history
    return step_rows(h.lr_history, h.step_losses, run.steps_per_epoch, after=after)


def pending_epochs(history: History, after: int) -> list[dict[str, Any]]:
    """The history's metrics rows after epoch `after`."""
    return [row for row in history.metrics if row["epoch"] > after]


def epoch_values(row: dict[str, Any]) -> dict[str, float]:
    """A metrics row as `epoch/...` values (columns not measured in that epoch are left out)."""
    return {f"epoch/{key}": float(row[key]) for key in EPOCH_KEYS if isinstance(row.get(key), int | float)}


def final_values(summary: dict[str, Any]) -> dict[str, float]:
    """summary.json's headline numbers as `final/...` values (those the run has)."""
    return {f"final/{key.removeprefix('final_')}": float(summary[key]) for key in FINAL_KEYS
            if isinstance(summary.get(key), int | float) and not isinstance(summary.get(key), bool)}


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}; lists become JSON text ("[0.9, 0.999]")."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(data) if isinstance(data, list | tuple) else data}


def run_params(run: Run) -> dict[str, str | int | float | bool]:
    """The run's hyperparameters: the resolved recipe (dotted keys) plus what else sets the run apart.
    None becomes "none": neither tracker stores a missing value."""
    params = {"spec": run.spec.name, "dataset": run.dataset, "params": run.params,
              **{f"recipe.{k}": v for k, v in flatten(run.recipe_dict).items() if k != "description"},
              "limit_train": run.limits["train"], "limit_test": run.limits["test"],
              "world_size": run.group.world_size, "device": str(run.device)}
    return {k: "none" if v is None else v for k, v in params.items()}
