"""TensorBoard event files in the run directory (`log: tensorboard`, the default).

`tensorboard --logdir runs` then shows every run as one TensorBoard run named after its directory:
per-step loss and learning rate, per-epoch metrics, the hyperparameters with the final metrics
(HParams tab), and with `--log-graph` the model graph. Names and the catch-up rule are shared with
the MLflow logger (archspec.train.tracking).

Resuming: a new session appends a new event file to the same directory. It starts with a purge step
at the first step of the last checkpointed epoch and writes that epoch again from the checkpoint's
history, so TensorBoard hides whatever an earlier session wrote from that step on (an epoch logged
but not checkpointed before a kill, or half-written) and every step is shown once. Checked with both
of TensorBoard's loaders (the Rust data server, its default, and `--load_fast=false`) and with
its EventAccumulator.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from archspec.train.observers import RunObserver
from archspec.train.tracking import epoch_values, final_values, pending_epochs, pending_steps, run_params

if TYPE_CHECKING:
    from archspec.train.state import Run

EVENT_GLOB = "events.out.tfevents.*"


class TensorBoardLogger(RunObserver):
    """Writes the run's TensorBoard events (rank 0 only); `graph` adds the model graph once."""

    def __init__(self, *, graph: bool = False) -> None:
        self.graph = graph
        self.writer: Any = None
        self.steps_logged = self.epochs_logged = 0

    def on_start(self, run: Run) -> None:
        from torch.utils.tensorboard import SummaryWriter

        earlier = any(run.out.glob(EVENT_GLOB))  # a resumed run: rewrite its last epoch (else: all of it)
        self.epochs_logged = max(0, run.history.epoch - 1) if earlier else 0
        self.steps_logged = self.epochs_logged * run.steps_per_epoch
        # Every session starts with a restart marker (SessionLog.START at the purge step), a new run's
        # too: TensorBoard's Python loader takes a run's first marker as its start and purges only at
        # later ones, so the marker of a resumed session must not be the first.
        self.writer = SummaryWriter(log_dir=str(run.out), purge_step=self.steps_logged + 1)
        if self.graph and not earlier:
            self._add_graph(run)
        self._catch_up(run)

    def running(self, run: Run) -> contextlib.AbstractContextManager:
        return self._closed_on_failure()

    @contextlib.contextmanager
    def _closed_on_failure(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self._close()
            raise

    def on_epoch_end(self, run: Run, row: dict[str, Any]) -> None:
        self._catch_up(run)

    def on_finish(self, run: Run, summary: dict[str, Any]) -> None:
        if self.writer is None:
            return
        self._catch_up(run)
        self._add_hparams(run, summary)
        self._close()

    def _catch_up(self, run: Run) -> None:
        """Write what the history holds beyond what this session wrote, then flush (the events of a
        checkpointed epoch reach the disk now, not at the writer's next timed flush)."""
        for row in pending_steps(run, self.steps_logged):
            if row["loss"] is not None:
                self.writer.add_scalar("step/loss", row["loss"], row["step"])
            self.writer.add_scalar("step/lr", row["lr"], row["step"])
            self.steps_logged = row["step"]
        for row in pending_epochs(run.history, self.epochs_logged):
            for tag, value in epoch_values(row).items():
                self.writer.add_scalar(tag, value, row["epoch"] * run.steps_per_epoch)
            self.epochs_logged = row["epoch"]
        self.writer.flush()

    def _add_hparams(self, run: Run, summary: dict[str, Any]) -> None:
        """The HParams tab's row for this run: hyperparameters, status and the final metrics, in this
        run's own event file (torch's `add_hparams` would make a separate run in a subfolder)."""
        from torch.utils.tensorboard.summary import hparams

        metrics = final_values(summary)
        step = len(run.history.lr_history)
        for part in hparams({**run_params(run), "status": run.status}, metrics):
            self.writer.file_writer.add_summary(part, step)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)

    def _add_graph(self, run: Run) -> None:
        """The model graph, traced on a copy in eval mode: tracing runs the model once, which must not
        change the run's BatchNorm statistics or draw from its random number generators."""
        import torch

        model = copy.deepcopy(run.module).eval()
        example = torch.zeros(1, *run.spec.input_shape, device=run.device)
        try:
            with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace's deprecation: add_graph uses it
                self.writer.add_graph(model, example)
        except Exception as exc:  # noqa: BLE001 - the graph is optional: never lose a run over it
            run.reporter.note(f"warning: could not trace the model graph for TensorBoard: {exc}")

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
