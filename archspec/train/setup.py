"""The set-up phase of a training run: from (spec, recipe, options) to a ready `Run`.

Order matters and is deliberate:

1. Device, process group (torchrun), precision and compile mode: cheap, and they fail fast.
2. The checkpoint to resume from, if any: it fixes the data subset and is checked against the
   dataset and the freshly built model before anything expensive happens.
3. The model, built right after seeding: the same seed gives the same initial weights and the same
   data order, run after run (the global RNG is drawn from in this order, so do not reorder).
4. The run directory, checked for space and permissions before any data is loaded.
5. Data, data-dependent init (`init: whiten`), then optimizer, DDP, torch.compile, scheduler,
   loss, GradScaler and EMA, in the order their states depend on each other.

Nothing here trains or writes run files other than the run directory itself; restoring a
checkpoint's states is the restore phase (archspec.train.loop).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from archspec.errors import ArchspecError
from archspec.figures import DEFAULT_DPI, figure_format
from archspec.recipes.recipe import Recipe
from archspec.train import distributed
from archspec.train.checkpoint import ResumePoint, plain, seed_everything, spec_fingerprint
from archspec.train.device import configure_backends, resolve_device, resolve_precision, wants_channels_last
from archspec.train.distributed import Group
from archspec.train.observers import RunObserver, standard_observers
from archspec.train.report import DEFAULT_LOG_EVERY_S, Reporter
from archspec.train.rundir import check_writable, new_run_dir, use_run_dir
from archspec.train.runlock import RunLock, stale_owner_note
from archspec.train.state import Run
from archspec.train.torch_compile import CompileClock, compile_model, resolve_compile
from archspec.train.tracking import check_available


@dataclass(frozen=True)
class RunOptions:
    """`train()`'s keyword arguments: where and how to run, not what (that is the spec and recipe)."""

    dataset: str | None = None
    data_dir: str | Path | None = None
    device: str = "auto"
    run_dir: str | Path | None = None
    runs_root: str | Path = "runs"
    limit_train: int | None = None
    limit_test: int | None = None
    resume: str | Path | None = None
    workers: int | None = None
    console: Console | None = None
    progress: bool = True
    quiet: bool = False
    stop_after_epoch: int | None = None
    observers: Sequence[RunObserver] = ()
    log_every: float = DEFAULT_LOG_EVERY_S  # in-epoch progress line interval when not on a terminal
    mlflow_uri: str | None = None  # where `log: mlflow` logs (archspec.train.mlflow_log)
    log_graph: bool = False  # the model graph in the TensorBoard events
    figure_format: str = "png"  # curves.* and lr.*: png, svg or pdf
    dpi: int = DEFAULT_DPI
    memory_check: bool = True  # refuse a run that cannot fit in the device's memory (train.memory_check)
    init_weights: Callable[[torch.nn.Module], list[str]] | None = None  # starting weights (fine-tuning)


def set_up(spec, recipe: Recipe, options: RunOptions, owned: contextlib.ExitStack) -> tuple[Run, ResumePoint | None]:
    """Build the run; also return the checkpoint to restore from when resuming.

    `owned` receives the run directory's lock (archspec.train.runlock), which the caller holds for
    the whole run.
    """
    figure_format("curves", options.figure_format)  # a bad format or a missing tracker fails now,
    check_available(recipe.log)  # not after the run directory is made
    reporter = Reporter(options.console, progress=options.progress, quiet=options.quiet,
                        log_every=options.log_every)
    # Under torchrun: join the process group (cuda:LOCAL_RANK + NCCL, or CPU + Gloo). Rank 0 reports
    # and writes for the group; the other ranks train in silence.
    device = resolve_device(options.device)
    group = distributed.from_environment()
    device = distributed.setup(group, device)
    if not group.is_main:
        reporter = Reporter(Console(quiet=True), progress=False, quiet=True)
    precision = resolve_precision(recipe.precision, device)
    compile_mode = resolve_compile(recipe.compile, device)
    configure_backends(device)
    if options.memory_check:  # before anything is allocated; rank 0 decides for all
        group.decide(lambda: _check_memory(spec, recipe, device, group))

    resume = ResumePoint.open(options.resume) if options.resume is not None else None
    limits = (resume.limits(options.limit_train, options.limit_test) if resume is not None
              else {"train": options.limit_train, "test": options.limit_test})
    dataset = pick_dataset(spec, recipe, options.dataset)
    fingerprint = spec_fingerprint(spec.resolved)
    if resume is not None:
        resume.check_dataset(dataset)
    module = build_module(spec, recipe)
    if options.init_weights is not None and resume is None:  # on resume the checkpoint has the weights
        fresh = options.init_weights(module)
        if fresh:
            reporter.note(f"starting weights loaded; kept fresh (sizes differ): {', '.join(fresh)}",
                          style="cyan", always=False)
    if resume is not None:
        resume.check_model(spec_name=spec.name, fingerprint=fingerprint, model_state=module.state_dict(),
                           world_size=group.world_size)
    out, note = group.decide(lambda: _make_run_dir(spec, recipe, options, module, resume, owned))
    if note:
        reporter.note(note)
    bundle = load_data(spec, recipe, options, dataset, limits, device, group)
    limits = _limits_used(limits, bundle, reporter)
    apply_whiten(module, recipe, bundle, resuming=resume is not None)
    run = Run(spec=spec, recipe=recipe, recipe_dict=plain(recipe.to_dict()), fingerprint=fingerprint,
              dataset=dataset, limits=limits, out=out, device=device, precision=precision, group=group,
              compile_mode=compile_mode, stop_after_epoch=options.stop_after_epoch, bundle=bundle, reporter=reporter,
              **_training_parts(module, spec, recipe, bundle, device, group, compile_mode, precision))
    run.observers = standard_observers(run, options)
    return run, resume


def _check_memory(spec, recipe: Recipe, device: torch.device, group: Group) -> None:
    """Refuse a run whose training step cannot fit in the device's free memory (archspec.train.memory_check)."""
    from archspec.train.memory_check import check_memory

    # CPU processes of one machine share its RAM; GPUs are one per process.
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", group.world_size)) if device.type == "cpu" else 1
    check_memory(spec, recipe, device, processes=processes)


def pick_dataset(spec, recipe: Recipe, dataset: str | None) -> str:
    ds = dataset or spec.dataset or recipe.dataset
    if not ds:
        raise ArchspecError(f'spec "{spec.name}" names no dataset: add `dataset:` to it or pass --data NAME')
    return str(ds)


def build_module(spec, recipe: Recipe) -> torch.nn.Module:
    """The spec's model with the recipe's init, from the recipe seed (same seed -> same weights)."""
    import archspec
    from archspec.recipes.build import apply_init

    seed_everything(recipe.seed)
    module = archspec.build_model(spec)
    apply_init(module, recipe.init)
    return module


def _make_run_dir(spec, recipe: Recipe, options: RunOptions, module: torch.nn.Module,
                  resume: ResumePoint | None, owned: contextlib.ExitStack) -> tuple[Path, str | None]:
    """The run directory, locked for this process, and a note when a dead owner's lock was taken
    over (rank 0 picks, creates and locks it; `Group.decide` gives the others its name)."""
    lock = _claim_run_dir(spec, recipe, options, resume, owned)
    param_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    check_writable(lock.run_dir, need_bytes=2 * 4 * param_bytes + (16 << 20))  # last+best, weights+optimizer
    return lock.run_dir, stale_owner_note(lock)


def _claim_run_dir(spec, recipe: Recipe, options: RunOptions, resume: ResumePoint | None,
                   owned: contextlib.ExitStack) -> RunLock:
    """Rank 0's run directory, made when new and locked (the lock goes on `owned`)."""
    if resume is not None:
        return owned.enter_context(RunLock(resume.file.parent))
    if options.run_dir is None:
        return owned.enter_context(RunLock(new_run_dir(options.runs_root, spec.name, recipe.name)))
    wanted = Path(options.run_dir)
    if wanted.is_dir():  # lock before looking inside: "in use by process N" beats "already holds a run"
        lock = owned.enter_context(RunLock(wanted))
        use_run_dir(wanted)
        return lock
    return owned.enter_context(RunLock(use_run_dir(wanted)))


def load_data(spec, recipe: Recipe, options: RunOptions, dataset: str, limits: dict[str, int | None],
               device: torch.device, group: Group):
    from archspec.data.loader import make_loaders

    bundle = make_loaders(
        dataset, input_shape=tuple(spec.input_shape), num_classes=spec.num_classes, batch_size=recipe.batch_size,
        augment=recipe.augment, normalize=recipe.normalize, data_dir=options.data_dir,
        limit_train=limits["train"], limit_test=limits["test"], device=str(device), seed=recipe.seed,
        num_workers=options.workers if options.workers is not None else recipe.workers,
        rank=group.rank, world_size=group.world_size, drop_last=recipe.drop_last,
        eval_batch_size=recipe.eval_batch_size,
    )
    if len(bundle.train) == 0 and recipe.drop_last:
        raise ArchspecError(f"no full training batch: {bundle.num_train:,} training images"
                            + (f" over {group.world_size} processes" if group.enabled else "")
                            + f" and batch size {recipe.batch_size} with drop_last",
                            hint="use a smaller --batch-size, more training images, or --set drop_last=false")
    return bundle


def _limits_used(limits: dict[str, int | None], bundle, reporter: Reporter) -> dict[str, int | None]:
    """The limits as the data met them: `--limit-train 2048` on a 512-image set trains on, and
    records, 512 (and says so). No limit stays None."""
    used = {"train": bundle.num_train, "test": bundle.num_test}
    for split, flag in (("train", "--limit-train"), ("test", "--limit-test")):
        if limits[split] is not None and limits[split] > used[split]:
            reporter.note(f"note: {flag} {limits[split]:,} is more than the {used[split]:,} images there are; "
                          f"using {used[split]:,}", always=False)
    return {split: None if limits[split] is None else used[split] for split in used}


def apply_whiten(module: torch.nn.Module, recipe: Recipe, bundle, *, resuming: bool) -> None:
    """`init: whiten`: data-dependent, so it runs here; on resume the checkpoint has the weights."""
    if recipe.whiten is None:
        return
    from archspec.train import whiten  # looked up at call time: benchmarks time `whiten_first_conv`

    cfg = recipe.whiten
    if not resuming:
        images, mean, std = bundle.train.raw_images(cfg.samples)
        whiten.whiten_first_conv(module, images, cfg.eps, freeze=cfg.freeze, mean=mean, std=std)
    elif cfg.freeze:
        whiten.first_conv(module).weight.requires_grad_(False)


def _training_parts(module: torch.nn.Module, spec, recipe: Recipe, bundle, device: torch.device, group: Group,
                    compile_mode: str | None, precision) -> dict[str, Any]:
    """Model wrappers, optimizer, scheduler, loss, scaler and EMA: the `Run` fields that train."""
    from archspec.recipes.build import build_loss, build_optimizer, build_scheduler

    module.to(device)
    channels_last = wants_channels_last(module, device)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(recipe, module)
    model = distributed.wrap_model(module, group, device)  # DDP with several ranks; after the optimizer's names
    # The training steps run `train_model` (compiled, or `model` itself); evaluation and checkpoints use
    # the plain module, so compiled and eager runs write the same files.
    train_model = compile_model(model, compile_mode) if compile_mode else model
    scheduler, sched_interval = build_scheduler(recipe, optimizer, len(bundle.train))
    criterion = build_loss(recipe, spec.num_classes or bundle.info.num_classes)
    if hasattr(criterion, "to"):
        criterion = criterion.to(device)
    ema = None
    if recipe.ema is not None:
        from archspec.train.ema import ModelEMA

        cfg = recipe.ema
        ema = ModelEMA(module, decay=cfg.decay, every=cfg.every, warmup_power=cfg.warmup_power,
                       lookahead=cfg.lookahead, total_steps=recipe.epochs * len(bundle.train))
    return dict(module=module, model=model, train_model=train_model, optimizer=optimizer, scheduler=scheduler,
                sched_interval=sched_interval, criterion=criterion, ema=ema, channels_last=channels_last,
                scaler=torch.amp.GradScaler(device.type) if precision.use_scaler else None,
                compile_clock=CompileClock(compile_mode, device))
