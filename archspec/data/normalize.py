"""The one definition of input normalisation: what every image goes through before the model.

Training batches (both loader paths), the batched augmentation pipeline and the whitening
initialisation must agree exactly: the whitening filters are computed from images normalised as
the model will see them, and a resumed or re-evaluated run must feed the model the same numbers.
So all of them call `normalize` rather than writing `x / 255 - mean` themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Stats = torch.Tensor | Sequence[float] | None


def _per_channel(values: Stats, like: torch.Tensor) -> torch.Tensor | None:
    """`values` (C numbers in any shape: [C], [C, 1, 1], [1, C, 1, 1], or a list) as a [C, 1, 1]
    tensor on `like`'s device and dtype, broadcasting over [..., C, H, W]; no copy when it already is."""
    if values is None:
        return None
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).reshape(-1, 1, 1)


def normalize(x: torch.Tensor, mean: Stats = None, std: Stats = None) -> torch.Tensor:
    """Images [..., C, H, W] -> float32 (x - mean) / std, per channel.

    uint8 images (0..255) are scaled to 0..1 first; floating-point images are taken as 0..1
    already. `mean` and `std` are C values each (None: no shift, no scaling). The result is always
    a new tensor: `x` is never modified, even when it is float32 already (a caller's batch, or the
    dataset itself on the device path)."""
    # Exactly one new float32 tensor either way; the arithmetic after it is in place on that copy.
    out = x.to(torch.float32).div_(255) if x.dtype == torch.uint8 else x.to(torch.float32, copy=True)
    mean_t, std_t = _per_channel(mean, out), _per_channel(std, out)
    if mean_t is not None:
        out.sub_(mean_t)
    if std_t is not None:
        out.div_(std_t)
    return out
