"""Turn a `Recipe` into torch objects: optimizer, LR scheduler, loss, weight init, LR curve/plot.

Schedules are assembled from `torch.optim.lr_scheduler` pieces (LinearLR, ConstantLR,
CosineAnnealingLR, ExponentialLR, StepLR, MultiStepLR, chained by SequentialLR; or OneCycleLR),
never from hand-written lambdas, so checkpoints hold ordinary scheduler state and the curves are
the ones torch users know. Chaining them naively has well-known traps, handled here:

* LinearLR and ConstantLR only take factors <= 1, but a recipe may warm up *to* 10x its lr. Each
  piece therefore gets its own `base_lrs` (``lr * max factor``) and factors divided by that max.
* At a milestone SequentialLR restarts the next piece from that piece's `base_lrs` (closed form),
  which for CosineAnnealingLR/ExponentialLR/StepLR would jump back to the optimizer's lr. Decaying
  pieces get `base_lrs` = the lr where the previous phase ended, so the curve is continuous.
* The first piece starts from the optimizer group's lr, so that lr (and ``initial_lr``) is set to
  the first piece's base before the pieces are built.

The resulting curves are checked numerically against closed forms in tests/test_recipes.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim import lr_scheduler

from archspec.errors import ArchspecError
from archspec.memory import OptimizerMemory, Setup
from archspec.recipes.recipe import OptimizerConfig, Recipe
from archspec.recipes.schedule import phase_end_lrs, plan_phases, steps_per_unit

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
}
_FUSED_ON_CUDA = {"sgd", "adam", "adamw"}

NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())

INIT_SCHEMES = ("default", "xavier_uniform", "kaiming_normal", "whiten")
_INIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


# --- optimizer -------------------------------------------------------------------------------


def param_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """Split the model's parameters into optimizer groups by weight decay and lr multiplier.

    A parameter is tagged ``bias`` (its attribute name is ``bias``) and/or ``norm`` (it belongs to a
    normalisation layer). Tags listed in ``optimizer.no_decay_on`` get weight_decay 0; its lr is
    ``lr`` times the product of ``optimizer.lr_mult`` over its tags, and its weight decay
    ``weight_decay`` times the product of ``optimizer.wd_mult``. torch's SGD decays by
    ``lr * weight_decay`` per step, so airbench's "64x lr for BatchNorm biases, same decay" is
    ``lr_mult: {bias: 64}`` with ``wd_mult: {bias: 1/64}``. Each group records its ``lr_mult`` so
    schedulers can scale per-group peaks.
    """
    cfg = recipe.optimizer
    owners: dict[int, tuple[nn.Module, str]] = {}
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            owners.setdefault(id(p), (module, pname))
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for _, p in model.named_parameters():
        if not p.requires_grad:  # frozen (`trainable: false` / `bias`, a frozen whitening conv)
            continue
        module, pname = owners[id(p)]
        tags = {t for t, hit in (("bias", pname == "bias"), ("norm", isinstance(module, NORM_LAYERS))) if hit}
        decay = 0.0 if tags & set(cfg.no_decay_on) else cfg.weight_decay
        mult = 1.0
        for tag in sorted(tags):
            mult *= cfg.lr_mult.get(tag, 1.0)
            decay *= cfg.wd_mult.get(tag, 1.0)
        group = groups.setdefault((decay, mult), {
            "params": [], "weight_decay": decay, "lr": cfg.lr * mult, "lr_mult": mult,
            "name": f"wd={decay:g} lr_mult={mult:g}",
        })
        group["params"].append(p)
    if not groups:
        raise ArchspecError("the model has no parameters to train (every layer is frozen?)")
    return list(groups.values())


def build_optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    """The recipe's optimizer over `model`'s parameters (param groups from `param_groups`).

    Build it after moving the model to its device: on CUDA the fused kernels are used where torch
    has them (SGD, Adam, AdamW); elsewhere torch picks its default (foreach on accelerators).
    """
    cfg = recipe.optimizer
    groups = param_groups(model, recipe)
    kwargs = cfg.torch_kwargs()
    params = [p for g in groups for p in g["params"]]
    if cfg.name in _FUSED_ON_CUDA and all(p.is_cuda and p.is_floating_point() for p in params):
        kwargs["fused"] = True
    return OPTIMIZERS[cfg.name](groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)


def optimizer_memory(cfg: OptimizerConfig, device: str) -> OptimizerMemory:
    """What `build_optimizer`'s optimizer adds to a training step on `device` ("cuda" or "cpu"), for
    archspec/memory.py: state tensors per parameter, step counters, and the temporaries of
    ``step()``. On CUDA SGD/Adam/AdamW run fused (no temporaries) and Adagrad/RMSprop use torch's
    foreach kernels (temporaries for all parameters at once); on the CPU torch loops over the
    parameters, so only the largest parameter's temporaries are alive at a time. The counts follow
    torch's implementations and are measured in tests/test_memory.py."""
    wd = 1 if cfg.weight_decay else 0
    momentum = 1 if cfg.momentum else 0
    if cfg.name == "sgd":
        state, counters, scratch = momentum, False, wd + (1 if cfg.nesterov else 0)
    elif cfg.name in ("adam", "adamw"):
        state, counters, scratch = 2 + (1 if cfg.amsgrad else 0), True, 2 + (wd if cfg.name == "adam" else 0)
    elif cfg.name == "adagrad":
        state, counters, scratch = 1, True, 1 + wd
    else:  # rmsprop: square averages, a momentum buffer and the centred mean when asked for
        state, counters, scratch = 1 + momentum + (1 if cfg.centered else 0), True, 1 + wd
    if device == "cuda" and cfg.name in _FUSED_ON_CUDA:
        scratch = 0
    return OptimizerMemory(cfg.name, state, counters, scratch, scratch_all=device == "cuda" and scratch > 0)


def memory_setup(recipe: Recipe, device: str, precision: str | None = None) -> Setup:
    """What `archspec count` estimates training memory for: the recipe's batch size, precision
    (unless `precision` is given) and optimizer, on `device` ("cuda" or "cpu")."""
    return Setup(recipe.batch_size, device, precision or recipe.precision, optimizer_memory(recipe.optimizer, device))


# --- scheduler -------------------------------------------------------------------------------


def _group_lrs(recipe: Recipe, optimizer: torch.optim.Optimizer) -> list[float]:
    """Each group's un-scheduled lr (recipe lr x lr_mult when the group came from `param_groups`)."""
    return [recipe.optimizer.lr * g["lr_mult"] if "lr_mult" in g else float(g["lr"]) for g in optimizer.param_groups]


def _scale(kind: str, p: dict[str, Any]) -> float | None:
    """Linear/constant pieces: the multiple of the group lr their base sits at (their largest
    factor, so torch's factors stay <= 1). Decaying pieces: None (they start where the last ended)."""
    if kind == "linear":
        return max(p["start_factor"], p["end_factor"])
    if kind == "constant":
        return p["factor"]
    return None


def _piece(kind: str, p: dict[str, Any], optimizer, length: int, unit: int) -> lr_scheduler.LRScheduler:
    """One torch scheduler for a phase of `length` scheduler steps (`unit` steps per epoch)."""
    if kind == "linear":
        top = _scale(kind, p)
        return lr_scheduler.LinearLR(optimizer, start_factor=p["start_factor"] / top,
                                     end_factor=p["end_factor"] / top, total_iters=length)
    if kind == "constant":
        return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=length)
    if kind == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=length, eta_min=p["eta_min"])
    if kind == "exponential":
        return lr_scheduler.ExponentialLR(optimizer, gamma=p["gamma"] ** (1.0 / unit))
    if kind == "step":
        return lr_scheduler.StepLR(optimizer, step_size=p["step_size"] * unit, gamma=p["gamma"])
    if kind == "multistep":
        return lr_scheduler.MultiStepLR(optimizer, milestones=[m * unit for m in p["milestones"]], gamma=p["gamma"])
    raise ValueError(f"unknown schedule piece {kind}")  # pragma: no cover - schema-checked


def build_scheduler(
    recipe: Recipe, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> tuple[lr_scheduler.LRScheduler, str]:
    """The recipe's LR scheduler and when to step it: ``"batch"`` (after every optimizer step) or
    ``"epoch"`` (once after every epoch); `scheduler_due` applies that rule. Call it once, on a freshly built optimizer, and before
    loading a checkpoint's optimizer/scheduler state.
    """
    if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ArchspecError(f"steps per epoch must be a positive integer, got {steps_per_epoch!r}")
    schedule = recipe.schedule
    unit = steps_per_unit(schedule, steps_per_epoch)
    group_lrs = _group_lrs(recipe, optimizer)

    if schedule.onecycle is not None:
        oc = schedule.onecycle
        peak = oc.max_lr if oc.max_lr is not None else recipe.optimizer.lr
        scheduler = lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[peak * lr / recipe.optimizer.lr for lr in group_lrs],
            total_steps=recipe.epochs * unit,
            pct_start=oc.pct_start,
            anneal_strategy=oc.anneal_strategy,
            cycle_momentum=oc.cycle_momentum,
            base_momentum=oc.base_momentum,
            max_momentum=oc.max_momentum,
            div_factor=oc.div_factor,
            final_div_factor=oc.final_div_factor,
            three_phase=oc.three_phase,
        )
        return scheduler, schedule.interval

    _, planned = plan_phases(schedule, recipe.epochs, steps_per_epoch)
    # Where each phase starts (per group), and which phases actually have steps.
    starts, live = [], []
    current = list(group_lrs)
    for pp in planned:
        if pp.length > 0:
            live.append(pp)
            starts.append(current)
        current = phase_end_lrs(pp.phase, current, group_lrs, pp.length, unit)

    def base_lrs(pp, start: list[float]) -> list[float]:
        scale = _scale(pp.phase.type, pp.phase.params())
        return [lr * scale for lr in group_lrs] if scale is not None else list(start)

    # The first piece initialises from the groups' lr: make that its base before building anything.
    for group, lr in zip(optimizer.param_groups, base_lrs(live[0], starts[0]), strict=True):
        group["lr"] = lr
        group["initial_lr"] = lr

    pieces, milestones = [], []
    for pp, start in zip(live, starts, strict=True):
        piece = _piece(pp.phase.type, pp.phase.params(), optimizer, pp.length, unit)
        piece.base_lrs = base_lrs(pp, start)
        pieces.append(piece)
        if pp is not live[0]:
            milestones.append(pp.start)
    if len(pieces) == 1:
        return pieces[0], schedule.interval
    return lr_scheduler.SequentialLR(optimizer, pieces, milestones), schedule.interval


def scheduler_due(interval: str, step: int, steps_per_epoch: int) -> bool:
    """Whether the scheduler steps after optimizer step `step` (counted from 1): after every step for
    per-batch schedules, after each epoch's last step for per-epoch ones. The training loop and
    `lr_curve` both ask this, so the plotted curve is the trained one."""
    return interval == "batch" or step % max(1, steps_per_epoch) == 0


# --- loss ------------------------------------------------------------------------------------


def _check_log_probabilities(output: torch.Tensor) -> None:
    """`loss: nll` takes the model's output as log-probabilities: each row's exp must sum to 1."""
    with torch.no_grad():
        total = torch.logsumexp(output.detach().float(), dim=1).abs().max().item()
    if not total < 1e-2:  # also catches NaN
        raise ArchspecError("loss nll expects the model to output log-probabilities (exp of each row "
                            f"summing to 1), but this model's first batch is off by {total:.3g} in log space",
                            path="loss", hint="end the spec with `log_softmax`, or use loss: cross_entropy "
                                              "(which takes raw logits)")


def build_loss(recipe: Recipe, num_classes: int):
    """``loss(logits, targets) -> scalar``. Targets are class indices, or class probabilities
    (float [B, C], e.g. from mixup) for all three losses.

    * ``cross_entropy``: `nn.CrossEntropyLoss` with the recipe's label smoothing; expects logits.
    * ``nll``: `F.nll_loss` on the model's output as it is, which must be log-probabilities (a
      spec ending in `log_softmax`), exactly what the reports' ``F.nll_loss(model(x), y)`` did.
      Applying log_softmax again would be harmless in value but not the same arithmetic. The
      first batch is checked: outputs that are not log-probabilities are an error, not a run that
      silently trains on -logit[y].
    * ``mse``: mean squared error between the raw logits and one-hot targets (no softmax), as the
      reports did; label smoothing, if set, smooths the one-hot targets.
    """
    name = recipe.loss.name
    smoothing = recipe.loss.label_smoothing
    if name == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=smoothing)

    if name == "nll":
        checked = False

        def nll(logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            nonlocal checked
            if not checked:
                _check_log_probabilities(logp)
                checked = True
            if targets.is_floating_point():
                return -(targets * logp.float()).sum(dim=1).mean()
            return F.nll_loss(logp.float(), targets)

        return nll

    if name == "mse":
        def mse(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            logits = logits.float()
            if not targets.is_floating_point():
                targets = F.one_hot(targets, num_classes).float()
            if smoothing:
                targets = targets * (1.0 - smoothing) + smoothing / num_classes
            return F.mse_loss(logits, targets)

        return mse
    raise ArchspecError(f'unknown loss "{name}"')  # pragma: no cover - schema-checked


# --- init ------------------------------------------------------------------------------------


def apply_init(model: nn.Module, scheme: str) -> nn.Module:
    """Re-initialise conv/linear weights (biases to zero) with `scheme`; ``default`` keeps torch's.

    ``xavier_uniform`` is what one report tried; ``kaiming_normal`` (fan_in, ReLU gain) suits ReLU
    nets. Normalisation layers keep weight 1 / bias 0.
    """
    if scheme not in INIT_SCHEMES:
        raise ArchspecError(f'unknown init "{scheme}"; choose one of {", ".join(INIT_SCHEMES)}')
    if scheme in ("default", "whiten"):  # whiten needs training images: set-up calls archspec.train.whiten
        return model
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, _INIT_LAYERS):
                continue
            if isinstance(module.weight, nn.parameter.UninitializedParameter):
                raise ArchspecError(f"cannot initialise lazy layer {name or type(module).__name__} before its "
                                    "first forward pass")
            if scheme == "xavier_uniform":
                nn.init.xavier_uniform_(module.weight)
            else:
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


# --- LR curve and plot -----------------------------------------------------------------------


def lr_curve(recipe: Recipe, steps_per_epoch: int = 1) -> list[float]:
    """The lr of every optimizer step of the run (``epochs * steps_per_epoch`` values).

    Uses the real optimizer class and scheduler objects on a dummy parameter, so what you plot is
    what training does. For per-epoch schedules each epoch's value repeats `steps_per_epoch` times.
    """
    cfg = recipe.optimizer
    dummy = nn.Parameter(torch.zeros(1))
    optimizer = OPTIMIZERS[cfg.name]([dummy], lr=cfg.lr, weight_decay=cfg.weight_decay, **cfg.torch_kwargs())
    scheduler, interval = build_scheduler(recipe, optimizer, steps_per_epoch)
    total = recipe.epochs * steps_per_epoch
    lrs: list[float] = []
    for i in range(total):
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        if i == total - 1:
            break
        optimizer.step()  # no gradient: a no-op that keeps torch's "step order" check satisfied
        if scheduler_due(interval, i + 1, steps_per_epoch):
            scheduler.step()
    return lrs


def plot_lr(
    recipe: Recipe,
    path: str | Path,
    steps_per_epoch: int | None = None,
    *,
    lrs: Sequence[float] | None = None,
    fmt: str | None = None,
    dpi: int | None = None,
) -> Path:
    """Draw the LR curve (x: epochs) to `path` (png/svg/pdf: `fmt`, else the file's suffix), written
    atomically; the folder is created if needed.

    `lrs` plots given values (e.g. the lrs a run actually used, one per step) instead of
    `lr_curve`. `steps_per_epoch` defaults to 1 for per-epoch schedules and 100 for per-batch ones.
    """
    from archspec.figures import DEFAULT_DPI, figure_format, lr_figure, write_figure

    fmt = figure_format(path, fmt)  # a bad name fails before the schedule is computed
    if steps_per_epoch is None:
        steps_per_epoch = 100 if recipe.schedule.interval == "batch" else 1
    values = list(lrs) if lrs is not None else lr_curve(recipe, steps_per_epoch)
    title = f"{recipe.name}: {recipe.optimizer.describe()}, {recipe.schedule.describe()}"
    return write_figure(lr_figure(values, steps_per_epoch, title=title), path, fmt=fmt,
                        dpi=dpi or DEFAULT_DPI, make_folder=True)
