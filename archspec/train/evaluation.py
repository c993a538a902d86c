"""Test-set evaluation: the per-epoch check inside training and `archspec eval` on a checkpoint.

Test loss is always plain cross-entropy (mean over images, no label smoothing), whatever loss
the recipe trains with, so test losses of runs with different recipes can be compared. Counts
are accumulated on the device and read once at the end (no per-batch host sync). A run whose
recipe has `ema` is evaluated with its averaged weights, and with the recipe's `tta`, both during
training and by `archspec eval`, so the two report the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from archspec.errors import ArchspecError
from archspec.train.device import Precision, resolve_device, resolve_precision, wants_channels_last

DEFAULT_EVAL_BATCH = 256


@dataclass
class EvalResult:
    test_loss: float
    test_acc: float
    per_class: list[tuple[str, int, int, float]] = field(default_factory=list)  # (class, correct, total, acc)
    num_images: int = 0
    checkpoint: str | None = None
    epoch: int | None = None
    warnings: list[str] = field(default_factory=list)


def evaluate_loader(model: torch.nn.Module, loader, *, device: torch.device, precision: Precision,
                    channels_last: bool = False, num_classes: int | None = None, tta: str = "none"
                    ) -> tuple[float, float, torch.Tensor | None, torch.Tensor | None, int]:
    """(mean loss, accuracy, per-class correct, per-class total, images) over `loader`.

    Per-class counts are only kept when `num_classes` is given. The model is put in eval mode
    and restored to its previous mode afterwards. `tta` (none / flip / flip_translate) averages the
    logits over augmented views (archspec.train.tta).
    """
    from archspec.train.tta import tta_logits

    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    class_correct = class_total = None
    if num_classes:
        class_correct = torch.zeros(num_classes, dtype=torch.int64, device=device)
        class_total = torch.zeros(num_classes, dtype=torch.int64, device=device)
    seen = 0
    try:
        with torch.inference_mode():
            for x, y in loader:
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with precision.autocast(device):
                    logits = tta_logits(model, x, tta)
                logits = logits.float()
                loss_sum += F.cross_entropy(logits, y, reduction="sum").to(loss_sum.dtype)
                hits = logits.argmax(dim=1) == y
                correct += hits.sum()
                if class_correct is not None:
                    class_total += torch.bincount(y, minlength=num_classes)[:num_classes]
                    class_correct += torch.bincount(y[hits], minlength=num_classes)[:num_classes]
                seen += int(y.shape[0])
    finally:
        model.train(was_training)
    if seen == 0:
        raise ArchspecError("the test set is empty (check --limit-test and the dataset)")
    loss, hits = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()  # one sync
    return loss / seen, hits / seen, class_correct, class_total, seen


def _model_from(spec, ckpt: dict[str, Any], path: Path, dev: torch.device) -> tuple[torch.nn.Module, list[str], bool]:
    """(the spec's model with the checkpoint's weights on `dev`, compatibility warnings, channels_last).
    The weights are the EMA average when the run had one: those its test accuracy was measured with."""
    import archspec
    from archspec.train.checkpoint import check_compatible, spec_fingerprint

    model = archspec.build_model(spec)
    warnings = check_compatible(ckpt, spec_name=spec.name, fingerprint=spec_fingerprint(spec.resolved),
                                model_state=model.state_dict(), file=str(path), strict=False)
    ema = ckpt.get("ema")
    model.load_state_dict(ema["model"] if ema else ckpt["model"])
    model.to(dev)
    channels_last = wants_channels_last(model, dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model, warnings, channels_last


def evaluate(spec, checkpoint: str | Path, *, dataset: str | None = None, data_dir: str | Path | None = None,
             device: str = "auto", limit_test: int | None = None, batch_size: int | None = None,
             workers: int | None = None) -> EvalResult:
    """Test loss, accuracy and per-class accuracy of a checkpoint (a .pt file or a run directory).

    `spec` is a loaded Spec or a path to one (re-targeted with `dataset` when given). A run
    directory means its best.pt (falling back to last.pt). The checkpoint must fit the spec's
    layer shapes; a renamed or cosmetically edited spec only produces a warning. The file's
    checksums and fields are verified before anything is loaded (archspec.train.checkpoint).
    """
    import archspec
    from archspec.data.loader import make_test_loader
    from archspec.recipes.recipe import RECIPE_DEFAULTS
    from archspec.train.checkpoint import load_checkpoint, weights_file

    if not hasattr(spec, "resolved"):
        spec = archspec.load_spec(spec, dataset=dataset)
    path, note = weights_file(checkpoint)
    ckpt = load_checkpoint(path)
    dev = resolve_device(device)
    saved = {k: v for k, v in (ckpt.get("recipe") or {}).items() if v is not None}
    recipe: dict[str, Any] = {**RECIPE_DEFAULTS, **saved}  # the run's recipe, as trained
    try:  # evaluate in the precision the run trained in, so the numbers match its metrics
        precision = resolve_precision(recipe["precision"], dev)
    except ArchspecError:  # e.g. an fp16 (CUDA) run evaluated on a CPU
        precision = resolve_precision("auto", dev)

    model, warnings, channels_last = _model_from(spec, ckpt, path, dev)
    warnings += [note] if note else []
    batch_size = int(batch_size or recipe.get("eval_batch_size") or DEFAULT_EVAL_BATCH)  # --batch-size wins
    ds = dataset or spec.dataset or ckpt.get("dataset")
    if not ds:
        raise ArchspecError("no dataset to evaluate on: the spec has no `dataset:`; pass --data NAME")
    bundle = make_test_loader(  # the test split only: no time spent decoding the training images
        ds, input_shape=tuple(spec.input_shape), num_classes=spec.num_classes,
        batch_size=batch_size, normalize=recipe["normalize"],
        data_dir=data_dir, limit_test=limit_test, device=str(dev), seed=int(recipe["seed"]),
    )
    num_classes = spec.num_classes or len(bundle.class_names)
    try:
        loss, acc, class_correct, class_total, seen = evaluate_loader(
            model, bundle.test, device=dev, precision=precision, channels_last=channels_last,
            num_classes=num_classes, tta=recipe["tta"])
    except torch.OutOfMemoryError:
        raise ArchspecError(f"out of GPU memory evaluating with batch size {batch_size}",
                            hint=f"try a smaller --batch-size (e.g. {max(1, batch_size // 4)})") from None
    names = list(bundle.class_names) or [str(i) for i in range(num_classes)]
    per_class = []
    for i, (c, t) in enumerate(zip(class_correct.tolist(), class_total.tolist(), strict=True)):
        name = names[i] if i < len(names) else str(i)
        per_class.append((name, int(c), int(t), (c / t) if t else float("nan")))
    return EvalResult(test_loss=loss, test_acc=acc, per_class=per_class, num_images=seen, checkpoint=str(path),
                      epoch=ckpt.get("epoch"), warnings=warnings)
