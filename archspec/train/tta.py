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


def _mirror(model, x: torch.Tensor) -> torch.Tensor:
    return 0.5 * model(x) + 0.5 * model(x.flip(-1))


def tta_logits(model, x: torch.Tensor, mode: str = "none") -> torch.Tensor:
    """The model's logits for the batch `x` [B, C, H, W], averaged over the views of `mode`."""
    if mode == "none":
        return model(x)
    if mode not in TTA_MODES:
        raise ArchspecError(f'unknown tta "{mode}"; choose one of {", ".join(TTA_MODES)}', path="tta")
    if x.ndim != 4:
        raise ArchspecError(f"tta {mode} needs image batches [B, C, H, W], got shape {list(x.shape)}", path="tta")
    logits = _mirror(model, x)
    if mode == "flip":
        return logits
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    up_left = padded[:, :, 0:h, 0:w]
    down_right = padded[:, :, 2:h + 2, 2:w + 2]
    shifted = 0.5 * _mirror(model, up_left) + 0.5 * _mirror(model, down_right)
    return 0.5 * logits + 0.5 * shifted
