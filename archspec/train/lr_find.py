"""The learning-rate range test (`archspec lr-find SPEC`): which learning rate to train a spec with.

The test trains the spec's model (built and initialised as `archspec train` would: same seed, init,
data, augmentation, optimizer and loss) for up to `steps` mini-batches while the learning rate grows
exponentially from `start` to `end`, and records each step's loss. It stops early when the running
loss (an exponential moving average, `BETA`, bias-corrected so the first steps are not pulled
towards zero) exceeds `STOP_FACTOR` times the lowest running loss so far, or the loss is NaN/inf:
past that point the rate is too high and the remaining steps would only be noise.

The suggested learning rate is the *steepest descent*: the rate where the loss falls fastest per
factor of learning rate, i.e. the most negative slope of the smoothed loss against log(lr), taken
before the loss reaches its minimum. The loss is smoothed here by a centred moving mean over about a
tenth of the steps (archspec.figures.smooth): a trailing average would lag behind the data and move
the steepest point to higher rates. The result also has the rate at the lowest smoothed loss, and
its tenth (the other common rule of thumb), which the plot marks too. When the smoothed loss never
fell by `MIN_DROP` of its starting level (the mean of its first tenth) there is no suggestion: the
dips of a flat curve are noise (e.g. SGD on 100 steps, which it needs more of: try more `--steps`).

No run directory is written and nothing is saved: the model is thrown away afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import count
from typing import Any

import torch

from archspec.errors import ArchspecError
from archspec.figures import smooth
from archspec.train.device import uses_recipe_threads

BETA = 0.9  # weight of the past in the running loss that the stop rule reads
STOP_FACTOR = 4.0  # stop once the running loss exceeds this multiple of its lowest value
MIN_DROP = 0.05  # no suggestion unless the smoothed loss fell by at least this fraction of its start


@dataclass
class LrFindResult:
    """What the range test measured and what it suggests."""

    lrs: list[float]  # the learning rate of each step taken
    losses: list[float]  # that step's mini-batch loss
    smoothed: list[float]  # the losses smoothed by a centred moving mean (what the suggestion reads)
    suggested: float | None  # steepest descent of the smoothed loss; None when it never descended
    min_lr: float | None  # the rate at the lowest smoothed loss
    stop_reason: str  # why the test ended
    start: float
    end: float
    steps: int  # planned

    @property
    def min_over_ten(self) -> float | None:
        return self.min_lr / 10 if self.min_lr is not None else None

    @property
    def drop(self) -> float:
        """How far the smoothed loss fell below its starting level, as a fraction of that level."""
        return drop(self.smoothed)


def start_level(smoothed: list[float]) -> float:
    """Where the loss curve starts: the mean of its first tenth (the first point alone is one batch)."""
    head = smoothed[: max(1, len(smoothed) // 10)]
    return sum(head) / len(head)


def drop(smoothed: list[float]) -> float:
    """How far a smoothed loss curve fell below its starting level, as a fraction of that level."""
    if not smoothed or start_level(smoothed) <= 0:
        return 0.0
    return max(0.0, 1 - min(smoothed) / start_level(smoothed))


def lr_ramp(start: float, end: float, steps: int) -> list[float]:
    """`steps` learning rates from `start` to `end`, equally spaced on a log scale."""
    if not (math.isfinite(start) and start > 0):
        raise ArchspecError(f"the start learning rate must be a positive number, not {start:g}", path="--start")
    if not (math.isfinite(end) and end > start):
        raise ArchspecError(f"the end learning rate ({end:g}) must be above the start ({start:g})", path="--end")
    if steps < 2:
        raise ArchspecError(f"the test needs at least 2 steps, not {steps}", path="--steps")
    ratio = math.log(end / start) / (steps - 1)
    return [start * math.exp(ratio * i) for i in range(steps)]


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float | None, float | None]:
    """(steepest-descent rate, rate at the minimum) of a smoothed loss curve; (None, None) when the
    curve never fell by MIN_DROP of its start."""
    if not smoothed:
        return None, None
    lowest = min(range(len(smoothed)), key=smoothed.__getitem__)
    if drop(smoothed) < MIN_DROP:
        return None, None
    slopes = {i: (smoothed[i + 1] - smoothed[i - 1]) / math.log(lrs[i + 1] / lrs[i - 1]) for i in range(1, lowest)}
    steepest = min(slopes, key=slopes.__getitem__) if slopes else None
    if steepest is None or slopes[steepest] >= 0:
        return None, lrs[lowest]
    return lrs[steepest], lrs[lowest]


@uses_recipe_threads
def lr_find(spec, recipe, *, start: float = 1e-7, end: float = 10.0, steps: int = 100, dataset: str | None = None,
            data_dir: str | None = None, device: str = "auto", limit_train: int | None = None,
            workers: int | None = None) -> LrFindResult:
    """Run the range test for `spec` (a loaded Spec) trained as `recipe` says (see the module docstring)."""
    ramp = lr_ramp(start, end, steps)
    parts = _training_parts(spec, recipe, dataset=dataset, data_dir=data_dir, device=device,
                            limit_train=limit_train, workers=workers)
    lrs, losses, reason = _ramp_up(parts, ramp)
    smoothed = smooth(losses, max(3, len(losses) // 10)) if losses else []
    suggested, min_lr = suggest(lrs, smoothed)
    return LrFindResult(lrs=lrs, losses=losses, smoothed=smoothed, suggested=suggested, min_lr=min_lr,
                        stop_reason=reason, start=start, end=end, steps=steps)


def _training_parts(spec, recipe, **where: Any) -> dict[str, Any]:
    """Model, data, optimizer and loss exactly as the set-up of `archspec train` builds them."""
    from archspec.recipes.build import build_loss, build_optimizer
    from archspec.train.device import (
        configure_backends,
        resolve_device,
        resolve_precision,
        wants_channels_last,
    )
    from archspec.train.distributed import Group
    from archspec.train.setup import RunOptions, apply_whiten, build_module, load_data, pick_dataset

    device = resolve_device(where["device"])
    precision = resolve_precision(recipe.precision, device)
    configure_backends(device)
    options = RunOptions(data_dir=where["data_dir"], workers=where["workers"])
    module = build_module(spec, recipe)
    bundle = load_data(spec, recipe, options, pick_dataset(spec, recipe, where["dataset"]),
                       {"train": where["limit_train"], "test": 1}, device, Group())
    apply_whiten(module, recipe, bundle, resuming=False)
    module.to(device)
    channels_last = wants_channels_last(module, device)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(recipe, module)
    criterion = build_loss(recipe, spec.num_classes or bundle.info.num_classes)
    if len(bundle.train) == 0:
        raise ArchspecError("the training set is empty (check --limit-train and the dataset)")
    return {"module": module, "loader": bundle.train, "optimizer": optimizer, "base_lr": recipe.optimizer.lr,
            "device": device,
            "precision": precision, "channels_last": channels_last,
            "criterion": criterion.to(device) if hasattr(criterion, "to") else criterion,
            "scaler": torch.amp.GradScaler(device.type) if precision.use_scaler else None}


def _set_lr(optimizer: torch.optim.Optimizer, shares: list[float], lr: float) -> None:
    """Every parameter group at `lr` times its share (a recipe's `lr_mult` keeps its ratio)."""
    for group, share in zip(optimizer.param_groups, shares, strict=True):
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr * share)
        else:
            group["lr"] = lr * share


def _ramp_up(parts: dict[str, Any], ramp: list[float]) -> tuple[list[float], list[float], str]:
    """Train one mini-batch per rate of `ramp` until the stop rule fires: (rates, losses, why it ended)."""
    from archspec.train.loop import train_step

    optimizer = parts["optimizer"]
    shares = [float(group["lr"]) / parts["base_lr"] for group in optimizer.param_groups]
    parts["module"].train()
    lrs: list[float] = []
    losses: list[float] = []
    running, lowest = 0.0, math.inf
    for epoch in count(1):
        parts["loader"].set_epoch(epoch)
        for x, y in parts["loader"]:
            lr = ramp[len(lrs)]
            _set_lr(optimizer, shares, lr)
            loss, _ = train_step(parts["module"], x, y, criterion=parts["criterion"], optimizer=optimizer,
                                 precision=parts["precision"], device=parts["device"], scaler=parts["scaler"],
                                 channels_last=parts["channels_last"])
            value = float(loss.item())
            if not math.isfinite(value):
                return lrs, losses, f"the loss became NaN/inf at lr {lr:.3g}"
            lrs.append(lr)
            losses.append(value)
            running = BETA * running + (1 - BETA) * value
            smoothed = running / (1 - BETA ** len(losses))
            lowest = min(lowest, smoothed)
            if smoothed > STOP_FACTOR * lowest:
                return lrs, losses, (f"the running loss {smoothed:.3g} passed {STOP_FACTOR:g}x its lowest "
                                     f"({lowest:.3g}) at lr {lr:.3g}")
            if len(lrs) == len(ramp):
                return lrs, losses, f"reached the end rate {ramp[-1]:.3g}"
    raise AssertionError("unreachable")  # count() never ends
