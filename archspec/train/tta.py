"""Test-time augmentation (recipe key `tta`): average the logits of a few views of each image.

`flip` averages the image and its mirror image. `flip_translate` is airbench94's ``tta_level=2``:
half the weight on (image + mirror), half on the mean of (image + mirror) shifted one pixel
up-left and one pixel down-right (reflect padding), i.e. six views. Only horizontal flips and
shifts: they keep the label of natural images (not of digits: do not use `flip` on MNIST).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from archspec.errors import ArchspecError

TTA_MODES = ("none", "flip", "flip_translate")


# The views of each mode as (weight, shift): a shift of d takes the window of the image padded by
# one pixel (reflect) whose top-left corner is at (1 + d, 1 + d), so -1 and +1 are the two
# diagonal one-pixel shifts. Every view is averaged with its mirror image.
_VIEWS = {"flip": ((1.0, 0),), "flip_translate": ((0.5, 0), (0.25, -1), (0.25, 1))}


def _view_pair(model, x: torch.Tensor) -> torch.Tensor:
    """The mean logits of `x` and of its left-right mirror image."""
    return (model(x) + model(x.flip(-1))) / 2


def tta_logits(model, x: torch.Tensor, mode: str = "none") -> torch.Tensor:
    """The model's logits for the batch `x` [B, C, H, W], averaged over the views of `mode`."""
    if mode == "none":
        return model(x)
    if mode not in TTA_MODES:
        raise ArchspecError(f'unknown tta "{mode}"; choose one of {", ".join(TTA_MODES)}', path="tta")
    if x.ndim != 4:
        raise ArchspecError(f"tta {mode} needs image batches [B, C, H, W], got shape {list(x.shape)}", path="tta")
    h, w = x.shape[-2:]
    padded = None
    total = None
    for weight, shift in _VIEWS[mode]:
        view = x
        if shift:
            padded = F.pad(x, (1, 1, 1, 1), mode="reflect") if padded is None else padded
            view = padded[:, :, 1 + shift:1 + shift + h, 1 + shift:1 + shift + w]
        term = weight * _view_pair(model, view)
        total = term if total is None else total + term
    return total
