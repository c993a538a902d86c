"""The few nn.Modules that PyTorch lacks: residual blocks, parallel paths, gated merges.

Kept dependency-free (torch only) and self-contained: `archspec show --code` copies this file's
classes verbatim into the plain-PyTorch code it prints, so a user can paste it without archspec.
"""

from __future__ import annotations

import torch
from torch import nn

# What `archspec show --code` may copy into generated code (each kind's `code()` calls these by name).
__all__ = ["Residual", "ResBlock", "Parallel", "Scale", "dirac_init"]


class Residual(nn.Module):
    """out = body(x) + shortcut(x); the shortcut is identity or a projection."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class ResBlock(nn.Module):
    """A basic residual block: (conv3x3-bn-relu-)conv3x3-bn + shortcut, then ReLU.

    `convs=2` is torchvision's BasicBlock; `convs=1` is the single-conv block of the coursework's
    variant 3. The shortcut is a 1x1 conv + bn when channels or stride change.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, convs: int = 2, bias: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        c = cin
        for i in range(convs):
            layers.append(nn.Conv2d(c, cout, 3, stride=stride if i == 0 else 1, padding=1, bias=bias))
            layers.append(nn.BatchNorm2d(cout))
            if i < convs - 1:
                layers.append(nn.ReLU(inplace=True))
            c = cout
        self.body = nn.Sequential(*layers)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=bias), nn.BatchNorm2d(cout))
        else:
            self.shortcut = nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


class Parallel(nn.Module):
    """Run every path on the same input and merge: sum, mean, concat (channels) or gated.

    `gated` learns per-sample path weights from the input: global average pool, linear, softmax
    (the adaptive Block of the coursework report by Ngoc Bach Nguyen).
    """

    def __init__(self, paths: list[nn.Module], merge: str = "sum", in_channels: int | None = None):
        super().__init__()
        self.paths = nn.ModuleList(paths)
        self.merge = merge
        if merge == "gated":
            self.gate = nn.Linear(in_channels, len(paths))

    def forward(self, x):
        outs = [p(x) for p in self.paths]
        if self.merge == "concat":
            return torch.cat(outs, dim=1)
        stacked = torch.stack(outs, dim=1)  # [B, P, ...]
        if self.merge == "sum":
            return stacked.sum(dim=1)
        if self.merge == "mean":
            return stacked.mean(dim=1)
        pooled = x.mean(dim=(2, 3)) if x.dim() == 4 else x
        weights = torch.softmax(self.gate(pooled), dim=1)
        weights = weights.view(*weights.shape, *([1] * (stacked.dim() - 2)))
        return (stacked * weights).sum(dim=1)


class Scale(nn.Module):
    """out = x * factor, a fixed (not learned) multiplier: airbench scales its logits by 1/9."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = float(factor)

    def forward(self, x):
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


def dirac_init(conv: nn.Conv2d) -> nn.Conv2d:
    """Set the first min(in, out) filters of `conv` to the identity (each passes one input channel
    through unchanged), keeping the default init for the rest: a deep conv stack then starts close
    to the identity map, which airbench94 found trains faster. Returns `conv`."""
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: conv.weight.shape[1]])
    return conv
