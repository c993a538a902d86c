"""The one typed state of a training run (`Run`), carried through every phase of `archspec.train.loop`.

Why one object: the set-up phase builds a dozen things (model, optimizer, scheduler, data, device,
process group...) that the epoch, evaluation, checkpoint and finish phases all read. Passing them
as one typed value keeps each phase's signature to `(run, ...)`, lets observers
(archspec.train.observers) see the whole run, and makes "what does a run consist of" a question
answered by reading one class. `History` is the part that evolves and is checkpointed: restoring
it (and the module/optimizer states) is what makes a resumed run exactly the run it continues.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from archspec.data.loader import DataBundle
    from archspec.recipes.recipe import Recipe
    from archspec.train.device import Precision
    from archspec.train.distributed import Group
    from archspec.train.ema import ModelEMA
    from archspec.train.observers import RunObserver
    from archspec.train.report import Reporter
    from archspec.train.stop import StopRequest
    from archspec.train.torch_compile import CompileClock

STATUS_RUNNING = "running"
STATUS_COMPLETED, STATUS_INTERRUPTED, STATUS_DIVERGED = "completed", "interrupted", "diverged"
STATUS_STOPPED = "stopped"  # ended early and for good by an observer's `run.end` (early stopping, pruning)


@dataclass
class RunResult:
    """What `train` returns; the same facts are in `run_dir/summary.json`."""

    status: str  # completed | interrupted | diverged | stopped
    run_dir: Path
    epochs_completed: int
    epochs: int
    best_test_acc: float | None
    best_epoch: int | None
    final_test_acc: float | None
    final_test_loss: float | None
    params: int
    train_seconds: float
    images_per_second: float
    metrics: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    resume_command: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpochOutcome:
    """One training pass over the data: its counters, and whether it ended early (then it is discarded)."""

    steps: int
    images: int
    loss: float
    acc: float
    seconds: float
    stopped: bool = False
    diverged: str | None = None
    lr: float = 0.0
    compile_seconds: float = 0.0  # of `seconds`, the steps that compiled
    compile_images: int = 0  # of `images`, those in the compiling steps (all ranks)
    step_losses: list[float] = field(default_factory=list)  # each step's mini-batch loss (this rank's)

    @property
    def images_per_second(self) -> float:
        return (self.images - self.compile_images) / max(self.seconds - self.compile_seconds, 1e-9)


@dataclass
class History:
    """Everything that evolves during a run and must survive a resume (it is in every checkpoint)."""

    epoch: int = 0  # completed epochs
    metrics: list[dict[str, Any]] = field(default_factory=list)
    best_test_acc: float | None = None
    best_epoch: int | None = None
    first_loss: float | None = None
    lr_history: list[float] = field(default_factory=list)  # one per completed step
    step_losses: list[float] = field(default_factory=list)  # one per step of each completed epoch (steps.csv)
    train_seconds: float = 0.0  # wall time of completed epochs (train + eval)
    train_phase_seconds: float = 0.0  # training steps only, for throughput (compiling steps excluded)
    images_seen: int = 0  # images of the steps in train_phase_seconds
    compile_seconds: float = 0.0  # steps that triggered a torch.compile compilation

    def record(self, row: dict[str, Any], outcome: EpochOutcome) -> bool:
        """Account for a completed epoch; True when its test accuracy is the best so far."""
        test_acc = row.get("test_acc")
        improved = test_acc is not None and (self.best_test_acc is None or test_acc > self.best_test_acc)
        if improved:
            self.best_test_acc, self.best_epoch = test_acc, row["epoch"]
        self.epoch = row["epoch"]
        self.metrics.append(row)
        self.train_seconds += row["epoch_seconds"]
        self.train_phase_seconds += outcome.seconds - outcome.compile_seconds
        self.images_seen += outcome.images - outcome.compile_images
        self.compile_seconds += outcome.compile_seconds
        self.step_losses.extend(outcome.step_losses)
        return improved


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP / torch.compile wrappers (what checkpoints store)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


@dataclass
class Run:
    """A training run: what set-up built (fixed for the run) and its `History` (what evolves).

    `module` is the plain model (checkpoints, EMA, evaluation); `model` is it wrapped for DDP when
    there are several processes; `train_model` is what the training steps call (`model`, or
    `torch.compile(model)`). All three share parameters.
    """

    spec: Any  # archspec.spec.loader.Spec
    recipe: Recipe
    recipe_dict: dict[str, Any]  # recipe.to_dict() made plain: what checkpoints and recipe.yaml store
    fingerprint: str  # of the resolved spec (archspec.train.checkpoint.spec_fingerprint)
    dataset: str
    limits: dict[str, int | None]  # {"train": ..., "test": ...}: images used under --limit-* (None: no limit)
    out: Path  # the run directory
    device: torch.device
    precision: Precision
    group: Group
    compile_mode: str | None
    channels_last: bool
    bundle: DataBundle
    module: torch.nn.Module
    model: torch.nn.Module
    train_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a torch LR scheduler, or None
    sched_interval: str  # "batch" | "epoch": when the scheduler steps (archspec.recipes.build.scheduler_due)
    scaler: Any  # torch.amp.GradScaler for fp16, else None
    ema: ModelEMA | None
    criterion: Any
    compile_clock: CompileClock
    reporter: Reporter  # notes and warnings; the progress display is an observer
    observers: list[RunObserver] = field(default_factory=list)
    stop_after_epoch: int | None = None
    history: History = field(default_factory=History)
    status: str = STATUS_RUNNING
    message: str = ""
    stop: StopRequest | None = None  # set while the epochs run (archspec.train.distributed.stop_request)
    # Sections observers add to summary.json (e.g. "early_stop"), each under its own key.
    summary_extra: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    @property
    def epochs(self) -> int:
        return self.recipe.epochs

    @property
    def steps_per_epoch(self) -> int:
        return len(self.bundle.train)

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    @property
    def eval_model(self) -> torch.nn.Module:
        """What the test set is evaluated with: the EMA average when the recipe has one."""
        return self.ema.module if self.ema is not None else self.module

    @property
    def title(self) -> str:
        return f"{self.spec.name} + {self.recipe.name} on {self.dataset}"

    def end(self, status: str, message: str) -> None:
        """End the run after the current epoch (a stop request, or an observer such as early stopping).

        Under DDP an observer must decide the same on every rank; it can, since every rank sees the
        same metrics rows.
        """
        if self.status == STATUS_RUNNING:
            self.status, self.message = status, message

    def resume_command(self) -> str:
        return f"archspec train {self.spec.path or self.spec.name} --resume {self.out}" + (
            f" --devices {self.group.world_size}" if self.group.enabled else "")

    def summary(self, status: str | None = None) -> dict[str, Any]:
        """summary.json: the run's status and headline numbers (`status` defaults to the run's)."""
        h = self.history
        last_eval = next((row for row in reversed(h.metrics) if row.get("test_acc") is not None), None)
        last = h.metrics[-1] if h.metrics else {}
        return {
            "status": status or self.status, "message": self.message,
            "spec": self.spec.name, "spec_path": str(self.spec.path) if self.spec.path else None,
            "recipe": self.recipe.name, "dataset": self.dataset,
            "epochs": h.epoch, "epochs_planned": self.epochs,
            "best_test_acc": h.best_test_acc, "best_epoch": h.best_epoch,
            "final_test_acc": last_eval.get("test_acc") if last_eval else None,
            "final_test_loss": last_eval.get("test_loss") if last_eval else None,
            "final_train_loss": last.get("train_loss"), "final_train_acc": last.get("train_acc"),
            "params": self.params, "train_seconds": h.train_seconds,
            "images_per_second": h.images_seen / h.train_phase_seconds if h.train_phase_seconds else 0.0,
            "images_seen": h.images_seen,
            "compile": self.compile_mode or False, "compile_seconds": h.compile_seconds,
            "device": str(self.device), "precision": self.precision.name, "torch": str(torch.__version__),
            "seed": self.recipe.seed, "threads": torch.get_num_threads(), "batch_size": self.recipe.batch_size,
            "limit_train": self.limits["train"], "limit_test": self.limits["test"],
            "run_dir": str(self.out),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()),
            "session_seconds": time.time() - self.started,
            "world_size": self.group.world_size,
            **self.summary_extra,
        }

    def result(self, summary: dict[str, Any]) -> RunResult:
        h = self.history
        return RunResult(
            status=self.status, run_dir=self.out, epochs_completed=h.epoch, epochs=self.epochs,
            best_test_acc=h.best_test_acc, best_epoch=h.best_epoch,
            final_test_acc=summary["final_test_acc"], final_test_loss=summary["final_test_loss"],
            params=self.params, train_seconds=h.train_seconds, images_per_second=summary["images_per_second"],
            metrics=list(h.metrics), message=self.message,
            resume_command=self.resume_command() if self.status == STATUS_INTERRUPTED else None, summary=summary)
