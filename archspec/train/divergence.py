"""When a run has stopped learning for good, and what to tell the user: divergence and collapse.

Two failures, told apart by when they can be seen:

* Divergence, within an epoch: the loss becomes NaN/inf (on the CPU it is seen at the step it
  happens, since reading a CPU tensor costs no device sync; elsewhere at the next loss read,
  every 25 steps), or the running loss climbs past 10x the first batch's. The epoch is discarded
  and the run stops (archspec.train.loop).
* Collapse to chance, over epochs: a learning rate far too high (e.g. lr 10 with BatchNorm and
  label smoothing) first throws the loss up, then leaves a model that predicts nothing, with a
  finite loss at the level of uniform guessing, ln(classes). No NaN, no 10x: without this check
  such a run "completes" at chance accuracy. `CollapseWatch` stops it after COLLAPSE_EPOCHS such
  epochs. Against false positives - a hard dataset is often near chance in its first epochs - it
  ignores the first epoch, needs the accuracy inside the binomial noise band around chance *and*
  a loss no better than uniform guessing, in consecutive epochs, and only stops a run whose loss
  once spiked well above ln(classes) (the mark of a step size that is too large). A run that sits
  at chance without such a spike (too low a learning rate, labels that carry no signal) gets a
  warning and trains on: lowering its learning rate would be the wrong advice.

Every message ends in a learning rate to try that is finite and positive (`suggest_lr`): never
`--lr inf`, `0` or `nan`, whatever the recipe's or the schedule's value was.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from archspec.train.observers import RunObserver
from archspec.train.state import STATUS_DIVERGED

if TYPE_CHECKING:
    from archspec.train.state import History, Run

DIVERGENCE_FACTOR = 10.0  # running loss above this multiple of the first loss = diverged
COLLAPSE_EPOCHS = 3  # consecutive epochs at chance (the first epoch never counts) = collapsed
CHANCE_LOSS_MARGIN = 0.01  # a loss within 1% below ln(classes), or above it, is no better than guessing
SPIKE_FACTOR = 1.5  # a step loss above 1.5 x ln(classes) somewhere in the run: the step size was too large
FALLBACK_LR = 1e-3  # suggested when neither the recipe's nor the failing lr is a usable number


def loss_problem(window_loss: float, total_is_finite: bool, first_loss: float | None) -> str | None:
    """Why the running loss says the run diverged, or None."""
    if not total_is_finite or not math.isfinite(window_loss):
        return "the loss became NaN/inf"
    if first_loss is not None and first_loss > 0 and window_loss > DIVERGENCE_FACTOR * first_loss:
        return (f"the running loss {window_loss:.4g} is more than {DIVERGENCE_FACTOR:g}x "
                f"the first loss {first_loss:.4g}")
    return None


def suggest_lr(base_lr: float, failing_lr: float) -> float:
    """A finite, positive learning rate to try instead: a tenth of the smaller of the recipe's lr and
    the lr in use when the run failed (a schedule may have raised it); FALLBACK_LR when neither is a
    finite positive number."""
    usable = [float(v) for v in (base_lr, failing_lr) if math.isfinite(float(v)) and float(v) > 0]
    if not usable:
        return FALLBACK_LR
    smallest = min(usable)
    return smallest / 10 or smallest  # a tenth that underflows to 0 is no suggestion


def lower_lr_advice(recipe, failing_lr: float) -> str:
    """"Try a lower learning rate, e.g. --lr X (where the run's lr came from)" for a `Recipe`."""
    base_lr = float(recipe.optimizer.lr)
    source = recipe.override_of("optimizer.lr") if hasattr(recipe, "override_of") else None
    origin = f"this run's is {base_lr:g}, from {source}" if source else f"the recipe's is {base_lr:g}"
    return f"Try a lower learning rate, e.g. --lr {suggest_lr(base_lr, failing_lr):.2g} ({origin})"


def diverged_message(epoch: int, lr: float, problem: str, last_good: int, recipe) -> str:
    """The run stopped within `epoch`: what happened, what is kept, what to try."""
    kept = f"the checkpoints of epoch {last_good} are kept" if last_good else "last.pt holds the initial weights"
    return (f"training diverged in epoch {epoch} at learning rate {lr:.4g}: {problem}. "
            f"Stopped; {kept}. {lower_lr_advice(recipe, lr)}")


# --- collapse to chance ----------------------------------------------------------------------------


def _at_chance(row: dict[str, Any], classes: int, images: int) -> bool:
    """Accuracy within 3 standard deviations (+1 point) of 1/classes and a loss no better than ln(classes)."""
    acc, loss = row.get("train_acc"), row.get("train_loss")
    if acc is None or loss is None or not math.isfinite(loss):
        return False
    chance = 1.0 / classes
    band = chance + 3.0 * math.sqrt(chance * (1.0 - chance) / max(1, images)) + 0.01
    return acc <= band and loss >= (1.0 - CHANCE_LOSS_MARGIN) * math.log(classes)


def collapse(history: History, classes: int, images: int) -> str | None:
    """How the last COLLAPSE_EPOCHS epochs sat at chance, or None when they did not (or are too few)."""
    rows = history.metrics[-COLLAPSE_EPOCHS:]
    if classes < 2 or len(rows) < COLLAPSE_EPOCHS or rows[0]["epoch"] < 2:
        return None
    if not all(_at_chance(row, classes, images) for row in rows):
        return None
    last = rows[-1]
    return (f"train accuracy {last['train_acc']:.1%} is chance (1/{classes}) and the train loss "
            f"{last['train_loss']:.4g} no better than guessing (ln {classes} = {math.log(classes):.4g}) "
            f"in epochs {rows[0]['epoch']}-{last['epoch']}")


def loss_peak(history: History) -> float:
    """The largest recorded training loss: per step, or per epoch for runs without step losses."""
    values = history.step_losses or [row["train_loss"] for row in history.metrics if row.get("train_loss") is not None]
    finite = [v for v in values if math.isfinite(v)]
    return max(finite, default=0.0)


class CollapseWatch(RunObserver):
    """Stops a run that collapsed to chance after an unstable start; warns once about one that sits at
    chance without one (see the module docstring). Every rank sees the same metrics rows, so under
    DDP every rank decides the same."""

    def __init__(self) -> None:
        self.warned = False

    def on_epoch_end(self, run: Run, row: dict[str, Any]) -> None:
        classes = int(run.spec.num_classes or run.bundle.info.num_classes or 0)
        problem = collapse(run.history, classes, run.bundle.num_train)
        if problem is None:
            return
        peak = loss_peak(run.history)
        if peak > SPIKE_FACTOR * math.log(classes):
            lr = float(row.get("lr") or run.recipe.optimizer.lr)
            run.end(STATUS_DIVERGED,
                    f"training collapsed to chance at learning rate {lr:.4g}: {problem}, after losses up to "
                    f"{peak:.4g}. Stopped after epoch {row['epoch']} (best.pt holds the best epoch, "
                    f"{run.history.best_epoch or '-'}). {lower_lr_advice(run.recipe, lr)}")
        elif not self.warned:
            self.warned = True
            run.reporter.note(f"warning: the model is not learning: {problem}; check the learning rate "
                              "(too low?) and the data")
