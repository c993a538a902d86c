"""Run observers: everything that watches a training run without changing what it computes.

The loop (archspec.train.loop) trains, evaluates and checkpoints; everything else a run does (the
progress display, the metrics/summary files, the plots, and any logger or rule added later) is a
`RunObserver` in `Run.observers`, called at these points, in list order:

    running(run)              a context manager held while the epochs run (a live display, an open
                              event file); closed even when the run fails
    on_start(run)             set-up and restore are done; the first epoch is next
    on_epoch_start(run, e)    before epoch e's first training step
    on_step(run, step)        after each optimizer step (step counts from 1 in the epoch). Called
                              every step: it must not read device tensors (a host sync per step)
    on_progress(run, p)       every few steps, with the running loss/accuracy/lr/images-per-second
                              already read from the device (`Progress`)
    wants_progress(run)       asked after each step: True makes the loop read the device now and
                              call on_progress (the display asks every ~2 s; not under DDP, where
                              every rank must read at the same steps)
    on_epoch_trained(run, o)  the training pass ended: completed, stopped or diverged (`EpochOutcome`;
                              o.step_losses holds each step's loss, read once at the end of the pass)
    on_epoch_end(run, row)    a completed epoch: evaluated, recorded in `run.history` and
                              checkpointed; `row` is its metrics.csv row
    on_finish(run, summary)   the run ended (`run.status`); `summary` is summary.json's content

An observer that wants the run to end early (early stopping, a tuner's pruning) calls
`run.end(status, message)` in `on_epoch_end` (the loop stops after that epoch) or in `on_start`
(no epoch runs: a resumed run that had already stopped early). Facts it wants in summary.json go in
`run.summary_extra` under its own key. A logger is one subclass: per-step loss and lr from
`run.history` (`step_losses`, `lr_history`) once the epoch is checkpointed (`on_epoch_end`), final
numbers from `on_finish`; pass it as `train(..., observers=[MyLogger()])`.

Every run has, in this order: its files, its plots, the recipe's trackers (archspec.train.tracking:
TensorBoard, MLflow), the progress display, the rules that may end it (collapse to chance,
archspec.train.divergence; early stopping when the recipe has `early_stop:`), then the caller's
observers. Files are written by rank 0 only: the other ranks of a DDP run get the (silent) progress
display, the rules (every rank must stop after the same epoch) and the caller's observers.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archspec.figures import DEFAULT_DPI, Curves, lr_figure, run_figure, write_figure
from archspec.train.rundir import step_rows, write_metrics, write_steps, write_summary
from archspec.train.state import STATUS_COMPLETED, STATUS_DIVERGED, STATUS_INTERRUPTED

if TYPE_CHECKING:
    from archspec.train.report import Reporter
    from archspec.train.setup import RunOptions
    from archspec.train.state import EpochOutcome, Run

PLOT_EVERY_SECONDS = 60.0  # redraw curves.png / lr.png during a run at most this often (and at the end)


@dataclass(frozen=True)
class Progress:
    """The running numbers of the current epoch, as of the last read from the device."""

    epoch: int
    step: int
    loss: float
    acc: float
    lr: float
    images_per_second: float


class RunObserver:
    """Base class: override the events you need; each default does nothing."""

    def running(self, run: Run) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def on_start(self, run: Run) -> None:
        pass

    def on_epoch_start(self, run: Run, epoch: int) -> None:
        pass

    def on_step(self, run: Run, step: int) -> None:
        pass

    def on_progress(self, run: Run, progress: Progress) -> None:
        pass

    def wants_progress(self, run: Run) -> bool:
        return False

    def on_epoch_trained(self, run: Run, outcome: EpochOutcome) -> None:
        pass

    def on_epoch_end(self, run: Run, row: dict[str, Any]) -> None:
        pass

    def on_finish(self, run: Run, summary: dict[str, Any]) -> None:
        pass


def progress_due(run: Run) -> bool:
    """Whether an observer wants the running numbers now (`wants_progress`)."""
    return any(observer.wants_progress(run) for observer in run.observers)


def notify(run: Run, event: str, *args: Any) -> None:
    """Call `event` (e.g. "on_step") on every observer of `run`, in order."""
    for observer in run.observers:
        getattr(observer, event)(run, *args)


class ProgressDisplay(RunObserver):
    """The terminal/log output (archspec.train.report.Reporter): header, live bar, epoch rows, summary."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self._bar_context: contextlib.ExitStack | None = None
        self._bar: Any = None

    def running(self, run: Run) -> contextlib.AbstractContextManager:
        return self.reporter.live()

    def on_start(self, run: Run) -> None:
        bundle, group = run.bundle, run.group
        device = f"{run.device} {run.precision.name}" + (
            f" x {group.world_size} processes (DDP)" if group.enabled else "")
        if run.compile_mode:
            device += f", torch.compile ({run.compile_mode})"
        self.reporter.header({"spec": run.spec.name, "recipe": run.recipe.name,
                              "data": f"{run.dataset} ({bundle.num_train:,} train / {bundle.num_test:,} test)",
                              "device": device, "params": f"{run.params:,}", "run": str(run.out)})

    def on_epoch_start(self, run: Run, epoch: int) -> None:
        self._bar_context = contextlib.ExitStack()
        self._bar = self._bar_context.enter_context(self.reporter.epoch(epoch, run.epochs, run.steps_per_epoch))

    def on_step(self, run: Run, step: int) -> None:
        self._bar.step()

    def on_progress(self, run: Run, progress: Progress) -> None:
        self._bar.stats(loss=progress.loss, acc=progress.acc, lr=progress.lr, ips=progress.images_per_second)

    def wants_progress(self, run: Run) -> bool:
        return self._bar is not None and self._bar.due()  # by time: slow steps still show their numbers

    def on_epoch_trained(self, run: Run, outcome: EpochOutcome) -> None:
        if self._bar_context is not None:
            self._bar_context.close()
        self._bar_context = self._bar = None

    def on_epoch_end(self, run: Run, row: dict[str, Any]) -> None:
        self.reporter.epoch_row(row, run.epochs)

    def on_finish(self, run: Run, summary: dict[str, Any]) -> None:
        if run.message:  # why the run ended where it did (a completed run has none, unless an observer ended it)
            colour = {STATUS_DIVERGED: "red", STATUS_INTERRUPTED: "yellow"}.get(run.status, "cyan")
            self.reporter.note(run.message, style=colour)
        if run.status == STATUS_INTERRUPTED:
            self.reporter.note(f"resume with: {run.resume_command()}", style="yellow")
        self.reporter.summary(summary)


class RunFiles(RunObserver):
    """metrics.csv/.jsonl, steps.csv and summary.json, rewritten whole after every epoch and at the end."""

    def on_epoch_end(self, run: Run, row: dict[str, Any]) -> None:
        self._write(run, run.summary(STATUS_COMPLETED if row["epoch"] == run.epochs else "running"))

    def on_finish(self, run: Run, summary: dict[str, Any]) -> None:
        self._write(run, summary)

    @staticmethod
    def _write(run: Run, summary: dict[str, Any]) -> None:
        h = run.history
        write_metrics(run.out, h.metrics)
        write_steps(run.out, h.lr_history, h.step_losses, run.steps_per_epoch)
        write_summary(run.out, summary)


class Plots(RunObserver):
    """curves.png and lr.png (or .svg/.pdf: `fmt`), drawn by archspec.figures from the run's history in
    memory: at most every PLOT_EVERY_SECONDS during the run (matplotlib costs ~0.5 s a figure: it must
    not dominate short epochs), and always at the end."""

    def __init__(self, *, fmt: str = "png", dpi: int = DEFAULT_DPI) -> None:
        self.fmt, self.dpi = fmt, dpi
        self._last = time.monotonic()

    def on_epoch_end(self, run: Run, row: dict[str, Any]) -> None:
        if time.monotonic() - self._last >= PLOT_EVERY_SECONDS:
            self._draw(run)
            self._last = time.monotonic()

    def on_finish(self, run: Run, summary: dict[str, Any]) -> None:
        self._draw(run)

    def _draw(self, run: Run) -> None:
        h = run.history
        steps = step_rows(h.lr_history, h.step_losses, run.steps_per_epoch)
        try:
            write_figure(run_figure(Curves(label="", metrics=list(h.metrics), steps=steps), title=run.title),
                         run.out / f"curves.{self.fmt}", fmt=self.fmt, dpi=self.dpi)
            write_figure(lr_figure(h.lr_history, run.steps_per_epoch, title=f"learning rate: {run.title}"),
                         run.out / f"lr.{self.fmt}", fmt=self.fmt, dpi=self.dpi)
        except Exception as exc:  # noqa: BLE001 - plots are a convenience: never lose a run over them
            run.reporter.note(f"warning: could not write plots: {exc}")


def standard_observers(run: Run, options: RunOptions) -> list[RunObserver]:
    """What every run has (see the module docstring for the order), then the caller's observers."""
    from archspec.train.divergence import CollapseWatch
    from archspec.train.tracking import trackers

    files: list[RunObserver] = []
    if run.group.is_main:
        files = [RunFiles(), Plots(fmt=options.figure_format, dpi=options.dpi),
                 *trackers(run, mlflow_uri=options.mlflow_uri, graph=options.log_graph)]
    rules: list[RunObserver] = [CollapseWatch()]  # first: a collapse is "diverged" even if early stopping agrees
    if run.recipe.early_stop is not None:
        from archspec.train.early_stop import EarlyStopping

        rules.append(EarlyStopping(run.recipe.early_stop))
    return [*files, ProgressDisplay(run.reporter), *rules, *options.observers]
