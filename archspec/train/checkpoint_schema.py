"""What a checkpoint's fields must be, checked once for every reader (resume, eval, export).

Why: `torch.load(weights_only=True)` guarantees that a checkpoint holds only tensors and plain
data, not that it holds the *right* plain data. A hand-edited or foreign file with `epoch: "3"`,
no `rng`, or a format version from the future would otherwise fail deep inside resume, eval or
export with a KeyError/TypeError traceback, or worse, be used. `check_structure` is the single
gate all three pass through; it names the field that is wrong, as the rest of archspec names a
spec key: ``runs/x/last.pt: rng.numpy_pos: expected a whole number, got str "x"``.

Two levels: the fields any reader of the weights uses (`check_structure(ckpt, file)`: eval,
export) and, with `resume=True`, everything an exact resume restores (optimizer, RNG states,
history). Tensor *contents* are not judged here: the layer shapes are compared with the spec by
`archspec.train.checkpoint.check_compatible`, and a damaged file is caught before loading by
its zip checksums (`archspec.train.checkpoint.damage`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from archspec.errors import ArchspecError

FORMAT = "archspec.checkpoint"
VERSION = 1

Check = tuple[Callable[[Any], bool], str]  # (predicate, what the value should be, in words)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _tensor_dict(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items())


def _shapes(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(s, list) and all(_is_int(n) and n >= 0 for n in s) for k, s in v.items())


def _vector(v: Any) -> bool:
    return isinstance(v, torch.Tensor) and v.dim() == 1 and v.is_floating_point()


def _normalize(v: Any) -> bool:
    if v is None or isinstance(v, bool):
        return True
    return isinstance(v, dict) and all(
        isinstance(v.get(k), list) and v[k] and all(_is_number(x) for x in v[k]) for k in ("mean", "std"))


WHOLE = (lambda v: _is_int(v) and v >= 0, "a whole number >= 0")
TEXT = (lambda v: isinstance(v, str), "a string")
MAPPING = (lambda v: isinstance(v, dict), "a mapping")

# The fields every reader of the weights relies on (eval, export, resume).
WEIGHTS_FIELDS: dict[str, Check] = {
    "spec_name": TEXT,
    "spec_fingerprint": TEXT,
    "model": (_tensor_dict, "a mapping of layer names to tensors"),
    "param_shapes": (_optional(_shapes), "a mapping of layer names to lists of sizes"),
    "epoch": WHOLE,
    "ema": (_optional(lambda v: isinstance(v, dict) and _tensor_dict(v.get("model"))),
            "null or a mapping with the averaged `model`"),
    "recipe": (_optional(lambda v: isinstance(v, dict)), "a mapping (the run's recipe)"),
    "dataset": (_optional(lambda v: isinstance(v, str)), "a dataset name"),
}

# The run's recipe keys that `archspec eval` reads to evaluate as the run did.
RECIPE_FIELDS: dict[str, Check] = {
    "seed": (_is_int, "a whole number"),
    "precision": (_optional(lambda v: isinstance(v, str)), "a precision name"),
    "tta": (_optional(lambda v: isinstance(v, str)), "a test-time augmentation name"),
    "normalize": (_normalize, "true, false or {mean: [...], std: [...]}"),
}

# What an exact resume restores, on top of the weights.
RESUME_FIELDS: dict[str, Check] = {
    "limits": (_optional(lambda v: isinstance(v, dict) and all(_optional(_is_int)(v.get(k)) for k in ("train", "test"))),
               "a mapping {train: N or null, test: N or null}"),
    "optimizer": (lambda v: isinstance(v, dict) and isinstance(v.get("state"), dict)
                  and isinstance(v.get("param_groups"), list), "an optimizer state (state, param_groups)"),
    "scheduler": (_optional(lambda v: isinstance(v, dict)), "null or a scheduler state"),
    "scaler": (_optional(lambda v: isinstance(v, dict)), "null or a gradient-scaler state"),
    "rng": MAPPING,
    "metrics": (_optional(lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v)),
                "a list of metrics rows"),
    "best_test_acc": (_optional(_is_number), "null or a number"),
    "best_epoch": (_optional(lambda v: _is_int(v) and v >= 0), "null or a whole number >= 0"),
    "first_loss": (_optional(_is_number), "null or a number"),
    "lr_history": (_optional(_vector), "null or a 1-d float tensor"),
    "step_losses": (_optional(_vector), "null or a 1-d float tensor"),
    "train_seconds": (_optional(_is_number), "a number"),
    "train_phase_seconds": (_optional(_is_number), "a number"),
    "compile_seconds": (_optional(_is_number), "a number"),
    "images_seen": (_optional(WHOLE[0]), WHOLE[1]),
    "world_size": (_optional(lambda v: _is_int(v) and v >= 1), "a whole number >= 1"),
}

RNG_FIELDS: dict[str, Check] = {
    "torch": (lambda v: isinstance(v, torch.Tensor) and v.dtype == torch.uint8, "a uint8 tensor"),
    "python": (lambda v: isinstance(v, torch.Tensor) and v.dim() == 1 and not v.is_floating_point(),
               "a 1-d integer tensor"),
    "python_version": (_is_int, "a whole number"),
    "python_gauss": (_optional(_is_number), "null or a number"),
    "numpy_kind": TEXT,
    "numpy": (lambda v: isinstance(v, torch.Tensor) and v.dim() == 1 and not v.is_floating_point(),
              "a 1-d integer tensor"),
    "numpy_pos": (_is_int, "a whole number"),
    "numpy_has_gauss": (_is_int, "a whole number"),
    "numpy_gauss": (_is_number, "a number"),
    "cuda": (_optional(lambda v: isinstance(v, list) and all(isinstance(t, torch.Tensor) for t in v)),
             "a list of tensors"),
}

_ROW_NUMBERS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_seconds", "images_per_second")


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '...' if len(text) > 40 else text}"


def _check_fields(data: dict, fields: dict[str, Check], file: str, prefix: str = "") -> None:
    """Each field present and right; a missing one is taken as null (fields older files lack are optional)."""
    for key, (ok, wanted) in fields.items():
        if key not in data and not ok(None):
            raise ArchspecError(f"the checkpoint has no `{prefix}{key}` (expected {wanted})", file=file,
                                hint="archspec reads the last.pt / best.pt files that `archspec train` writes")
        elif key in data and not ok(data[key]):
            raise ArchspecError(f"expected {wanted}, got {_describe(data[key])}", file=file, path=prefix + key)


def check_header(ckpt: Any, file: str) -> None:
    """An archspec checkpoint of a format version this archspec reads (1..VERSION)."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ArchspecError("not an archspec checkpoint (no archspec metadata)", file=file,
                            hint="archspec reads the last.pt / best.pt files that `archspec train` writes")
    version = ckpt.get("version")
    if not _is_int(version) or version < 1:
        raise ArchspecError(f"expected a format version >= 1, got {_describe(version)}", file=file, path="version")
    if version > VERSION:
        raise ArchspecError(f"checkpoint format version {version} is newer than this archspec understands "
                            f"({VERSION})", file=file, hint="upgrade archspec to read it")


def _check_ema_shapes(ckpt: dict, file: str) -> None:
    ema = ckpt.get("ema")
    if not ema:
        return
    model = {k: list(v.shape) for k, v in ckpt["model"].items()}
    averaged = {k: list(v.shape) for k, v in ema["model"].items()}
    if averaged != model:
        raise ArchspecError("the averaged weights do not have the model's layers and shapes", file=file,
                            path="ema.model")


def _check_rows(rows: list[dict], file: str) -> None:
    for i, row in enumerate(rows):
        if not (_is_int(row.get("epoch")) and row["epoch"] >= 1):
            raise ArchspecError(f"expected an epoch number >= 1, got {_describe(row.get('epoch'))}", file=file,
                                path=f"metrics[{i}].epoch")
        for key in _ROW_NUMBERS:
            if not _optional(_is_number)(row.get(key)):
                raise ArchspecError(f"expected null or a number, got {_describe(row[key])}", file=file,
                                    path=f"metrics[{i}].{key}")


def check_structure(ckpt: Any, file: str, *, resume: bool = False) -> None:
    """Refuse (ArchspecError naming the field) a checkpoint whose fields are missing or of the wrong
    type: the weights-level fields always, everything an exact resume restores when `resume`."""
    check_header(ckpt, file)
    _check_fields(ckpt, WEIGHTS_FIELDS, file)
    _check_ema_shapes(ckpt, file)
    recipe = ckpt.get("recipe") or {}
    _check_fields({k: v for k, v in recipe.items() if k in RECIPE_FIELDS},
                  {k: c for k, c in RECIPE_FIELDS.items() if k in recipe}, file, prefix="recipe.")
    if not resume:
        return
    _check_fields(ckpt, RESUME_FIELDS, file)
    _check_fields(ckpt["rng"], RNG_FIELDS, file, prefix="rng.")
    _check_rows(ckpt.get("metrics") or [], file)
