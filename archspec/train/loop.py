"""The training loop: one spec + one recipe -> a run directory with metrics, plots and checkpoints.

`train()` runs six phases, each one screen of code:

  set-up      archspec.train.setup.set_up: device, process group, model, run directory, data,
              optimizer... -> one `Run` (archspec.train.state), the state every later phase reads
  restore     `_restore`: a resumed run gets its `History` and its module/optimizer/scheduler/EMA/RNG
              states back (archspec.train.checkpoint.ResumePoint); a new run writes spec.yaml,
              recipe.yaml and an "epoch 0" checkpoint
  epoch       `_train_epoch`: one pass over the training set, one `_optimizer_step` per batch
  evaluate    `_evaluate`: the test set, every `eval_every` epochs and after the last
  checkpoint  archspec.train.checkpoint.save_run: last.pt (and best.pt) after every epoch
  finish      `_finish`: the final status, summary.json and the `RunResult`

Where a new feature goes:

* Anything that watches a run (the TensorBoard/MLflow loggers of archspec.train.tracking, early
  stopping in archspec.train.early_stop, a tuner's pruning) is a `RunObserver`
  (archspec.train.observers; see its docstring for the events and their order), passed as
  `train(..., observers=[...])` or, for the built-in ones, chosen by `standard_observers`. The progress display, the metrics/summary files and the plots are
  observers too; the loop itself neither prints nor writes anything but checkpoints.
* Anything that changes an optimisation step (gradient accumulation, another clipping rule) goes in
  `_optimizer_step` / `train_step`. The LR scheduler steps there, in that one place, when
  `archspec.recipes.build.scheduler_due` says so: after every step for per-batch schedules, after
  the epoch's last step for per-epoch ones.

Design notes:

* Under torchrun (archspec.train.distributed) the same loop shards the loader (`rank/world_size`),
  wraps the model in DDP, sums the epoch counters over the ranks and lets only rank 0 write.
* `compile:` (archspec.train.torch_compile) wraps the model for the training steps only; the steps
  that compile are timed apart (`compile_seconds`) and left out of images/s.
* No per-step host syncs: loss sum and correct count are accumulated as device tensors
  (`_EpochMeter`) and read every `SYNC_EVERY` steps (progress + divergence check), when an observer
  wants fresh numbers (the display asks by time, about every 2 s) and at the end of the epoch.
* Exact resume: the checkpoint written at the end of every epoch holds model, optimizer, scheduler,
  scaler, every RNG state and the run's history. The data order is a function of (seed, epoch)
  (`loader.set_epoch`), so a resumed run replays exactly what an uninterrupted one would have done.
* Files are written atomically (archspec.atomic_write) and metrics rewritten whole, so `kill -9` at any
  instant leaves a consistent, resumable run directory.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from rich.console import Console

from archspec.atomic_write import is_disk_full
from archspec.errors import ArchspecError
from archspec.figures import DEFAULT_DPI
from archspec.recipes.build import scheduler_due
from archspec.train import distributed
from archspec.train.checkpoint import ResumePoint, load_checkpoint, plain, reconcile_best, save_run
from archspec.train.device import Precision, uses_recipe_threads
from archspec.train.divergence import diverged_message, loss_problem
from archspec.train.evaluation import evaluate_loader
from archspec.train.observers import Progress, RunObserver, notify, progress_due
from archspec.train.report import DEFAULT_LOG_EVERY_S
from archspec.train.rundir import (
    remove_stale_temp_files,
    removes_unused_run_dir,
    write_metrics,
    write_steps,
    write_yaml,
)
from archspec.train.setup import RunOptions, set_up
from archspec.train.state import (
    STATUS_COMPLETED,
    STATUS_DIVERGED,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    EpochOutcome,
    Run,
    RunResult,
)
from archspec.train.stop import StopRequest
from archspec.train.torch_compile import is_compile_error

SYNC_EVERY = 25  # steps between reads of the running loss (divergence check); the display also asks by time

__all__ = ["RunResult", "train", "train_step"]


@removes_unused_run_dir
@uses_recipe_threads
def train(spec, recipe, *, dataset: str | None = None, data_dir: str | Path | None = None, device: str = "auto",
          run_dir: str | Path | None = None, runs_root: str | Path = "runs", limit_train: int | None = None,
          limit_test: int | None = None, resume: str | Path | None = None, workers: int | None = None,
          console: Console | None = None, progress: bool = True, quiet: bool = False,
          stop_after_epoch: int | None = None, observers: Sequence[RunObserver] = (),
          log_every: float = DEFAULT_LOG_EVERY_S, memory_check: bool = True, mlflow_uri: str | None = None,
          log_graph: bool = False, figure_format: str = "png", dpi: int = DEFAULT_DPI,
          init_weights=None) -> RunResult:
    """Train `spec` (a loaded Spec) with `recipe` (a Recipe); write the run directory; return a RunResult.

    `resume` is a run directory (or its last.pt): the run continues there at the next epoch and
    ends exactly where an uninterrupted run would. `stop_after_epoch` ends the run cleanly
    (status "interrupted", resumable) after that epoch: for time-sliced jobs. Ctrl-C/SIGTERM do
    the same after the current batch. `observers` (archspec.train.observers) watch the run next to
    the built-in ones. `log_every` (seconds) is the interval of the in-epoch progress line when
    `console` is not a terminal (0: none). The recipe's `threads` apply for the run; a run directory
    made for a start that then fails is removed again. `memory_check=False` skips the refusal of a
    run whose memory estimate exceeds the device's free memory (archspec.train.memory_check). The
    recipe's `log:` trackers log to the run directory (TensorBoard; with `log_graph` the model graph
    too) and to the MLflow store `mlflow_uri` (archspec.train.mlflow_log). curves.* and lr.* are
    drawn as `figure_format` (png, svg, pdf) at `dpi`. Bad input raises ArchspecError; the status in
    the result tells completed / interrupted / diverged apart (a run ended by `early_stop:` is
    completed, its message says why). `init_weights(model)` (`archspec.weights.weights_source`) loads
    starting weights into a new run, for fine-tuning.
    """
    options = RunOptions(dataset=dataset, data_dir=data_dir, device=device, run_dir=run_dir, runs_root=runs_root,
                         limit_train=limit_train, limit_test=limit_test, resume=resume, workers=workers,
                         console=console, progress=progress, quiet=quiet, stop_after_epoch=stop_after_epoch,
                         observers=tuple(observers), log_every=log_every, memory_check=memory_check,
                         mlflow_uri=mlflow_uri, log_graph=log_graph, figure_format=figure_format, dpi=dpi,
                         init_weights=init_weights)
    with contextlib.ExitStack() as owned:  # the run directory's lock (archspec.train.runlock), held to the end
        run, resume_point = set_up(spec, recipe, options, owned)
        _restore(run, resume_point)
        del resume_point  # the checkpoint's tensors are not needed any more
        notify(run, "on_start")
        run.started = time.time()
        # Signals only set a flag from here on (a second Ctrl-C aborts): the loop stops between batches
        # and the closing writes are not cut short.
        with distributed.stop_request(run.group) as stop:
            run.stop = stop
            _run_epochs(run)
            return _finish(run)


# --- restore --------------------------------------------------------------------------------------


def _restore(run: Run, resume: ResumePoint | None) -> None:
    """Restore phase: continue a run from its checkpoint, or start the run directory of a new one."""
    with _full_disk_is_an_error():
        if resume is None:
            if run.group.is_main:
                write_yaml(run.out / "spec.yaml", plain(run.spec.resolved))
                write_yaml(run.out / "recipe.yaml", run.recipe_dict)
                write_metrics(run.out, run.history.metrics)
            save_run(run, best=False)  # "epoch 0": a kill during epoch 1 is resumable too
            return
        _continue(run, resume)


def _continue(run: Run, resume: ResumePoint) -> None:
    """A resumed run: history and states from the checkpoint, the run directory made consistent with them."""
    run.history = resume.history()
    changed = resume.check_recipe(run.recipe_dict)
    resume.restore(run, changed)
    if changed:
        run.reporter.note(f"note: the recipe differs from the run's original in: {', '.join(changed)}")
    h = run.history
    if run.group.is_main:
        remove_stale_temp_files(run.out)
        note = reconcile_best(resume.file, resume.ckpt)  # a kill between the last.pt and best.pt writes
        if note:
            run.reporter.note(note)
        write_yaml(run.out / "recipe.yaml", run.recipe_dict)
        write_metrics(run.out, h.metrics)  # drop any row written after the checkpoint (kill -9 window)
        write_steps(run.out, h.lr_history, h.step_losses, run.steps_per_epoch)
    run.reporter.note(f"resuming {run.out} after epoch {h.epoch}/{run.epochs}", style="cyan", always=False)


@contextlib.contextmanager
def _full_disk_is_an_error() -> Iterator[None]:
    """A full disk before the first epoch: one line, and (as for any failed start) no run directory left."""
    try:
        yield
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise ArchspecError(f"disk full: could not write {exc.filename or 'the run directory'}",
                            hint="free some space (or use another --runs-dir) and run the command again") from None


# --- the epochs -----------------------------------------------------------------------------------


def _run_epochs(run: Run) -> None:
    with _friendly_errors(run), _stops_on_full_disk(run), contextlib.ExitStack() as held:
        for observer in run.observers:
            held.enter_context(observer.running(run))
        for epoch in range(run.history.epoch + 1, run.epochs + 1):
            # An observer may have ended the run before its first epoch: a resumed run that had
            # already stopped early stays stopped.
            if run.status != STATUS_RUNNING or not _epoch(run, epoch):
                break


def _epoch(run: Run, epoch: int) -> bool:
    """Train, evaluate, record, checkpoint, tell the observers. False when the run ends here."""
    began = time.perf_counter()
    run.bundle.train.set_epoch(epoch)
    outcome = _train_epoch(run, epoch)
    notify(run, "on_epoch_trained", outcome)
    if outcome.stopped or outcome.diverged:
        _discard(run, epoch, outcome)
        return False
    test_loss, test_acc = _evaluate(run, epoch)
    row = {"epoch": epoch, "train_loss": outcome.loss, "train_acc": outcome.acc,
           "test_loss": test_loss, "test_acc": test_acc, "lr": outcome.lr,
           "epoch_seconds": time.perf_counter() - began, "images_per_second": outcome.images_per_second}
    improved = run.history.record(row, outcome)
    save_run(run, best=improved)
    notify(run, "on_epoch_end", row)
    return _goes_on(run, epoch)


def _discard(run: Run, epoch: int, outcome: EpochOutcome) -> None:
    """An epoch cut short is not recorded: the run ends with last.pt at the previous epoch."""
    h = run.history
    del h.lr_history[len(h.lr_history) - outcome.steps:]  # the discarded steps
    if outcome.stopped:
        run.end(STATUS_INTERRUPTED, f"interrupted ({run.stop.signal_name}) during epoch {epoch}; "
                                    f"last.pt holds epoch {h.epoch}")
    else:
        run.end(STATUS_DIVERGED, diverged_message(epoch, outcome.lr, outcome.diverged, h.epoch, run.recipe))


def _goes_on(run: Run, epoch: int) -> bool:
    """After a completed epoch: whether the next one runs (not after a stop request, stop_after_epoch
    or an observer's `run.end`)."""
    stop_now = run.group.any(run.stop.requested, run.device)  # every rank stops after the same epoch
    if run.status == STATUS_RUNNING and epoch < run.epochs:
        if stop_now:
            run.end(STATUS_INTERRUPTED, f"stopped ({run.stop.signal_name or 'a stop request on another rank'}) "
                                        f"after epoch {epoch}")
        elif run.stop_after_epoch is not None and epoch >= run.stop_after_epoch:
            run.end(STATUS_INTERRUPTED, f"stopped (stop_after_epoch={run.stop_after_epoch}) after epoch {epoch}")
    return run.status == STATUS_RUNNING


@contextlib.contextmanager
def _stops_on_full_disk(run: Run) -> Iterator[None]:
    """A full disk mid-run ends the run as interrupted, resumable from what is on disk.

    Every write is atomic, so last.pt is intact: either this epoch's or the previous one. The run's
    history is re-read from it, so that summary.json and metrics.csv (small files, which usually
    still fit) describe the checkpoint a resume will continue from, not an epoch that was lost.
    """
    try:
        yield
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        last = run.out / "last.pt"
        run.history = ResumePoint(last, load_checkpoint(last, resume=True)).history()
        run.end(STATUS_INTERRUPTED, f"disk full: could not write {exc.filename or run.out}; stopped with last.pt "
                                    f"at epoch {run.history.epoch}. Free some space, then resume")


@contextlib.contextmanager
def _friendly_errors(run: Run) -> Iterator[None]:
    """Out of GPU memory and torch.compile failures become one-line errors with what to try instead."""
    try:
        yield
    except torch.OutOfMemoryError:
        size = run.recipe.batch_size
        raise ArchspecError(f"out of GPU memory with batch size {size}",
                            hint=f"try a smaller --batch-size (e.g. {max(1, size // 2)}) or a smaller model") from None
    except RuntimeError as exc:
        if run.compile_mode is None or not is_compile_error(exc):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ArchspecError(f"torch.compile ({run.compile_mode}) failed on this model: {type(exc).__name__}: {first}",
                            hint="train eagerly with --set compile=false") from None


# --- epoch: one pass over the training set ----------------------------------------------------------


def train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, criterion, optimizer,
               precision: Precision, device: torch.device, scaler=None, grad_clip: float | None = None,
               channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step. Returns (loss, logits), detached and still on the device."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with precision.autocast(device):
        logits = model(x)
        loss = criterion(logits, y)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
    return loss.detach(), logits.detach()


def _current_lr(optimizer: torch.optim.Optimizer) -> float:
    lr = optimizer.param_groups[0]["lr"]
    return float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)


class _EpochMeter:
    """The epoch's running loss and accuracy: added up on the device every step, read only by `sync`."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.dtype = torch.float32 if run.device.type == "mps" else torch.float64  # no fp64 on MPS
        self.loss_sum = torch.zeros((), dtype=self.dtype, device=run.device)
        self.correct = torch.zeros((), dtype=torch.int64, device=run.device)
        self.first_loss: torch.Tensor | None = None
        self.steps = self.images = 0  # this rank's
        self.steps_total = run.steps_per_epoch
        self.step_loss = torch.empty(max(1, self.steps_total), dtype=torch.float32, device=run.device)
        self.synced_loss, self.synced_images = 0.0, 0
        self.all_images, self.stop_agreed = 0, False  # over all ranks, as of the last sync
        # Reading a CPU tensor costs no device sync, so there a NaN/inf loss stops the run at its step;
        # not under DDP, where every rank must stop at the same step (they agree at the syncs).
        self.check_each_step = run.device.type == "cpu" and not run.group.enabled
        self.nonfinite = False

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        batch = int(y.shape[0])
        if self.run.history.first_loss is None and self.first_loss is None:
            self.first_loss = loss.float().clone()  # read at the next sync; a CUDA graph reuses `loss`
        self.loss_sum += loss.to(self.dtype) * batch
        self.step_loss[self.steps] = loss
        self.correct += (logits.argmax(dim=1) == y).sum()
        self.images += batch
        self.steps += 1
        if self.check_each_step and not math.isfinite(float(loss)):
            self.nonfinite = True

    def sync(self) -> tuple[str | None, float, float]:
        """(divergence problem or None, mean loss, accuracy) over all ranks, in one read of the device."""
        group, history = self.run.group, self.run.history
        if group.enabled:  # one all-reduce: loss sum, hits, images, stop flag, first loss
            first = self.first_loss if self.first_loss is not None else 0.0
            total, hits, images, stops, first_sum = group.sum(
                [self.loss_sum, self.correct, self.images, 1.0 if self.run.stop.requested else 0.0, first],
                self.run.device)
            self.stop_agreed = stops > 0
            if self.first_loss is not None and history.first_loss is None:
                history.first_loss = first_sum / group.world_size
        else:
            total, hits = torch.stack([self.loss_sum, self.correct.to(self.dtype)]).tolist()
            images = self.images
            if self.first_loss is not None and history.first_loss is None:
                history.first_loss = float(self.first_loss.item())
        self.all_images = int(images)
        window = (total - self.synced_loss) / max(1, self.all_images - self.synced_images)
        problem = loss_problem(window, math.isfinite(total), history.first_loss)
        self.synced_loss, self.synced_images = total, self.all_images
        return problem, total / max(1, self.all_images), hits / max(1, self.all_images)


class _LoaderStopped(Exception):
    """The data loader failed because a stop request (Ctrl-C) also reached its worker processes."""


def _batches(loader, stop: StopRequest) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for_each = iter(loader)
    while True:
        try:
            x, y = next(for_each)
        except StopIteration:
            return
        except RuntimeError:
            # Ctrl-C in a terminal also reaches DataLoader workers; where they do not share our
            # handler (spawn start method) they exit and the fetch fails. That is the stop we asked for.
            if stop.requested:
                raise _LoaderStopped from None
            raise
        yield x, y


def _optimizer_step(run: Run, x: torch.Tensor, y: torch.Tensor, meter: _EpochMeter) -> float:
    """One optimisation step and everything that follows each step (EMA, LR scheduler, lr history,
    running counters); returns the learning rate the step used."""
    step = meter.steps + 1  # in this epoch, from 1
    lr = _current_lr(run.optimizer)
    with run.compile_clock.step(x):
        loss, logits = train_step(run.train_model, x, y, criterion=run.criterion, optimizer=run.optimizer,
                                  precision=run.precision, device=run.device, scaler=run.scaler,
                                  grad_clip=run.recipe.grad_clip, channels_last=run.channels_last)
    if run.ema is not None:
        run.ema.update(run.module)
    if run.scheduler is not None and scheduler_due(run.sched_interval, step, meter.steps_total):
        run.scheduler.step()
    run.history.lr_history.append(lr)
    meter.add(loss, logits, y)
    return lr


def _train_epoch(run: Run, epoch: int) -> EpochOutcome:
    """Epoch phase: one pass over the training set; ends early (flagged in the outcome) on a stop
    request or divergence.

    Under DDP (several ranks) every sync adds the counters and the stop flag over the ranks, so all
    ranks see the whole training set's loss/accuracy and stop at the same step; a stop request is
    then only acted on at a sync point (every SYNC_EVERY steps).
    """
    run.train_model.train()
    meter, clock, stop, world = _EpochMeter(run), run.compile_clock, run.stop, run.group.world_size
    clock.start_epoch()
    start, lr = time.perf_counter(), _current_lr(run.optimizer)

    def cut_short(**how) -> EpochOutcome:
        return EpochOutcome(meter.steps, meter.images, float("nan"), float("nan"), time.perf_counter() - start,
                            lr=lr, **how)

    notify(run, "on_epoch_start", epoch)
    try:
        for x, y in _batches(run.bundle.train, stop):
            lr = _optimizer_step(run, x, y, meter)
            notify(run, "on_step", meter.steps)
            if meter.nonfinite:
                return cut_short(diverged=f"the loss became NaN/inf at step {meter.steps} of the epoch")
            # Read the device every SYNC_EVERY steps (divergence check) and whenever an observer asks
            # (the display, by time). Under DDP every rank must sync at the same steps: the count decides.
            due = meter.steps % SYNC_EVERY == 0 or (not run.group.enabled and progress_due(run))
            if due and meter.steps < meter.steps_total:
                problem, loss, acc = meter.sync()
                if problem:
                    return EpochOutcome(meter.steps, meter.all_images, loss, acc, time.perf_counter() - start,
                                        diverged=problem, lr=lr)
                ips = (meter.all_images - clock.images * world) / max(1e-9, time.perf_counter() - start - clock.seconds)
                notify(run, "on_progress", Progress(epoch, meter.steps, loss, acc, lr, ips))
            if meter.stop_agreed or (stop.requested and not run.group.enabled):
                return cut_short(stopped=True)
    except _LoaderStopped:
        return cut_short(stopped=True)
    if meter.steps == 0:
        raise ArchspecError("the training set is empty (check --limit-train and the dataset)")
    problem, loss, acc = meter.sync()  # under DDP a stop voted here takes effect after the epoch
    # Only a completed epoch is recorded, so only it carries the compile timing and the step losses.
    return EpochOutcome(meter.steps, meter.all_images, loss, acc, time.perf_counter() - start, diverged=problem,
                        lr=lr, compile_seconds=clock.seconds, compile_images=clock.images * world,
                        step_losses=meter.step_loss[:meter.steps].tolist())


# --- evaluate and finish ------------------------------------------------------------------------


def _evaluate(run: Run, epoch: int) -> tuple[float | None, float | None]:
    """Evaluate phase: (test loss, test accuracy) every `eval_every` epochs and after the last, else Nones."""
    if epoch % run.recipe.eval_every and epoch != run.epochs:
        return None, None
    model = run.eval_model
    run.group.broadcast_buffers(model)  # rank 0's BN statistics: what it checkpoints
    loss, acc, *_ = evaluate_loader(model, run.bundle.test, device=run.device, precision=run.precision,
                                    channels_last=run.channels_last, tta=run.recipe.tta)
    return loss, acc


def _finish(run: Run) -> RunResult:
    """Finish phase: the final status and summary, the observers' last writes, every rank done."""
    run.end(STATUS_COMPLETED, "")  # unless the run already ended otherwise
    summary = run.summary()
    for observer in run.observers:  # each one, even after another could not write its files
        try:
            observer.on_finish(run, summary)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            run.reporter.note(f"warning: disk full: could not write {exc.filename or run.out}")
    run.group.barrier()  # no rank exits (torchrun would stop the others) before rank 0 has written
    run.group.close()
    return run.result(summary)
