"""Early stopping (the recipe's `early_stop:`): end a run once its metric has stopped improving.

The rule: an epoch *improves* when its `metric` (a metrics.csv column) is better than the best so
far by more than `min_delta` (lower for "min", higher for "max"). Epochs where the metric was not
measured (test columns between `eval_every` evaluations) do not count; a NaN counts as no
improvement. After `patience` measured epochs in a row without improvement the run ends, with
status "completed" and a message saying why (a run that stopped early is finished: sweeps do not
re-run it, its exit code is 0), and `summary.json` gets an `early_stop` section.

Why the state is recomputed from the metrics rows instead of being counted along: the rows are in
every checkpoint (`History.metrics`), so a resumed run reaches exactly the decision an
uninterrupted one would, with nothing else to save; and a resumed run that had already stopped is
recognised as stopped before its first epoch (and stays stopped, unless the resumed recipe's
`early_stop` says otherwise, e.g. a larger patience).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archspec.train.observers import RunObserver
from archspec.train.state import STATUS_COMPLETED

if TYPE_CHECKING:
    from archspec.recipes.recipe import EarlyStopConfig
    from archspec.train.state import Run


@dataclass(frozen=True)
class EarlyStopState:
    """Where the rule stands after a run's metrics rows."""

    best: float | None  # the best value so far (None: never measured)
    best_epoch: int | None
    wait: int  # measured epochs since the best, none of them an improvement
    stopped_epoch: int | None  # the epoch after which the rule ends the run, if it has been reached


def _improves(value: float, best: float | None, config: EarlyStopConfig) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    if config.goal == "min":
        return value < best - config.min_delta
    return value > best + config.min_delta


def early_stop_state(rows: list[dict[str, Any]], config: EarlyStopConfig) -> EarlyStopState:
    """Replay the rule over the metrics rows, in epoch order."""
    best, best_epoch, wait = None, None, 0
    for row in rows:
        value = row.get(config.metric)
        if value is None:
            continue  # not measured in this epoch
        if _improves(float(value), best, config):
            best, best_epoch, wait = float(value), int(row["epoch"]), 0
            continue
        wait += 1
        if wait >= config.patience:
            return EarlyStopState(best, best_epoch, wait, stopped_epoch=int(row["epoch"]))
    return EarlyStopState(best, best_epoch, wait, stopped_epoch=None)


def stop_message(state: EarlyStopState, config: EarlyStopConfig) -> str:
    """Why the run ended: 'early stop after epoch 7: test_loss has not improved on 0.3124 (epoch 4) ...'."""
    by = f" by more than {config.min_delta:g}" if config.min_delta else ""
    best = f"{state.best:.4g} (epoch {state.best_epoch})" if state.best is not None else "any value (never finite)"
    return (f"early stop after epoch {state.stopped_epoch}: {config.metric} has not improved{by} on {best} "
            f"for {state.wait} measured epochs (patience {config.patience})")


class EarlyStopping(RunObserver):
    """The rule as a run observer: decides after every epoch, and once before the first (resume)."""

    def __init__(self, config: EarlyStopConfig) -> None:
        self.config = config

    def on_start(self, run: Run) -> None:
        self._decide(run)

    def on_epoch_end(self, run: Run, row: dict[str, Any]) -> None:
        self._decide(run)

    def _decide(self, run: Run) -> None:
        state = early_stop_state(run.history.metrics, self.config)
        stops = state.stopped_epoch is not None and run.history.epoch < run.epochs
        run.summary_extra["early_stop"] = {
            **self.config.to_dict(), "goal": self.config.goal, "best": state.best, "best_epoch": state.best_epoch,
            "wait": state.wait, "stopped_epoch": state.stopped_epoch if stops else None}
        if stops:
            run.end(STATUS_COMPLETED, stop_message(state, self.config))
