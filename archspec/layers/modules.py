"""The few nn.Modules that PyTorch lacks: residual blocks, parallel paths, gated merges.

Kept dependency-free (torch only) and self-contained: `archspec show --code` copies this file's
classes verbatim into the plain-PyTorch code it prints, so a user can paste it without archspec.
"""

from __future__ import annotations

import torch
from torch import nn

# What `archspec show --code` may copy into generated code (each kind's `code()` calls these by name).
__all__ = ["Residual", "ResBlock", "Parallel", "Scale", "dirac_init", "LayerNorm2d", "LayerScale", "Chunk", "Patchify",
           "ClassToken", "PositionEmbedding", "TokenPool", "SelfAttention", "EncoderBlock", "WindowAttention",
           "PatchMerging"]


class Residual(nn.Module):
    """out = body(x) + shortcut(x); the shortcut is identity, a projection or any module.

    `add=False` keeps only the body: a block written once as a residual that, where it changes the
    shape, has no shortcut at all (MobileNet's inverted residual, `shortcut: if_same`).
    """

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None, add: bool = True):
        super().__init__()
        self.body = body
        self.add = add
        if add:
            self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x):
        return self.body(x) + self.shortcut(x) if self.add else self.body(x)

    def extra_repr(self) -> str:
        return "" if self.add else "add=False"


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
    """Run every path on the same input and merge: sum, mean, concat (channels), mul or gated.

    `mul` multiplies the paths with broadcasting: [C, H, W] x [C, 1, 1] is squeeze-excitation.

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
        if self.merge == "mul":
            out = outs[0]
            for o in outs[1:]:
                out = out * o
            return out
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


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an image [B, C, H, W] at every pixel (ConvNeXt's norm).

    nn.LayerNorm normalises the last dimensions, so the channels are moved last and back. A
    subclass of nn.LayerNorm so its state_dict (weight, bias) is exactly a LayerNorm's.
    """

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LayerScale(nn.Module):
    """x * gamma with a learnable per-channel gamma that starts small (CaiT, ConvNeXt: 1e-6), so a
    deep residual stack starts close to the identity."""

    def __init__(self, shape: tuple[int, ...], init: float):
        super().__init__()
        self.scale = nn.Parameter(torch.full(shape, float(init)))

    def forward(self, x):
        return x * self.scale


class Chunk(nn.Module):
    """The `index`-th of `chunks` equal slices of dimension 1 (channels): ShuffleNetV2's split."""

    def __init__(self, chunks: int, index: int):
        super().__init__()
        self.chunks, self.index = chunks, index

    def forward(self, x):
        return x.chunk(self.chunks, dim=1)[self.index]

    def extra_repr(self) -> str:
        return f"chunks={self.chunks}, index={self.index}"


class Patchify(nn.Conv2d):
    """Image [B, C, H, W] -> tokens [B, N, D]: a conv with kernel = stride = patch, then the
    (H/p) x (W/p) grid is read row by row as N tokens of width D (ViT's patch embedding)."""

    def forward(self, x):
        return super().forward(x).flatten(2).transpose(1, 2)


class ClassToken(nn.Module):
    """Prepend one learnable token (zeros at init, as in ViT) to every sequence: [B, N, D] -> [B, N+1, D]."""

    def __init__(self, dim: int):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x):
        return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)


class PositionEmbedding(nn.Module):
    """Add a learnable embedding per token position: [B, N, D] + [1, N, D] (ViT: normal, std 0.02)."""

    def __init__(self, tokens: int, dim: int, std: float = 0.02):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(1, tokens, dim).normal_(std=std))

    def forward(self, x):
        return x + self.embedding


class TokenPool(nn.Module):
    """Tokens [B, N, D] -> [B, D]: the first (class) token, or the mean over tokens."""

    def __init__(self, mode: str = "cls"):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        return x[:, 0] if self.mode == "cls" else x.mean(dim=1)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class SelfAttention(nn.MultiheadAttention):
    """Multi-head self-attention on tokens [B, N, D]: nn.MultiheadAttention with query = key = value.

    A subclass, so the parameters (in_proj_weight, out_proj, ...) are named as torch names them and
    torch's own kernels (scaled dot-product attention) do the work.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__(dim, heads, dropout=dropout, bias=bias, batch_first=True)

    def forward(self, x):
        return super().forward(x, x, x, need_weights=False)[0]


class EncoderBlock(nn.Module):
    """A pre-norm transformer encoder block (ViT):
    x = x + dropout(attention(ln_1(x))); x = x + mlp(ln_2(x)), mlp = linear, GELU, dropout, linear, dropout.
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0,
                 attention_dropout: float = 0.0, eps: float = 1e-6):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=eps)
        self.self_attention = SelfAttention(dim, heads, dropout=attention_dropout)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(dropout))

    def forward(self, x):
        x = x + self.dropout(self.self_attention(self.ln_1(x)))
        return x + self.mlp(self.ln_2(x))


class WindowAttention(nn.Module):
    """Swin's (shifted) window attention on an image [B, C, H, W].

    The map is padded to whole windows, optionally rolled by `shift` pixels (so windows straddle
    the previous block's window borders), cut into `window` x `window` windows, and each window
    attends within itself with a learned bias per relative position and head. Pixels that the
    roll brought together from opposite edges are kept apart by a -100 mask. Where the window
    covers the whole (padded) map in a direction, there is nothing to shift in that direction.
    """

    def __init__(self, dim: int, heads: int, window: int = 7, shift: int = 0, attention_dropout: float = 0.0,
                 dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.heads, self.window, self.shift = heads, window, shift
        self.attention_dropout, self.dropout = attention_dropout, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.normal_(self.relative_position_bias_table, std=0.02)  # (truncated at +-2 in Swin: never reached)
        # for each (query, key) pair of a window: which row of the table holds their bias
        ys, xs = torch.arange(window * window).div(window, rounding_mode="floor"), torch.arange(window * window) % window
        dy = ys[:, None] - ys[None, :] + window - 1
        dx = xs[:, None] - xs[None, :] + window - 1
        self.register_buffer("relative_position_index", (dy * (2 * window - 1) + dx).flatten())

    def _regions(self, size: int, shift: int) -> torch.Tensor:
        """Label each row (or column) of the rolled map by the strip of the unrolled map it came from."""
        labels = torch.zeros(size, dtype=torch.long, device=self.relative_position_index.device)
        if shift:
            labels[size - self.window:] = 1
            labels[size - shift:] = 2
        return labels

    def _mask(self, hp: int, wp: int, sh: int, sw: int) -> torch.Tensor:
        """[windows, N, N]: 0 between pixels of the same strip pair, -100 between the others."""
        w = self.window
        region = self._regions(hp, sh)[:, None] * 3 + self._regions(wp, sw)[None, :]
        region = region.view(hp // w, w, wp // w, w).transpose(1, 2).reshape(-1, w * w)
        return (region[:, :, None] != region[:, None, :]).float() * -100.0

    def forward(self, x):
        b, c, h, w_ = x.shape
        w, heads = self.window, self.heads
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.pad(x, (0, 0, 0, (w - w_ % w) % w, 0, (w - h % w) % w))
        hp, wp = x.shape[1], x.shape[2]
        sh, sw = (self.shift if w < hp else 0), (self.shift if w < wp else 0)
        if sh or sw:
            x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
        n = (hp // w) * (wp // w)  # windows per image
        windows = x.reshape(b, hp // w, w, wp // w, w, c).transpose(2, 3).reshape(b, n, w * w, c)
        q, k, v = self.qkv(windows).reshape(b, n, w * w, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5)
        bias = self.relative_position_bias_table[self.relative_position_index]
        mask = bias.view(w * w, w * w, heads).permute(2, 0, 1)  # [heads, N, N]
        if sh or sw:
            mask = mask + self._mask(hp, wp, sh, sw)[:, None]  # [windows, heads, N, N]
        out = nn.functional.scaled_dot_product_attention(  # q, k, v: [b, windows, heads, N, c / heads]
            q, k, v, attn_mask=mask.to(q.dtype), dropout_p=self.attention_dropout if self.training else 0.0)
        out = self.proj(out.transpose(2, 3).reshape(b, n, w * w, c))
        out = nn.functional.dropout(out, self.dropout, self.training)
        out = out.reshape(b, hp // w, wp // w, w, w, c).transpose(2, 3).reshape(b, hp, wp, c)
        if sh or sw:
            out = torch.roll(out, shifts=(sh, sw), dims=(1, 2))
        return out[:, :h, :w_].permute(0, 3, 1, 2)


class PatchMerging(nn.Module):
    """Swin's downsampling, [B, C, H, W] -> [B, 2C, H/2, W/2]: the four pixels of each 2x2 cell
    (offsets (0,0), (1,0), (0,1), (1,1), as Swin orders them) side by side as 4C channels, a
    LayerNorm over them, and a linear map to 2C. Odd sizes are padded by one."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=eps)

    def forward(self, x):
        x = nn.functional.pad(x, (0, x.shape[3] % 2, 0, x.shape[2] % 2))
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], dim=1)
        return self.reduction(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
