"""The run observer through which a tune trial reports each epoch and is pruned.

A trial is an ordinary training run; what makes it part of a study is this observer
(archspec.train.observers): after every epoch but the last it sends the metric rows so far to the
study's keeper (archspec.experiments.tune.StudyKeeper, in this process or a Ray actor) and, when
the keeper's pruner says the trial is not worth finishing, ends the run there for good (status
"stopped", the pruner's reason as the message). The last epoch is not asked about: a trial that
trained to the end is complete, and its final value is what the study records.

Imported only where a trial trains (it pulls in torch through archspec.train).
"""

from __future__ import annotations

from typing import Any

from archspec.train.observers import RunObserver
from archspec.train.state import STATUS_STOPPED


class ReportToStudy(RunObserver):
    """Report each epoch of trial `number` to `keeper` (a Shared StudyKeeper); stop when it prunes."""

    def __init__(self, keeper: Any, number: int) -> None:
        self.keeper = keeper
        self.number = number

    def on_epoch_end(self, run, row: dict[str, Any]) -> None:
        if row["epoch"] >= run.epochs:
            return
        reason = self.keeper.call("report", self.number, list(run.history.metrics))
        if reason:
            run.end(STATUS_STOPPED, f"stopped after epoch {row['epoch']}: {reason}")
