"""`init: whiten`: data-dependent initialisation of the first convolution as a patch-whitening filter.

airbench94's trick (``init_whitening_conv``): take every k x k patch (k = the first conv's kernel)
of a few thousand training images, estimate the patch covariance, and set the conv's filters to
its eigenvectors divided by sqrt(eigenvalue + eps). The conv's outputs are then decorrelated,
unit-variance features of the input, which the rest of the network learns from much faster than
from raw pixels. With ``2 * C*k*k`` filters (airbench: 24 = 2 * 3*2*2) the second half are the
negated filters, so a following GELU/ReLU keeps both signs of each component; with fewer filters
the components of largest variance are kept.

Eigenvalues come from `torch.linalg.eigh` in float64 for stability; the weights are then cast to
the conv's dtype. No random numbers are drawn, so exact resume is unaffected. The set-up phase
(archspec.train.setup) takes the images from the training loader's `raw_images` (un-augmented,
as stored) and calls `whiten_first_conv` before the first step.
"""

from __future__ import annotations

import torch
from torch import nn

from archspec.data.normalize import normalize
from archspec.errors import ArchspecError


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first `nn.Conv2d` in module order (the spec's first conv layer)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ArchspecError("init: whiten needs a conv layer, and the model has none")


def patch_whitening_filters(images: torch.Tensor, kernel: tuple[int, int], eps: float) -> torch.Tensor:
    """[C*kh*kw, C, kh, kw] whitening filters, largest-variance component first, from float `images`
    [N, C, H, W] (already normalised as the model sees them)."""
    n, c, h, w = images.shape
    kh, kw = kernel
    if h < kh or w < kw:
        raise ArchspecError(f"images of {h}x{w} are smaller than the {kh}x{kw} kernel to whiten")
    patches = images.double().unfold(2, kh, 1).unfold(3, kw, 1)  # [N, C, H', W', kh, kw]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kh * kw)
    covariance = patches.T @ patches / patches.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp(min=0) + eps)[:, None]
    return filters.reshape(c * kh * kw, c, kh, kw)


@torch.no_grad()
def whiten_first_conv(model: nn.Module, images: torch.Tensor, eps: float = 5.0e-4, *,
                      freeze: bool = True, mean: torch.Tensor | None = None,
                      std: torch.Tensor | None = None) -> nn.Conv2d:
    """Set the first conv's weights to patch-whitening filters computed from `images`; return the conv.

    `images` [N, C, H, W] are uint8 (0..255; normalised here with `mean`/`std` [C, 1, 1] when
    given, else only scaled to 0..1) or float (taken as already normalised). The conv needs groups
    and dilation 1 (any stride or padding), and ``2*C*k*k`` output channels (filters and their
    negatives, as airbench) or at most ``C*k*k``. Its bias, if any, is set to 0. `freeze` stops
    gradients to the weight (not the bias), as airbench does.
    """
    conv = first_conv(model)
    if conv.groups != 1 or conv.dilation != (1, 1):
        raise ArchspecError("init: whiten needs the first conv to have groups 1 and dilation 1")
    if images.ndim != 4 or images.shape[1] != conv.in_channels:
        raise ArchspecError(f"init: whiten got images of shape {list(images.shape)}, but the first conv "
                            f"takes {conv.in_channels} channels")
    x = images.to(conv.weight.device)
    if x.dtype == torch.uint8:
        x = normalize(x, mean, std)
    filters = patch_whitening_filters(x.float(), conv.kernel_size, eps)
    dims, out = filters.shape[0], conv.out_channels
    if out == 2 * dims:
        weight = torch.cat((filters, -filters))
    elif out <= dims:
        weight = filters[:out]
    else:
        raise ArchspecError(f"init: whiten needs the first conv to have {2 * dims} output channels (whitening "
                            f"filters and their negatives) or at most {dims}; it has {out}",
                            hint=f"e.g. conv: {{out: {2 * dims}, kernel: {conv.kernel_size[0]}, padding: 0}}")
    conv.weight.copy_(weight.to(conv.weight.dtype))
    if conv.bias is not None:
        conv.bias.zero_()
    if freeze:
        conv.weight.requires_grad_(False)
    return conv
