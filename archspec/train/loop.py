"""The training loop: one spec + one recipe -> a run directory with metrics, plots and checkpoints.

Design notes (why it looks the way it does):

* One optimisation step lives in `train_step` and one pass over the training set in
  `_train_epoch`. Under torchrun (archspec.train.distributed) the same loop shards the loader
  (`rank/world_size` in `make_loaders`), wraps the model in DDP, sums the epoch counters over the
  ranks and lets only rank 0 write; `_unwrap` strips the wrapper for saving and evaluation.
* `compile:` (archspec.train.compiling) wraps the model for the training steps only; the steps
  that compile are timed apart (`compile_seconds`) and left out of images/s.
* No per-step host syncs: loss sum and correct count are accumulated as device tensors and read
  every `SYNC_EVERY` steps (progress bar + divergence check) and at the end of the epoch.
* Exact resume: the checkpoint written at the end of every epoch (and an "epoch 0" one before
  training) holds model, optimizer, scheduler, scaler, every RNG state and the metrics so far.
  The data order is a function of (seed, epoch) (`loader.set_epoch`), so a resumed run replays
  exactly what an uninterrupted one would have done.
* Files are written atomically (archspec.io) and metrics rewritten whole, so `kill -9` at any
  instant leaves a consistent, resumable run directory.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from archspec.errors import ArchspecError
from archspec.io import atomic_write_bytes, torch_save_bytes
from archspec.train import checkpoint as ckpt_mod
from archspec.train import distributed
from archspec.train.compiling import CompileClock, compile_model, is_compile_error, resolve_compile
from archspec.train.device import (
    Precision,
    configure_backends,
    resolve_device,
    resolve_precision,
    wants_channels_last,
)
from archspec.train.distributed import Group
from archspec.train.evaluate import evaluate_loader
from archspec.train.report import Reporter
from archspec.train.rundir import (
    check_writable,
    new_run_dir,
    remove_stale_temp_files,
    use_run_dir,
    write_metrics,
    write_steps,
    write_summary,
    write_yaml,
)
from archspec.train.stop import StopRequest

SYNC_EVERY = 25  # steps between reads of the running loss (progress bar, divergence check)
DIVERGENCE_FACTOR = 10.0  # running loss above this multiple of the first loss = diverged
PLOT_EVERY_SECONDS = 60.0  # redraw curves.png / lr.png during a run at most this often (and at the end)

STATUS_COMPLETED, STATUS_INTERRUPTED, STATUS_DIVERGED = "completed", "interrupted", "diverged"
# Recipe keys a resumed run may not change: their state (optimizer moments, scheduler position,
# steps per epoch) comes from the checkpoint, so a new value would be silently ignored or break.
RESUME_FROZEN_KEYS = ("optimizer", "schedule", "batch_size", "ema", "drop_last")


@dataclass
class RunResult:
    """What `train` returns; the same facts are in `run_dir/summary.json`."""

    status: str  # completed | interrupted | diverged
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
class _State:
    """Everything that evolves during a run and must survive a resume."""

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


    def record(self, row: dict[str, Any], outcome: _EpochOutcome) -> bool:
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


@dataclass
class _EpochOutcome:
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


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP / torch.compile wrappers (what checkpoints store)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def _current_lr(optimizer: torch.optim.Optimizer) -> float:
    lr = optimizer.param_groups[0]["lr"]
    return float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)


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


def _divergence(window_loss: float, total_is_finite: bool, first_loss: float | None) -> str | None:
    if not total_is_finite or not math.isfinite(window_loss):
        return "the loss became NaN/inf"
    if first_loss is not None and first_loss > 0 and window_loss > DIVERGENCE_FACTOR * first_loss:
        return (f"the running loss {window_loss:.4g} is more than {DIVERGENCE_FACTOR:g}x "
                f"the first loss {first_loss:.4g}")
    return None


def _train_epoch(model, loader, *, epoch: int, epochs: int, state: _State, criterion, optimizer, scheduler,
                 sched_per_batch: bool, precision: Precision, device: torch.device, scaler, grad_clip,
                 channels_last: bool, stop: StopRequest, reporter: Reporter, ema=None,
                 group: Group | None = None, compile_clock: CompileClock | None = None) -> _EpochOutcome:
    """One pass over the training set; stops early (flags in the outcome) on a stop request or divergence.

    Under DDP (`group` with several ranks) every sync adds the counters and the stop flag over the
    ranks, so all ranks see the whole training set's loss/accuracy and stop at the same step; a stop
    request is then only acted on at a sync point (every SYNC_EVERY steps).
    """
    group = group or Group()
    model.train()
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64
    loss_sum = torch.zeros((), dtype=acc_dtype, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    first_loss_t: torch.Tensor | None = None
    images = steps = 0
    synced_loss, synced_images = 0.0, 0
    all_images, stop_agreed = 0, False  # images over all ranks, and their stop vote, as of the last sync
    lr = _current_lr(optimizer)
    start = time.perf_counter()
    steps_total = len(loader)
    clock = compile_clock or CompileClock(None, device)
    clock.start_epoch()
    step_loss = torch.empty(max(1, steps_total), dtype=torch.float32, device=device)  # read once, at the end

    def sync() -> tuple[str | None, float, float]:
        """Read the device counters once; check for divergence since the last read."""
        nonlocal synced_loss, synced_images, all_images, stop_agreed
        if group.enabled:  # one all-reduce: loss sum, hits, images, stop flag, first loss
            first = first_loss_t if first_loss_t is not None else 0.0
            total_loss, hits, all_images, stops, first_sum = group.sum(
                [loss_sum, correct, images, 1.0 if stop.requested else 0.0, first], device)
            stop_agreed = stops > 0
            if first_loss_t is not None and state.first_loss is None:
                state.first_loss = first_sum / group.world_size
        else:
            total_loss, hits = torch.stack([loss_sum, correct.to(acc_dtype)]).tolist()  # one sync (no fp64 on MPS)
            all_images = images
            if first_loss_t is not None and state.first_loss is None:
                state.first_loss = float(first_loss_t.item())
        all_images = int(all_images)
        window = (total_loss - synced_loss) / max(1, all_images - synced_images)
        problem = _divergence(window, math.isfinite(total_loss), state.first_loss)
        synced_loss, synced_images = total_loss, all_images
        return problem, total_loss / max(1, all_images), hits / max(1, all_images)

    with reporter.epoch(epoch, epochs, steps_total) as bar:
        batches = iter(loader)
        while True:
            try:
                x, y = next(batches)
            except StopIteration:
                break
            except RuntimeError:
                # Ctrl-C in a terminal also reaches DataLoader workers; where they do not share our
                # handler (spawn start method) they exit and the fetch fails. That is the stop we asked for.
                if stop.requested:
                    return _EpochOutcome(steps, images, float("nan"), float("nan"), time.perf_counter() - start,
                                         stopped=True, lr=lr)
                raise
            lr = _current_lr(optimizer)
            with clock.step(x):
                loss, logits = train_step(model, x, y, criterion=criterion, optimizer=optimizer,
                                          precision=precision, device=device, scaler=scaler, grad_clip=grad_clip,
                                          channels_last=channels_last)
            if ema is not None:
                ema.update(_unwrap(model))
            if sched_per_batch and scheduler is not None:
                scheduler.step()
            state.lr_history.append(lr)
            batch = int(y.shape[0])
            if state.first_loss is None and first_loss_t is None:
                first_loss_t = loss.float().clone()  # read at the next sync; a CUDA graph reuses `loss`
            loss_sum += loss.to(acc_dtype) * batch
            step_loss[steps] = loss
            correct += (logits.argmax(dim=1) == y).sum()
            images += batch
            steps += 1
            bar.step()
            if steps % SYNC_EVERY == 0 and steps < steps_total:
                problem, mean_loss, mean_acc = sync()
                if problem:
                    return _EpochOutcome(steps, all_images, mean_loss, mean_acc, time.perf_counter() - start,
                                         diverged=problem, lr=lr)
                bar.stats(loss=mean_loss, acc=mean_acc, lr=lr,
                          ips=(all_images - clock.images * group.world_size)
                          / max(1e-9, time.perf_counter() - start - clock.seconds))
            if stop_agreed or (stop.requested and not group.enabled):
                return _EpochOutcome(steps, images, float("nan"), float("nan"), time.perf_counter() - start,
                                     stopped=True, lr=lr)
    if steps == 0:
        raise ArchspecError("the training set is empty (check --limit-train and the dataset)")
    problem, mean_loss, mean_acc = sync()  # under DDP a stop voted here takes effect after the epoch
    # Only a completed epoch is recorded, so only it carries the compile timing and the step losses.
    return _EpochOutcome(steps, all_images, mean_loss, mean_acc, time.perf_counter() - start, diverged=problem,
                         lr=lr, compile_seconds=clock.seconds, compile_images=clock.images * group.world_size,
                         step_losses=step_loss[:steps].tolist())


def _diverged_message(epoch: int, outcome: _EpochOutcome, last_good: int, base_lr: float) -> str:
    kept = f"the checkpoints of epoch {last_good} are kept" if last_good else "last.pt holds the initial weights"
    return (f"training diverged in epoch {epoch} at learning rate {outcome.lr:.4g}: {outcome.diverged}. "
            f"Stopped; {kept}. Try a lower learning rate, e.g. --lr {base_lr / 10:.2g} (the recipe's is {base_lr:g})")


def _pick_dataset(spec, recipe, dataset: str | None) -> str:
    ds = dataset or getattr(spec, "dataset", None) or getattr(recipe, "dataset", None)
    if not ds:
        raise ArchspecError(f'spec "{spec.name}" names no dataset: add `dataset:` to it or pass --data NAME')
    return str(ds)


def _checkpoint_payload(*, model, optimizer, scheduler, sched_interval, scaler, state: _State, spec, fingerprint,
                        recipe_dict, dataset, device, limits, ema=None) -> dict[str, Any]:
    model_state = _unwrap(model).state_dict()
    return {
        "format": ckpt_mod.FORMAT,
        "version": ckpt_mod.VERSION,
        "torch_version": str(torch.__version__),
        "spec_name": spec.name,
        "spec_fingerprint": fingerprint,
        "param_shapes": ckpt_mod.param_shapes(model_state),
        "recipe": recipe_dict,
        "dataset": dataset,
        "limits": limits,
        "epoch": state.epoch,
        "data_epoch": state.epoch + 1,  # the epoch whose data order comes next
        "model": model_state,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scheduler_interval": sched_interval,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "ema": ema.state_dict() if ema is not None else None,  # the averaged weights `archspec eval` uses
        "rng": ckpt_mod.capture_rng(device),
        "metrics": [dict(row) for row in state.metrics],
        "best_test_acc": state.best_test_acc,
        "best_epoch": state.best_epoch,
        "first_loss": state.first_loss,
        "lr_history": torch.tensor(state.lr_history, dtype=torch.float64),
        "step_losses": torch.tensor(state.step_losses, dtype=torch.float32),
        "train_seconds": state.train_seconds,
        "train_phase_seconds": state.train_phase_seconds,
        "images_seen": state.images_seen,
        "compile_seconds": state.compile_seconds,
    }


def _state_from_checkpoint(ckpt: dict[str, Any]) -> _State:
    return _State(
        epoch=int(ckpt["epoch"]),
        metrics=[dict(row) for row in ckpt.get("metrics", [])],
        best_test_acc=ckpt.get("best_test_acc"),
        best_epoch=ckpt.get("best_epoch"),
        first_loss=ckpt.get("first_loss"),
        lr_history=[float(v) for v in ckpt["lr_history"].tolist()] if ckpt.get("lr_history") is not None else [],
        train_seconds=float(ckpt.get("train_seconds", 0.0)),
        train_phase_seconds=float(ckpt.get("train_phase_seconds", 0.0)),
        images_seen=int(ckpt.get("images_seen", 0)),
        compile_seconds=float(ckpt.get("compile_seconds", 0.0)),
        step_losses=[float(v) for v in ckpt["step_losses"].tolist()] if ckpt.get("step_losses") is not None else [],
    )


def _recipe_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if ckpt_mod.plain(old.get(k)) != ckpt_mod.plain(new.get(k))]


def _write_plots(run_dir: Path, state: _State, steps_per_epoch: int, title: str, reporter: Reporter) -> None:
    from archspec.train.plots import plot_curves, plot_lr

    try:
        plot_curves(state.metrics, run_dir / "curves.png", title=title)
        plot_lr(state.lr_history, steps_per_epoch, run_dir / "lr.png", title=f"learning rate: {title}")
    except Exception as exc:  # noqa: BLE001 - plots are a convenience: never lose a run over them
        reporter.note(f"warning: could not write plots: {exc}")


def train(spec, recipe, *, dataset: str | None = None, data_dir: str | Path | None = None, device: str = "auto",
          run_dir: str | Path | None = None, runs_root: str | Path = "runs", limit_train: int | None = None,
          limit_test: int | None = None, resume: str | Path | None = None, workers: int | None = None,
          console: Console | None = None, progress: bool = True, quiet: bool = False,
          stop_after_epoch: int | None = None, init_weights=None) -> RunResult:
    """Train `spec` (a loaded Spec) with `recipe` (a Recipe); write the run directory; return a RunResult.

    `resume` is a run directory (or its last.pt): the run continues there at the next epoch and
    ends exactly where an uninterrupted run would. `stop_after_epoch` ends the run cleanly
    (status "interrupted", resumable) after that epoch: for time-sliced jobs. Ctrl-C/SIGTERM do
    the same after the current batch. Bad input raises ArchspecError; the status in the result
    tells completed / interrupted / diverged apart. `init_weights(model)` (see
    `archspec.weights.weights_source`) loads starting weights into a new run, for fine-tuning; it
    returns the keys it left fresh.
    """
    import archspec
    from archspec.data.loader import make_loaders
    from archspec.recipes.build import apply_init, build_loss, build_optimizer, build_scheduler

    reporter = Reporter(console, progress=progress, quiet=quiet)
    dev = resolve_device(device)
    # Under torchrun: join the process group (cuda:LOCAL_RANK + NCCL, or CPU + Gloo). Rank 0 reports
    # and writes for the group; the other ranks train in silence.
    group = distributed.from_environment()
    dev = distributed.setup(group, dev)
    if not group.is_main:
        reporter = Reporter(Console(quiet=True), progress=False, quiet=True)
    precision = resolve_precision(getattr(recipe, "precision", "auto"), dev)
    compile_mode = resolve_compile(getattr(recipe, "compile", "auto"), dev)
    configure_backends(dev)
    recipe_dict = ckpt_mod.plain(recipe.to_dict())
    fingerprint = ckpt_mod.spec_fingerprint(spec.resolved)

    resumed = None
    resume_file = None
    if resume is not None:
        resume_file = ckpt_mod.checkpoint_path(resume, prefer="last.pt")
        resumed = ckpt_mod.load_checkpoint(resume_file)

    if resumed is not None:
        # The same data subset as before, unless asked otherwise: a different subset would change
        # the steps per epoch and the batches, and the resumed run would not be the run it continues.
        limits = resumed.get("limits") or {}
        limit_train = limit_train if limit_train is not None else limits.get("train")
        limit_test = limit_test if limit_test is not None else limits.get("test")
    ds = _pick_dataset(spec, recipe, dataset)
    if resumed is not None and resumed.get("dataset") and str(resumed["dataset"]) != ds:
        raise ArchspecError(f'the run was trained on "{resumed["dataset"]}", not "{ds}"', file=str(resume_file),
                            hint="resume on the same dataset (drop --data, or pass the original one)")

    # Same seed -> same initial weights and same data order, run after run.
    ckpt_mod.seed_everything(int(recipe.seed))
    model = archspec.build_model(spec)
    if getattr(recipe, "init", None):
        apply_init(model, recipe.init)
    if init_weights is not None and resumed is None:  # on resume the checkpoint has the weights
        fresh = init_weights(model)
        if fresh:
            reporter.note(f"starting weights loaded; kept fresh (sizes differ): {', '.join(fresh)}",
                          style="cyan", always=False)
    params = sum(p.numel() for p in model.parameters())
    if resumed is not None:
        ckpt_mod.check_compatible(resumed, spec_name=spec.name, fingerprint=fingerprint,
                                  model_state=model.state_dict(), file=str(resume_file), strict=True)
        saved_world = int(resumed.get("world_size") or 1)
        if saved_world != group.world_size:  # the shards and the steps per epoch would differ
            raise ArchspecError(f"the run was trained on {saved_world} process(es), this resume has "
                                f"{group.world_size}", file=str(resume_file),
                                hint=f"resume with --devices {saved_world}" if saved_world > 1
                                else "resume without --devices / torchrun")

    # The run directory, checked before any data is loaded or any step is taken. Rank 0 picks and
    # creates it; the other ranks get its name (or rank 0's error).
    def make_run_dir() -> Path:
        if resume_file is not None:
            where = resume_file.parent
        elif run_dir is not None:
            where = use_run_dir(run_dir)
        else:
            where = new_run_dir(runs_root, spec.name, recipe.name)
        param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        check_writable(where, need_bytes=2 * 4 * param_bytes + (16 << 20))  # last+best, weights+optimizer
        return where

    out = Path(group.decide(make_run_dir))

    bundle = make_loaders(
        ds, input_shape=tuple(spec.input_shape), num_classes=spec.num_classes, batch_size=int(recipe.batch_size),
        augment=recipe.augment, normalize=recipe.normalize, data_dir=data_dir, limit_train=limit_train,
        limit_test=limit_test, device=str(dev), seed=int(recipe.seed),
        num_workers=workers if workers is not None else getattr(recipe, "workers", None),
        rank=group.rank, world_size=group.world_size, drop_last=bool(getattr(recipe, "drop_last", False)),
    )
    steps_per_epoch = len(bundle.train)
    if steps_per_epoch == 0 and getattr(recipe, "drop_last", False):
        raise ArchspecError(f"no full training batch: {bundle.num_train:,} training images"
                            + (f" over {group.world_size} processes" if group.enabled else "")
                            + f" and batch size {recipe.batch_size} with drop_last",
                            hint="use a smaller --batch-size, more training images, or --set drop_last=false")
    whiten = getattr(recipe, "whiten", None)
    if whiten is not None:  # init: whiten (data-dependent; on resume the checkpoint has the weights)
        from archspec.init_whiten import first_conv, training_images, whiten_first_conv

        if resumed is None:
            images, mean, std = training_images(bundle.train, whiten.samples)
            whiten_first_conv(model, images, whiten.eps, freeze=whiten.freeze, mean=mean, std=std)
        elif whiten.freeze:
            first_conv(model).weight.requires_grad_(False)

    model.to(dev)
    channels_last = wants_channels_last(model, dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(recipe, model)
    model = distributed.wrap_model(model, group, dev)  # DDP with several ranks; after the optimizer's names
    # The training steps run `train_model` (compiled, or `model` itself); evaluation and checkpoints use
    # the plain module (`_unwrap`), so compiled and eager runs write the same files.
    train_model = compile_model(model, compile_mode) if compile_mode else model
    compile_clock = CompileClock(compile_mode, dev)
    scheduler, sched_interval = build_scheduler(recipe, optimizer, steps_per_epoch)
    criterion = build_loss(recipe, spec.num_classes or bundle.info.num_classes)
    if hasattr(criterion, "to"):
        criterion = criterion.to(dev)
    scaler = torch.amp.GradScaler(dev.type) if precision.use_scaler else None
    epochs = int(recipe.epochs)
    ema = None
    if getattr(recipe, "ema", None) is not None:
        from archspec.train.ema import ModelEMA

        cfg = recipe.ema
        ema = ModelEMA(_unwrap(model), decay=cfg.decay, every=cfg.every, warmup_power=cfg.warmup_power,
                       lookahead=cfg.lookahead, total_steps=epochs * steps_per_epoch)
    tta = getattr(recipe, "tta", "none") or "none"
    eval_every = max(1, int(getattr(recipe, "eval_every", 1) or 1))
    grad_clip = getattr(recipe, "grad_clip", None)
    title = f"{spec.name} + {recipe.name} on {ds}"

    def save(state: _State, *, best: bool) -> None:
        if not group.is_main:
            return
        data = torch_save_bytes(_checkpoint_payload(
            model=model, optimizer=optimizer, scheduler=scheduler, sched_interval=sched_interval, scaler=scaler,
            state=state, spec=spec, fingerprint=fingerprint, recipe_dict=recipe_dict, dataset=ds, device=dev,
            limits={"train": limit_train, "test": limit_test}, ema=ema) | {"world_size": group.world_size})
        atomic_write_bytes(out / "last.pt", data)
        if best:
            atomic_write_bytes(out / "best.pt", data)

    if resumed is not None:
        state = _state_from_checkpoint(resumed)
        changed = _recipe_differences(resumed.get("recipe") or {}, recipe_dict)
        frozen = [k for k in changed if k in RESUME_FROZEN_KEYS]
        if frozen:
            old = resumed.get("recipe") or {}
            what = "; ".join(f"{k}: {old.get(k)!r} in the run, {recipe_dict.get(k)!r} now" for k in frozen)
            raise ArchspecError(f"cannot resume with a different {', '.join(frozen)} ({what})",
                                file=str(resume_file),
                                hint="the optimizer and LR-schedule state continue from the checkpoint; resume "
                                     "with the run's own recipe (no --recipe/--lr/--batch-size) or start a new run")
        _unwrap(model).load_state_dict(resumed["model"])
        try:
            optimizer.load_state_dict(resumed["optimizer"])
            if scheduler is not None and resumed.get("scheduler") is not None:
                scheduler.load_state_dict(resumed["scheduler"])
            if scaler is not None and resumed.get("scaler") is not None:
                scaler.load_state_dict(resumed["scaler"])
            if ema is not None and resumed.get("ema") is not None:
                ema.load_state_dict(resumed["ema"])
        except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as exc:
            raise ArchspecError(f"cannot restore the optimizer/schedule state ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}): the recipe differs from the "
                                f"run's in {', '.join(changed) or 'its optimizer or schedule'}",
                                file=str(resume_file),
                                hint="resume with the run's own recipe (leave out --recipe)") from None
        ckpt_mod.restore_rng(resumed["rng"])
        if changed:
            reporter.note(f"note: the recipe differs from the run's original in: {', '.join(changed)}")
        if group.is_main:
            remove_stale_temp_files(out)
            write_yaml(out / "recipe.yaml", recipe_dict)
            write_metrics(out, state.metrics)  # drop any row written after the checkpoint (kill -9 window)
            write_steps(out, state.lr_history, state.step_losses, steps_per_epoch)
        reporter.note(f"resuming {out} after epoch {state.epoch}/{epochs}", style="cyan", always=False)
    else:
        state = _State()
        if group.is_main:
            write_yaml(out / "spec.yaml", ckpt_mod.plain(spec.resolved))
            write_yaml(out / "recipe.yaml", recipe_dict)
            write_metrics(out, state.metrics)
        save(state, best=False)  # "epoch 0": a kill during epoch 1 is resumable too
    del resumed

    reporter.header({"spec": spec.name, "recipe": recipe.name,
                     "data": f"{ds} ({bundle.num_train:,} train / {bundle.num_test:,} test)",
                     "device": f"{dev} {precision.name}" + (f" x {group.world_size} processes (DDP)"
                                                            if group.enabled else "")
                     + (f", torch.compile ({compile_mode})" if compile_mode else ""),
                     "params": f"{params:,}", "run": str(out)})
    status, message = STATUS_COMPLETED, ""
    started = time.time()
    last_plot = time.monotonic()  # matplotlib costs ~0.5 s a figure: don't let it dominate short epochs

    def summary_of(status: str, message: str = "") -> dict[str, Any]:
        return _summary(status, message, state=state, spec=spec, recipe=recipe, ds=ds, dev=dev, precision=precision,
                        params=params, epochs=epochs, out=out, started=started,
                        limits=(limit_train, limit_test), compile_mode=compile_mode) | {"world_size": group.world_size}

    # Signals only set a flag from here on (a second Ctrl-C aborts): the loop stops between batches
    # and the closing writes below are not cut short.
    with distributed.stop_request(group) as stop:
        try:
            with reporter.live():
                for epoch in range(state.epoch + 1, epochs + 1):
                    epoch_start = time.perf_counter()
                    bundle.train.set_epoch(epoch)
                    outcome = _train_epoch(
                        train_model, bundle.train, epoch=epoch, epochs=epochs, state=state, criterion=criterion,
                        optimizer=optimizer, scheduler=scheduler, sched_per_batch=sched_interval == "batch",
                        precision=precision, device=dev, scaler=scaler, grad_clip=grad_clip,
                        channels_last=channels_last, stop=stop, reporter=reporter, ema=ema, group=group,
                        compile_clock=compile_clock)
                    if outcome.stopped or outcome.diverged:
                        del state.lr_history[len(state.lr_history) - outcome.steps:]  # the discarded steps
                        if outcome.stopped:
                            status = STATUS_INTERRUPTED
                            message = (f"interrupted ({stop.signal_name}) during epoch {epoch}; "
                                       f"last.pt holds epoch {state.epoch}")
                        else:
                            status = STATUS_DIVERGED
                            message = _diverged_message(epoch, outcome, state.epoch, float(recipe.optimizer.lr))
                        break
                    if sched_interval != "batch" and scheduler is not None:
                        scheduler.step()
                    test_loss = test_acc = None
                    if epoch % eval_every == 0 or epoch == epochs:
                        eval_model = ema.module if ema is not None else _unwrap(model)
                        group.broadcast_buffers(eval_model)  # rank 0's BN statistics: what it checkpoints
                        test_loss, test_acc, *_ = evaluate_loader(
                            eval_model, bundle.test, device=dev,
                            precision=precision, channels_last=channels_last, tta=tta)
                    row = {"epoch": epoch, "train_loss": outcome.loss, "train_acc": outcome.acc,
                           "test_loss": test_loss, "test_acc": test_acc, "lr": outcome.lr,
                           "epoch_seconds": time.perf_counter() - epoch_start,
                           "images_per_second": outcome.images_per_second}
                    improved = state.record(row, outcome)
                    save(state, best=improved)
                    if group.is_main:
                        write_metrics(out, state.metrics)
                        write_steps(out, state.lr_history, state.step_losses, steps_per_epoch)
                        write_summary(out, summary_of(STATUS_COMPLETED if epoch == epochs else "running"))
                        if time.monotonic() - last_plot >= PLOT_EVERY_SECONDS:
                            _write_plots(out, state, steps_per_epoch, title, reporter)
                            last_plot = time.monotonic()
                    reporter.epoch_row(row, epochs)
                    stop_now = group.any(stop.requested, dev)  # every rank stops after the same epoch
                    if epoch < epochs and (stop_now or (stop_after_epoch is not None
                                                        and epoch >= stop_after_epoch)):
                        status = STATUS_INTERRUPTED
                        reason = (stop.signal_name or "a stop request on another rank") if stop_now \
                            else f"stop_after_epoch={stop_after_epoch}"
                        message = f"stopped ({reason}) after epoch {epoch}"
                        break
        except torch.OutOfMemoryError:
            raise ArchspecError(f"out of GPU memory with batch size {recipe.batch_size}",
                                hint=f"try a smaller --batch-size (e.g. {max(1, int(recipe.batch_size) // 2)}) "
                                     "or a smaller model") from None
        except RuntimeError as exc:
            if compile_mode is None or not is_compile_error(exc):
                raise
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise ArchspecError(f"torch.compile ({compile_mode}) failed on this model: {type(exc).__name__}: {first}",
                                hint="train eagerly with --set compile=false") from None

        summary = summary_of(status, message)
        if group.is_main:
            write_metrics(out, state.metrics)
            write_steps(out, state.lr_history, state.step_losses, steps_per_epoch)
            write_summary(out, summary)
            _write_plots(out, state, steps_per_epoch, title, reporter)
        group.barrier()  # no rank exits (torchrun would stop the others) before rank 0 has written
        group.close()

    resume_cmd = None
    if status != STATUS_COMPLETED:
        reporter.note(message, style="red" if status == STATUS_DIVERGED else "yellow")
    if status == STATUS_INTERRUPTED:
        resume_cmd = f"archspec train {spec.path or spec.name} --resume {out}" + (
            f" --devices {group.world_size}" if group.enabled else "")
        reporter.note(f"resume with: {resume_cmd}", style="yellow")
    reporter.summary(summary)
    return RunResult(
        status=status, run_dir=out, epochs_completed=state.epoch, epochs=epochs,
        best_test_acc=state.best_test_acc, best_epoch=state.best_epoch,
        final_test_acc=summary["final_test_acc"], final_test_loss=summary["final_test_loss"], params=params,
        train_seconds=state.train_seconds, images_per_second=summary["images_per_second"],
        metrics=list(state.metrics), message=message, resume_command=resume_cmd, summary=summary)


def _summary(status: str, message: str, *, state: _State, spec, recipe, ds, dev, precision, params, epochs, out,
             started, limits, compile_mode=None) -> dict[str, Any]:
    last_eval = next((row for row in reversed(state.metrics) if row.get("test_acc") is not None), None)
    last = state.metrics[-1] if state.metrics else {}
    return {
        "status": status,
        "message": message,
        "spec": spec.name,
        "spec_path": str(spec.path) if spec.path else None,
        "recipe": recipe.name,
        "dataset": ds,
        "epochs": state.epoch,
        "epochs_planned": epochs,
        "best_test_acc": state.best_test_acc,
        "best_epoch": state.best_epoch,
        "final_test_acc": last_eval.get("test_acc") if last_eval else None,
        "final_test_loss": last_eval.get("test_loss") if last_eval else None,
        "final_train_loss": last.get("train_loss"),
        "final_train_acc": last.get("train_acc"),
        "params": params,
        "train_seconds": state.train_seconds,
        "images_per_second": state.images_seen / state.train_phase_seconds if state.train_phase_seconds else 0.0,
        "images_seen": state.images_seen,
        "compile": compile_mode or False,
        "compile_seconds": state.compile_seconds,
        "device": str(dev),
        "precision": precision.name,
        "torch": str(torch.__version__),
        "seed": int(recipe.seed),
        "batch_size": int(recipe.batch_size),
        "limit_train": limits[0],
        "limit_test": limits[1],
        "run_dir": str(out),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()),
        "session_seconds": time.time() - started,
    }
