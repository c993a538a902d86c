"""Batched, device-side augmentation: the random transforms of the per-sample torchvision path
(`archspec.data.augment`), applied to a whole batch at once with per-sample randomness.

Why: the per-sample path (a DataLoader whose workers run v2 transforms image by image) spends its time
in Python and tiny tensor ops, so small-image training is bound by the CPU. The fast path keeps the
whole uint8 dataset on the device and augments each batch *there*: every op below is a handful of
batched tensor ops (index gathers, one `grid_sample`, masks), with no Python loop over samples.

Conventions shared by every op:

- `x` is [B, C, H, W], uint8 (0..255) or floating point (0..1 before normalisation; after
  normalisation any range), on any device. The result has the same dtype and device.
- Randomness comes from an explicit `generator`. It may live on `x`'s device (fastest) or on the CPU
  (the random numbers are then drawn there and moved); `None` means torch's default generator for
  `x`'s device. The same generator state gives the same output.
- Parameter distributions follow torchvision.transforms.v2 (read from its source): crop offsets are
  uniform integers over every position of the padded image; `RandomAffine` translations are
  `round(U(-f*W, f*W))` whole pixels; angles, scales, shears and colour factors are uniform over their
  ranges; erasing draws area and log-aspect-ratio uniformly, retrying up to 10 times, and skips the
  sample if none fits. uint8 results are rounded (geometry) or truncated (colour) exactly where v2
  does it, so for the same parameters the pixels agree with v2 (up to float rounding in a few pixels).

Documented differences from the per-sample path:

- The random numbers come from a different stream, so a given seed does not give the same images as
  v2; only the distributions agree.
- `RandomResizedCrop` does not antialias. Its crop is never larger than the image, so resizing back to
  the image size never shrinks and antialiasing would not change anything; `random_resized_crop` to a
  smaller size aliases (from_spec only maps crops back to the input size).
- torchvision rotates by exact multiples of 90 degrees with `rot90`; here it is always the affine grid,
  which gives the same pixels up to float rounding.

`BatchAugment.from_spec` reads the recipe's `augment:` value through the same parser as the
per-sample path and maps each v2 transform onto a batched op, or returns None when a step has no
batched equivalent so the caller can fall back to the DataLoader path.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from archspec.data.normalize import normalize

Tensor = torch.Tensor
Fill = float | Sequence[float] | None

PAD_MODES = ("constant", "edge", "reflect", "symmetric")
INTERPOLATIONS = ("nearest", "bilinear")


# --- random numbers -------------------------------------------------------------------------------


def _rand(generator: torch.Generator | None, shape: Sequence[int], device: torch.device) -> Tensor:
    """Uniform [0, 1) float32 numbers on `device`, drawn from `generator` on the generator's own device."""
    if generator is None:
        return torch.rand(tuple(shape), device=device)
    u = torch.rand(tuple(shape), generator=generator, device=generator.device)
    return u.to(device, non_blocking=True)


def _uniform(generator, shape, device, low: float, high: float) -> Tensor:
    """U(low, high) as v2's `torch.empty(1).uniform_(low, high)` draws it, per element."""
    return _rand(generator, shape, device).mul_(high - low).add_(low)


def _randint_below(generator, bound: Tensor | int, shape, device) -> Tensor:
    """Integers uniform on 0..bound-1 (like `torch.randint(0, bound)`); `bound` may be per sample."""
    drawn = (_rand(generator, shape, device) * bound).floor_().long()
    # u * bound can round up to bound in float32.
    return drawn.clamp_(max=bound - 1) if isinstance(bound, int) else torch.minimum(drawn, bound.long() - 1)


def _check_batch(x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected a batch [B, C, H, W], got shape {tuple(x.shape)}")


# --- shared helpers -------------------------------------------------------------------------------


def _fill_tensor(fill: Fill, x: Tensor) -> Tensor:
    """A fill value broadcastable to `x` ([1, C, 1, 1] or a scalar), in `x`'s dtype."""
    if fill is None:
        fill = 0
    values = list(fill) if isinstance(fill, Sequence) else [fill]
    if len(values) not in (1, x.shape[1]):
        raise ValueError(f"fill has {len(values)} values for {x.shape[1]} channels")
    if len(values) == 1:  # a fill kernel rather than a host-to-device copy
        return torch.full((1, 1, 1, 1), values[0], dtype=x.dtype, device=x.device)
    return torch.tensor(values, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)


def _source_positions(index: Tensor, size: int, pad_mode: str) -> tuple[Tensor, Tensor | None]:
    """Map source positions that may lie in the padding back into 0..size-1 the way `pad_mode` pads;
    for "constant" also return which positions were inside the image (the others get the fill)."""
    if pad_mode == "constant":
        return index.clamp(0, size - 1), (index >= 0) & (index < size)
    if pad_mode == "edge":
        return index.clamp(0, size - 1), None
    if pad_mode == "reflect":  # ... 2 1 | 0 1 2 3 | 2 1 ...: period 2(size-1), edge not repeated
        if size == 1:
            return torch.zeros_like(index), None
        period = 2 * (size - 1)
        index = index.remainder(period)
        return torch.where(index >= size, period - index, index), None
    if pad_mode == "symmetric":  # ... 1 0 | 0 1 2 3 | 3 2 ...: period 2*size, edge repeated
        period = 2 * size
        index = index.remainder(period)
        return torch.where(index >= size, period - 1 - index, index), None
    raise ValueError(f"pad_mode must be one of {', '.join(PAD_MODES)}, got {pad_mode!r}")


def _gather_window(x: Tensor, rows: Tensor, cols: Tensor, pad_mode: str = "constant", fill: Fill = 0,
                   margin: tuple[int, int, int, int] = (0, 0, 0, 0)) -> Tensor:
    """out[b, :, i, j] = x[b, :, rows[b, i], cols[b, j]], with positions outside the image padded as
    `pad_mode` pads: integer crops and shifts as one gather over the flattened image, no grid.

    For "constant" with one fill value, the image is first padded by `margin` (left, top, right,
    bottom), which the caller guarantees covers every position it asks for; that is cheaper than
    masking the fill in afterwards. Other modes map each position back into the image."""
    b, c, h, w = x.shape
    out_h, out_w = rows.shape[1], cols.shape[1]
    single_fill = fill is None or not isinstance(fill, Sequence) or len(fill) == 1
    if pad_mode == "constant" and single_fill:
        left, top, right, bottom = margin
        value = 0.0 if fill is None else float(fill[0] if isinstance(fill, Sequence) else fill)
        x = F.pad(x, (left, right, top, bottom), value=value) if any(margin) else x
        rows, cols, w = rows + top, cols + left, w + left + right
        inside = None
    else:
        rows, rows_inside = _source_positions(rows, h, pad_mode)
        cols, cols_inside = _source_positions(cols, w, pad_mode)
        inside = None if rows_inside is None else rows_inside[:, None, :, None] & cols_inside[:, None, None, :]
    index = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, out_h * out_w).expand(b, c, -1)
    out = x.flatten(2).gather(2, index).view(b, c, out_h, out_w)
    return out if inside is None else torch.where(inside, out, _fill_tensor(fill, out))


def _pair(value: float | Sequence[float], name: str) -> tuple[float, float]:
    if isinstance(value, Sequence):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a pair, got {value!r}")
        return float(value[0]), float(value[1])
    return float(value), float(value)


def _symmetric_range(value: float | Sequence[float], name: str) -> tuple[float, float]:
    """v2's reading of `degrees`: a number d means (-d, d), a pair is (min, max)."""
    if isinstance(value, Sequence):
        return _pair(value, name)
    if value < 0:
        raise ValueError(f"{name} must be non-negative when a single number, got {value}")
    return -float(value), float(value)


# --- geometric ops --------------------------------------------------------------------------------


def _parse_padding(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    """v2's padding forms -> (left, top, right, bottom): p, (left/right, top/bottom), (l, t, r, b)."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    values = [int(p) for p in padding]
    if len(values) == 1:
        return values[0], values[0], values[0], values[0]
    if len(values) == 2:
        return values[0], values[1], values[0], values[1]
    if len(values) == 4:
        return values[0], values[1], values[2], values[3]
    raise ValueError(f"padding must be an int or 1, 2 or 4 ints, got {padding!r}")


def random_crop(x: Tensor, padding: int | Sequence[int] = 0, pad_mode: str = "constant", *,
                size: Sequence[int] | None = None, fill: Fill = 0,
                generator: torch.Generator | None = None) -> Tensor:
    """v2.RandomCrop: pad (left, top, right, bottom as in v2), then cut `size` (default H x W) at a
    per-sample offset uniform over every position of the padded image. One gather reads every sample's
    window: from the zero/fill-padded batch for "constant", else straight from the image with padded
    positions mapped back into it ("edge", "reflect", "symmetric")."""
    _check_batch(x)
    b, _, h, w = x.shape
    out_h, out_w = (h, w) if size is None else (int(size[0]), int(size[1]))
    left, top, right, bottom = _parse_padding(padding)
    padded_h, padded_w = h + top + bottom, w + left + right
    if padded_h < out_h or padded_w < out_w:
        raise ValueError(f"crop size {(out_h, out_w)} is larger than the padded image {(padded_h, padded_w)}")
    offset_y = _randint_below(generator, padded_h - out_h + 1, (b,), x.device)
    offset_x = _randint_below(generator, padded_w - out_w + 1, (b,), x.device)
    rows = (offset_y - top)[:, None] + torch.arange(out_h, device=x.device)
    cols = (offset_x - left)[:, None] + torch.arange(out_w, device=x.device)
    return _gather_window(x, rows, cols, pad_mode, fill, margin=(left, top, right, bottom))


def random_translate(x: Tensor, max_frac: float | Sequence[float], *, fill: Fill = 0,
                     generator: torch.Generator | None = None) -> Tensor:
    """Whole-pixel shifts as v2.RandomAffine(degrees=0, translate=(fx, fy)) draws them:
    dx = round(U(-fx*W, fx*W)), dy = round(U(-fy*H, fy*H)); uncovered pixels get `fill`. Done with a
    gather, which gives exactly v2's pixels (its affine grid lands on pixel centres for whole shifts)."""
    _check_batch(x)
    b, _, h, w = x.shape
    fx, fy = _pair(max_frac, "max_frac")
    dx = _uniform(generator, (b,), x.device, -fx * w, fx * w).round_().long()
    dy = _uniform(generator, (b,), x.device, -fy * h, fy * h).round_().long()
    rows = torch.arange(h, device=x.device) - dy[:, None]
    cols = torch.arange(w, device=x.device) - dx[:, None]
    # |shift| <= round(f * size) <= ceil(f * size); beyond the image the gather reads clamped-off fill.
    my, mx = min(math.ceil(fy * h), h), min(math.ceil(fx * w), w)
    return _gather_window(x, rows.clamp(-my, h - 1 + my), cols.clamp(-mx, w - 1 + mx), "constant", fill,
                          margin=(mx, my, mx, my))


def _random_flip(x: Tensor, p: float, dim: int, generator) -> Tensor:
    _check_batch(x)
    flip = _rand(generator, (x.shape[0],), x.device) < p  # v2 flips unless rand >= p
    return torch.where(flip[:, None, None, None], x.flip(dim), x)


def hflip(x: Tensor, p: float = 0.5, *, generator: torch.Generator | None = None) -> Tensor:
    """v2.RandomHorizontalFlip(p): each sample mirrored left-right with probability p."""
    return _random_flip(x, p, -1, generator)


def vflip(x: Tensor, p: float = 0.5, *, generator: torch.Generator | None = None) -> Tensor:
    """v2.RandomVerticalFlip(p): each sample mirrored top-bottom with probability p."""
    return _random_flip(x, p, -2, generator)


def _index_bit(indices: Tensor, seed: int) -> Tensor:
    """A fixed pseudo-random bit per (dataset index, seed): a 32-bit integer hash (two rounds of
    xor-shift-multiply), computed on the device; every product stays below 2**63, so no overflow."""
    mask = 0xFFFFFFFF
    h = (indices.long() & mask) ^ ((int(seed) * 0x9E3779B1) & mask)
    for _ in range(2):
        h = (((h >> 16) ^ h) * 0x45D9F3B) & mask
    h = (h >> 16) ^ h
    return (h >> 7) & 1


def _alternating_mask(indices: Tensor, epoch: int, seed: int) -> Tensor:
    """Which of `indices` the alternating flip mirrors in `epoch` (bool, on `indices`' device): the
    single definition both the batched and the per-sample path use."""
    return (_index_bit(indices, seed) == 1) ^ (int(epoch) % 2 == 1)


def alternating_flip(x: Tensor, indices: Tensor, epoch: int, *, seed: int = 0) -> Tensor:
    """airbench's flip: a fixed pseudo-random half of the dataset (chosen by hashing each sample's
    dataset index with `seed`) is mirrored on even epochs and the other half on odd epochs, so over any
    two consecutive epochs every image is seen once each way (random flips repeat or miss views).
    `indices` are the samples' dataset indices ([B] integers)."""
    _check_batch(x)
    if indices.shape != (x.shape[0],):
        raise ValueError(f"indices must have shape ({x.shape[0]},), got {tuple(indices.shape)}")
    flip = _alternating_mask(indices.to(x.device), epoch, seed)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def alternating_flips(index: int, epoch: int, *, seed: int = 0) -> bool:
    """Whether `alternating_flip` mirrors dataset sample `index` in `epoch` (one sample, on the CPU;
    the per-sample `AlternatingHorizontalFlip` transform asks this, so both paths agree exactly)."""
    return bool(_alternating_mask(torch.tensor([int(index)]), epoch, seed)[0])


def _rotation(radians: Tensor) -> Tensor:
    """[B, 2, 2] rotation matrices [[cos, -sin], [sin, cos]] (y down, so positive turns clockwise on screen)."""
    cos, sin = torch.cos(radians), torch.sin(radians)
    return torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)


def _shear(tan: Tensor, axis: int) -> Tensor:
    """[B, 2, 2] shears moving x by -tan * y (axis 0) or y by -tan * x (axis 1)."""
    eye = torch.eye(2, dtype=tan.dtype, device=tan.device).repeat(tan.shape[0], 1, 1)
    eye[:, axis, 1 - axis] = -tan
    return eye


def _sampling_theta(angle: Tensor, translate: Tensor | None, scale: Tensor | None, shear: Tensor | None,
                    center: Sequence[float] | None, height: int, width: int) -> Tensor:
    """The [B, 2, 3] matrices F.affine_grid needs to sample what v2.functional.affine draws.

    The geometry. Measure pixel positions from the transform's centre c (the image centre, or
    `center`) with y pointing down. v2's affine moves the content at p to

        q = c + t + s * R(a) @ Sy(b) @ Sx(e) @ (p - c)

    with R(a) the rotation above, Sx(e) = [[1, -tan e], [0, 1]] and Sy(b) = [[1, 0], [-tan b, 1]]
    the x and y shears, s the scale and t the translation. Drawing the output means asking, for
    every output pixel q, which input position p lands there. Each factor undoes trivially - a
    rotation by -a, a shear with +tan, a scale 1/s - so the inverse is their product in reverse:

        p = c + (1/s) * Sx(-e) @ Sy(-b) @ R(-a) @ (q - c - t)

    (no general 2x2 inverse needed). Written as p = L @ q + k in centre-relative coordinates,
    F.affine_grid's normalised coordinates (align_corners=False, pixel centres at 2 * x / W for x
    measured from the image centre) rescale L's off-diagonal terms by the aspect ratio and k by 2/W
    and 2/H. Entries are computed in float64 where the device has it, as v2 does in Python floats.
    """
    b, device = angle.shape[0], angle.device
    wide = torch.float64 if device.type in ("cpu", "cuda") else torch.float32
    zeros = torch.zeros(b, 2, dtype=wide, device=device)
    shift = zeros if translate is None else translate.to(wide)
    tan = zeros if shear is None else torch.tan(torch.deg2rad(shear.to(wide)))
    inverse = _shear(-tan[:, 0], 0) @ _shear(-tan[:, 1], 1) @ _rotation(-torch.deg2rad(angle.to(wide)))
    if scale is not None:
        inverse = inverse / scale.to(wide).view(b, 1, 1)
    # c relative to the image centre; k = c - inverse @ (c + t) in image-centred coordinates.
    c = torch.tensor([0.0, 0.0] if center is None else [center[0] - width * 0.5, center[1] - height * 0.5],
                     dtype=wide, device=device)
    offset = c - (inverse @ (c + shift).unsqueeze(-1)).squeeze(-1)
    size = torch.tensor([width, height], dtype=wide, device=device)
    linear = inverse * size.view(1, 1, 2) / size.view(1, 2, 1)  # L[i, j] * size[j] / size[i]
    return torch.cat([linear, (2 * offset / size).unsqueeze(-1)], 2)


def affine_batch(x: Tensor, angle: Tensor, translate: Tensor | None = None, scale: Tensor | None = None,
                 shear: Tensor | None = None, *, interpolation: str = "nearest", fill: Fill = 0,
                 center: Sequence[float] | None = None) -> Tensor:
    """`torchvision.transforms.v2.functional.affine` with per-sample parameters: `angle` [B] degrees,
    `translate` [B, 2] pixels (tx, ty), `scale` [B], `shear` [B, 2] degrees (x, y). The sampling grid
    comes from `_sampling_theta` (the inverse map, derived there) through F.affine_grid and is read
    with F.grid_sample. Like v2, a non-None `fill` is applied through a sampled mask channel (so
    bilinear edges blend towards the fill)."""
    _check_batch(x)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    b, c, h, w = x.shape
    device = x.device
    theta = _sampling_theta(angle, translate, scale, shear, center, h, w)
    dtype = x.dtype if x.is_floating_point() else torch.float32
    grid = F.affine_grid(theta.to(dtype), [b, c, h, w], align_corners=False)
    img = x if x.is_floating_point() else x.to(dtype)
    fill_values = None if fill is None else _fill_tensor(fill, img)
    # With nearest sampling and a zero fill, zero padding is already the fill; skip the mask channel.
    zero_fill = fill is not None and all(v == 0 for v in (fill if isinstance(fill, Sequence) else [fill]))
    use_mask = fill_values is not None and not (interpolation == "nearest" and zero_fill)
    if use_mask:
        img = torch.cat([img, torch.ones(b, 1, h, w, dtype=dtype, device=device)], 1)
    out = F.grid_sample(img, grid, mode=interpolation, padding_mode="zeros", align_corners=False)
    if use_mask:
        out, mask = out[:, :c], out[:, c:]
        if interpolation == "nearest":
            out = torch.where(mask < 0.5, fill_values, out)
        else:
            out = (out - fill_values).mul_(mask).add_(fill_values)
    return out if x.is_floating_point() else out.round_().to(x.dtype)


def random_rotation(x: Tensor, degrees: float | Sequence[float], *, interpolation: str = "nearest",
                    fill: Fill = 0, center: Sequence[float] | None = None,
                    generator: torch.Generator | None = None) -> Tensor:
    """v2.RandomRotation: angle ~ U(degrees) per sample, counter-clockwise for positive angles
    (F.rotate passes -angle to the affine matrix; so does this)."""
    _check_batch(x)
    low, high = _symmetric_range(degrees, "degrees")
    angle = _uniform(generator, (x.shape[0],), x.device, low, high)
    return affine_batch(x, -angle, interpolation=interpolation, fill=fill, center=center)


def random_affine(x: Tensor, degrees: float | Sequence[float], translate: Sequence[float] | None = None,
                  scale: Sequence[float] | None = None, shear: float | Sequence[float] | None = None, *,
                  interpolation: str = "nearest", fill: Fill = 0, center: Sequence[float] | None = None,
                  generator: torch.Generator | None = None) -> Tensor:
    """v2.RandomAffine with its parameter distributions: angle ~ U(degrees); translation
    round(U(-f*W, f*W)) pixels; scale ~ U(scale); shear x ~ U(shear[0:2]) (and y ~ U(shear[2:4]) when
    four values are given). A pure translation takes the exact integer-shift path of random_translate."""
    _check_batch(x)
    b, _, h, w = x.shape
    low, high = _symmetric_range(degrees, "degrees")
    shear_range = None if shear is None else (
        _symmetric_range(shear, "shear") if not isinstance(shear, Sequence) or len(shear) == 2
        else tuple(float(v) for v in shear))
    if shear_range is not None and len(shear_range) not in (2, 4):
        raise ValueError(f"shear must be a number or 2 or 4 numbers, got {shear!r}")
    no_shear = shear_range is None or all(v == 0 for v in shear_range)
    if low == high == 0 and (scale is None or tuple(scale) == (1, 1)) and no_shear:
        return random_translate(x, (0.0, 0.0) if translate is None else translate, fill=fill,
                                generator=generator)

    angle = _uniform(generator, (b,), x.device, low, high)
    shift = None
    if translate is not None:
        fx, fy = _pair(translate, "translate")
        shift = torch.stack([_uniform(generator, (b,), x.device, -fx * w, fx * w),
                             _uniform(generator, (b,), x.device, -fy * h, fy * h)], 1).round_()
    factor = None if scale is None else _uniform(generator, (b,), x.device, *_pair(scale, "scale"))
    shears = None
    if shear_range is not None:
        zeros = torch.zeros(b, device=x.device)
        shear_x = _uniform(generator, (b,), x.device, shear_range[0], shear_range[1])
        shear_y = _uniform(generator, (b,), x.device, shear_range[2], shear_range[3]) if len(shear_range) == 4 else zeros
        shears = torch.stack([shear_x, shear_y], 1)
    return affine_batch(x, angle, shift, factor, shears, interpolation=interpolation, fill=fill, center=center)


def _erase_boxes(generator, b: int, h: int, w: int, device, scale, ratio, *, erasing: bool):
    """Per-sample boxes drawn like v2's RandomErasing / RandomResizedCrop: up to 10 tries of
    area ~ U(scale) * H*W and log(aspect) ~ U(log ratio); the first try that fits wins. Returns
    (height, width, fits) as [B] tensors. Erasing wants h < H and w < W with h = sqrt(area*aspect);
    resized crops want 0 < h <= H and 0 < w <= W with h = sqrt(area/aspect)."""
    area = _uniform(generator, (b, 10), device, float(scale[0]), float(scale[1])) * (h * w)
    aspect = _uniform(generator, (b, 10), device, math.log(ratio[0]), math.log(ratio[1])).exp_()
    if erasing:
        bh, bw = (area * aspect).sqrt_().round_(), (area / aspect).sqrt_().round_()
        ok = (bh < h) & (bw < w)
    else:
        bw, bh = (area * aspect).sqrt_().round_(), (area / aspect).sqrt_().round_()
        ok = (bh > 0) & (bh <= h) & (bw > 0) & (bw <= w)
    first = ok.int().argmax(1, keepdim=True)  # the first try that fits (0 if none does)
    return bh.gather(1, first).squeeze(1).long(), bw.gather(1, first).squeeze(1).long(), ok.any(1)


def random_erasing(x: Tensor, p: float = 0.5, scale: Sequence[float] = (0.02, 0.33),
                   ratio: Sequence[float] = (0.3, 3.3), value: float | Sequence[float] | str = 0, *,
                   generator: torch.Generator | None = None) -> Tensor:
    """v2.RandomErasing: with probability p, one rectangle per sample (area fraction ~ U(scale),
    log aspect ~ U(log ratio), position uniform) is set to `value` (a number, one per channel, or
    "random" for standard normal noise). Built as a mask from two aranges, no per-sample slicing."""
    _check_batch(x)
    b, c, h, w = x.shape
    bh, bw, fits = _erase_boxes(generator, b, h, w, x.device, scale, ratio, erasing=True)
    apply = (_rand(generator, (b,), x.device) < p) & fits
    top = _randint_below(generator, h - bh + 1, (b,), x.device)
    left = _randint_below(generator, w - bw + 1, (b,), x.device)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + bh)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + bw)[:, None])
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :] & apply[:, None, None, None]
    if isinstance(value, str):
        if value != "random":
            raise ValueError(f'value must be a number, a sequence or "random", got {value!r}')
        if generator is None:
            noise = torch.randn(x.shape, device=x.device)
        else:
            noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device)
        return torch.where(mask, noise.to(x.dtype), x)
    return torch.where(mask, _fill_tensor(value, x), x)


def resized_crop_batch(x: Tensor, top: Tensor, left: Tensor, height: Tensor, width: Tensor,
                       size: Sequence[int], *, interpolation: str = "bilinear") -> Tensor:
    """`v2.functional.resized_crop` with a box per sample ([B] integer tensors), resized to `size`
    without antialiasing. Source coordinates are F.interpolate's (align_corners=False, clamped to the
    box), so bilinear sampling never reaches outside the box; nearest picks floor(i * box/size)."""
    _check_batch(x)
    b, _, h, w = x.shape
    out_h, out_w = int(size[0]), int(size[1])
    device = x.device
    i = torch.arange(out_h, device=device)
    j = torch.arange(out_w, device=device)
    if interpolation == "nearest":
        rows = top[:, None] + torch.minimum((i * height[:, None]) // out_h, height[:, None] - 1)
        cols = left[:, None] + torch.minimum((j * width[:, None]) // out_w, width[:, None] - 1)
        return _gather_window(x, rows, cols, "edge")
    if interpolation != "bilinear":
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    dtype = x.dtype if x.is_floating_point() else torch.float32

    def source(index, start, extent, out, full):
        pos = (index.to(dtype) + 0.5) * (extent[:, None].to(dtype) / out) - 0.5
        pos = torch.minimum(pos.clamp(min=0), (extent[:, None] - 1).to(dtype)) + start[:, None].to(dtype)
        return (2 * pos + 1) / full - 1  # grid_sample's align_corners=False coordinates

    gy = source(i, top, height, out_h, h)
    gx = source(j, left, width, out_w, w)
    grid = torch.stack([gx[:, None, :].expand(b, out_h, out_w), gy[:, :, None].expand(b, out_h, out_w)], -1)
    img = x if x.is_floating_point() else x.to(dtype)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out if x.is_floating_point() else out.round_().clamp_(0, 255).to(x.dtype)


def random_resized_crop(x: Tensor, size: Sequence[int] | None = None, scale: Sequence[float] = (0.08, 1.0),
                        ratio: Sequence[float] = (3 / 4, 4 / 3), *, interpolation: str = "bilinear",
                        generator: torch.Generator | None = None) -> Tensor:
    """v2.RandomResizedCrop: a box of area ~ U(scale) and log aspect ~ U(log ratio) (10 tries, then v2's
    central fallback), uniformly placed, resized to `size` (default the input size)."""
    _check_batch(x)
    b, _, h, w = x.shape
    bh, bw, fits = _erase_boxes(generator, b, h, w, x.device, scale, ratio, erasing=False)
    # v2's fallback when no try fits: the largest central box whose aspect lies within `ratio`.
    if w / h < min(ratio):
        fallback_w, fallback_h = w, int(round(w / min(ratio)))
    elif w / h > max(ratio):
        fallback_h, fallback_w = h, int(round(h * max(ratio)))
    else:
        fallback_h, fallback_w = h, w
    bh = torch.where(fits, bh, fallback_h)
    bw = torch.where(fits, bw, fallback_w)
    top = torch.where(fits, _randint_below(generator, h - bh + 1, (b,), x.device), (h - fallback_h) // 2)
    left = torch.where(fits, _randint_below(generator, w - bw + 1, (b,), x.device), (w - fallback_w) // 2)
    return resized_crop_batch(x, top, left, bh, bw, (h, w) if size is None else size,
                              interpolation=interpolation)


# --- colour ---------------------------------------------------------------------------------------


def _jitter_range(value: float | Sequence[float] | None, name: str, center: float,
                  bound: tuple[float, float], clip_at_zero: bool) -> tuple[float, float] | None:
    """v2.ColorJitter's reading of a factor: a number v means [center - v, center + v] (clipped at 0
    for brightness, contrast, saturation), a pair is (min, max); None or the identity range means off."""
    if value is None:
        return None
    if isinstance(value, Sequence):
        low, high = _pair(value, name)
    else:
        if value < 0:
            raise ValueError(f"{name} must be non-negative when a single number, got {value}")
        low, high = center - float(value), center + float(value)
        if clip_at_zero:
            low = max(low, 0.0)
    if not bound[0] <= low <= high <= bound[1]:
        raise ValueError(f"{name} range must lie within {bound} and increase, got {(low, high)}")
    return None if low == high == center else (low, high)


def _gray(y: Tensor, integer: bool) -> Tensor:
    """ITU-R 601 luma as v2 computes it ([B, 1, H, W]); floored for uint8 images, as in v2."""
    r, g, b = y.unbind(1)
    gray = r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(1)  # v2's exact expression
    return gray.floor_() if integer else gray


def _blend(y: Tensor, other: Tensor, factor: Tensor, bound: float, integer: bool) -> Tensor:
    """v2's `_blend`: y*f + other*(1-f), clamped; uint8 results are truncated (`.to(uint8)`). v2 adds
    with a fused multiply-add (a scalar `alpha`); with a per-sample factor this rounds once more, so a
    uint8 result can differ from v2's by 1 in a few pixels."""
    f = factor.view(-1, 1, 1, 1)
    out = (y * f + other * (1 - f)).clamp_(0, bound)
    return out.floor_() if integer else out


def _adjust_hue(y: Tensor, shift: Tensor, integer: bool) -> Tensor:
    """v2's adjust_hue (RGB -> HSV, rotate hue, back) without building the HSV image: a hue rotation
    keeps each pixel's max and min channel, and the sector formula of HSV -> RGB can be written as
    channel(n) = max - (max - min) * clamp(min(k, 4 - k), 0, 1) with k = (n + 6 * hue) mod 6 for
    n = 5, 3, 1 (red, green, blue). uint8 values are converted back as v2's to_dtype does (scale by
    255.999 / 255 and truncate), so a channel can differ from v2's by 1 where float rounding differs."""
    r, g, b = y[:, 0:1], y[:, 1:2], y[:, 2:3]
    maxc, minc = y.amax(1, keepdim=True), y.amin(1, keepdim=True)
    span = maxc - minc
    safe = torch.where(span == 0, torch.ones_like(span), span)  # flat pixels: any hue gives max
    hue6 = torch.where(maxc == r, (g - b) / safe, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4))
    sector = torch.arange(5, 0, -2, dtype=y.dtype, device=y.device).view(1, 3, 1, 1)  # 5, 3, 1
    k = (hue6 + shift.view(-1, 1, 1, 1) * 6 + sector).remainder_(6)
    out = maxc - span * torch.minimum(k, 4 - k).clamp_(0, 1)
    return out.mul_((255 + 1 - 1e-3) / 255).floor_() if integer else out.clamp_(0, 1)


def _jitter_ranges(channels: int, brightness, contrast, saturation, hue) -> list[tuple[float, float] | None]:
    """The four factor ranges as v2.ColorJitter reads them (None: that adjustment is off); grey
    images have no saturation or hue."""
    if channels not in (1, 3):
        raise ValueError(f"color_jitter needs 1 or 3 channels, got {channels}")
    ranges = [_jitter_range(brightness, "brightness", 1.0, (0, math.inf), True),
              _jitter_range(contrast, "contrast", 1.0, (0, math.inf), True),
              _jitter_range(saturation, "saturation", 1.0, (0, math.inf), True),
              _jitter_range(hue, "hue", 0.0, (-0.5, 0.5), False)]
    if channels == 1:
        ranges[2] = ranges[3] = None
    return ranges


def color_jitter(x: Tensor, brightness: float | Sequence[float] | None = None,
                 contrast: float | Sequence[float] | None = None,
                 saturation: float | Sequence[float] | None = None,
                 hue: float | Sequence[float] | None = None, *,
                 generator: torch.Generator | None = None) -> Tensor:
    """v2.ColorJitter with per-sample factors *and* a per-sample random order of the four adjustments
    (v2 draws a permutation per image; the order matters because each step clamps and, for uint8,
    truncates). Arguments are read as v2 reads them. Grey (1-channel) images skip saturation and hue,
    as v2 does.

    Brightness, contrast and saturation are all blends, y*f + other*(1-f) with other = 0, the mean
    grey level, or the grey image, so each position of the order is one blend whose `other` and `f`
    are picked per sample (f = 1, an exact no-op, where the position is not active). The costly hue
    step runs once for the whole batch: first the positions before each sample's hue position, then
    hue, then the positions after it."""
    _check_batch(x)
    b, c = x.shape[:2]
    ranges = _jitter_ranges(c, brightness, contrast, saturation, hue)
    if all(r is None for r in ranges):
        return x.clone()
    integer = not x.is_floating_point()
    bound = 255.0 if integer else 1.0
    ones = torch.ones(b, device=x.device)
    factors = [ones if r is None else _uniform(generator, (b,), x.device, *r) for r in ranges]
    order = _rand(generator, (b, 4), x.device).argsort(1)  # order[:, k]: the step at position k (0..3)
    blend_factors = torch.stack([*factors[:3], ones], 1)  # hue's column: blending is a no-op there
    use_gray = ranges[1] is not None or ranges[2] is not None

    def blend_at(y: Tensor, position: int, active: Tensor | None) -> Tensor:
        step = order[:, position]
        f = blend_factors.gather(1, step[:, None]).squeeze(1)
        if active is not None:
            f = torch.where(active, f, 1.0)
        other = torch.zeros((), dtype=y.dtype, device=y.device)
        if use_gray:
            gray = _gray(y, integer) if c == 3 else y
            pick = step.view(-1, 1, 1, 1)
            if ranges[1] is not None:
                other = torch.where(pick == 1, gray.mean(dim=(1, 2, 3), keepdim=True), other)
            if ranges[2] is not None:
                other = torch.where(pick == 2, gray, other)
        return _blend(y, other, f, bound, integer)

    y = x.float() if integer else x
    blends = any(r is not None for r in ranges[:3])
    if ranges[3] is None:
        for position in range(4):
            y = blend_at(y, position, None)
    else:
        hue_at = (order == 3).int().argmax(1)
        if blends:
            for position in range(3):
                y = blend_at(y, position, position < hue_at)
        y = _adjust_hue(y, factors[3], integer)
        if blends:
            for position in range(1, 4):
                y = blend_at(y, position, position > hue_at)
    return y.to(x.dtype) if integer else y


# --- the pipeline ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchStep:
    """One batched op: `label` for logs, `apply(x, generator, indices, epoch) -> x`."""

    label: str
    apply: Callable[[Tensor, torch.Generator | None, Tensor | None, int], Tensor]
    needs_indices: bool = False


def _interpolation(value: Any) -> str | None:
    """A v2 interpolation argument as a grid_sample mode, or None when there is no batched equivalent."""
    from torchvision.transforms import InterpolationMode

    if isinstance(value, InterpolationMode):
        value = value.value
    return value if value in INTERPOLATIONS else None


def _plain_fill(value: Any) -> tuple[bool, Fill]:
    """(supported, fill): numbers and sequences of numbers work; v2's per-type dicts do not."""
    if value is None or isinstance(value, int | float):
        return True, value
    if isinstance(value, Sequence) and all(isinstance(v, int | float) for v in value):
        return True, tuple(float(v) for v in value)
    return False, None


# One builder per v2 transform class: (the transform instance, whose attributes are its parsed and
# validated arguments; image height; width; seed) -> its BatchStep, or None when these arguments have
# no batched equivalent.
StepBuilder = Callable[[Any, int, int, int], "BatchStep | None"]


def _alternating_flip_step(t, height, width, seed) -> BatchStep:
    return BatchStep(f"AlternatingHorizontalFlip(seed={seed})",
                     lambda x, g, idx, ep: alternating_flip(x, idx, ep, seed=seed), needs_indices=True)


def _hflip_step(t, height, width, seed) -> BatchStep:
    p = float(t.p)
    return BatchStep(f"RandomHorizontalFlip(p={p})", lambda x, g, idx, ep: hflip(x, p, generator=g))


def _vflip_step(t, height, width, seed) -> BatchStep:
    p = float(t.p)
    return BatchStep(f"RandomVerticalFlip(p={p})", lambda x, g, idx, ep: vflip(x, p, generator=g))


def _crop_step(t, height, width, seed) -> BatchStep | None:
    ok, fill = _plain_fill(t.fill)
    if tuple(t.size) != (height, width) or t.padding_mode not in PAD_MODES or not ok:
        return None
    pad_left, pad_right, pad_top, pad_bottom = t.padding or (0, 0, 0, 0)  # v2 keeps [l, r, t, b]
    padding = (pad_left, pad_top, pad_right, pad_bottom)
    mode = t.padding_mode
    return BatchStep(f"RandomCrop(padding={padding}, padding_mode={mode!r})",
                     lambda x, g, idx, ep: random_crop(x, padding, mode, fill=fill, generator=g))


def _rotation_step(t, height, width, seed) -> BatchStep | None:
    mode = _interpolation(t.interpolation)
    ok, fill = _plain_fill(t.fill)
    if mode is None or t.expand or not ok:
        return None
    degrees, center = tuple(t.degrees), t.center
    return BatchStep(f"RandomRotation(degrees={degrees}, interpolation={mode!r})",
                     lambda x, g, idx, ep: random_rotation(x, degrees, interpolation=mode, fill=fill,
                                                           center=center, generator=g))


def _affine_step(t, height, width, seed) -> BatchStep | None:
    mode = _interpolation(t.interpolation)
    ok, fill = _plain_fill(t.fill)
    if mode is None or not ok:
        return None
    degrees = tuple(t.degrees)
    translate, scale, shear = (None if v is None else tuple(v) for v in (t.translate, t.scale, t.shear))
    center = t.center
    return BatchStep(f"RandomAffine(degrees={degrees}, translate={translate}, scale={scale}, shear={shear}, "
                     f"interpolation={mode!r})",
                     lambda x, g, idx, ep: random_affine(x, degrees, translate, scale, shear, interpolation=mode,
                                                         fill=fill, center=center, generator=g))


def _jitter_step(t, height, width, seed) -> BatchStep:
    args = {k: getattr(t, k) for k in ("brightness", "contrast", "saturation", "hue")}
    inner = ", ".join(f"{k}={v}" for k, v in args.items() if v is not None)
    return BatchStep(f"ColorJitter({inner})", lambda x, g, idx, ep: color_jitter(x, **args, generator=g))


def _erasing_step(t, height, width, seed) -> BatchStep:
    p, scale, ratio = float(t.p), tuple(t.scale), tuple(t.ratio)
    value: Any = "random" if t.value is None else (t.value[0] if len(t.value) == 1 else tuple(t.value))
    return BatchStep(f"RandomErasing(p={p}, scale={scale}, ratio={ratio}, value={value!r})",
                     lambda x, g, idx, ep: random_erasing(x, p, scale, ratio, value, generator=g))


def _resized_crop_step(t, height, width, seed) -> BatchStep | None:
    mode = _interpolation(t.interpolation)
    if mode is None or tuple(t.size) != (height, width):
        return None
    scale, ratio = tuple(t.scale), tuple(t.ratio)
    return BatchStep(f"RandomResizedCrop(scale={scale}, ratio={ratio}, interpolation={mode!r})",
                     lambda x, g, idx, ep: random_resized_crop(x, None, scale, ratio, interpolation=mode,
                                                               generator=g))


@functools.cache
def step_builders() -> dict[type, StepBuilder]:
    """v2 transform class -> the builder of its batched step. A class not in the table has no batched
    equivalent (the pipeline then falls back to the per-sample DataLoader path). Built on first use,
    so importing this module does not import torchvision."""
    from torchvision.transforms import v2

    from archspec.data.alternating_flip import AlternatingHorizontalFlip

    return {
        AlternatingHorizontalFlip: _alternating_flip_step,
        v2.RandomHorizontalFlip: _hflip_step,
        v2.RandomVerticalFlip: _vflip_step,
        v2.RandomCrop: _crop_step,
        v2.RandomRotation: _rotation_step,
        v2.RandomAffine: _affine_step,
        v2.ColorJitter: _jitter_step,
        v2.RandomErasing: _erasing_step,
        v2.RandomResizedCrop: _resized_crop_step,
    }


def _step_for(t: Any, height: int, width: int, seed: int) -> BatchStep | None:
    """The batched equivalent of one v2 transform instance, or None when there is none. The exact
    class is looked up (a subclass may change what the transform does)."""
    builder = step_builders().get(type(t))
    return None if builder is None else builder(t, height, width, seed)


class BatchAugment:
    """A composed batched pipeline: `pre` steps run on the raw batch (uint8 or 0..1 float), then the
    batch is normalised, then `post` steps run on the normalised float batch (RandomErasing in the
    `heavy` presets, or anything after a bare `Normalize` in an explicit list), as in the per-sample path.

    Usage on the device-resident path, with a generator on the data's device seeded per batch from
    (seed, epoch, batch number), so a resumed run draws the same augmentations:

        aug = BatchAugment.from_spec(recipe_augment, input_shape, seed=seed)  # None: DataLoader path
        generator = torch.Generator(device).manual_seed(derive_seed(seed, "augment", epoch, b))
        x = aug(images[index], mean, std, generator, indices=index, epoch=epoch)
    """

    def __init__(self, pre: Sequence[BatchStep] = (), post: Sequence[BatchStep] = ()) -> None:
        self.pre = list(pre)
        self.post = list(post)

    @classmethod
    def from_spec(cls, augment: Any, input_shape: Sequence[int], *, seed: int = 0) -> BatchAugment | None:
        """The batched pipeline for a recipe's `augment:` (preset name or explicit list), or None when a
        step has no batched equivalent (a transform not mapped here, bicubic interpolation, expand=True,
        per-type fill dicts, a crop whose size is not the input size). Spec errors (unknown names, bad
        arguments) raise ArchspecError exactly as the per-sample path does, since the same parser reads
        the spec. An `AlternatingHorizontalFlip` step (airbench's alternating flip, hashed with `seed`)
        makes the call need `indices` and `epoch`."""
        from archspec.data.augment import augment_steps

        pre, post = augment_steps(augment, input_shape)
        height, width = int(input_shape[1]), int(input_shape[2])
        stages = []
        for transforms in (pre, post):
            steps = [_step_for(t, height, width, seed) for t in transforms]
            if any(s is None for s in steps):
                return None
            stages.append(steps)
        return cls(*stages)

    @property
    def needs_indices(self) -> bool:
        """True when a step (the alternating flip) needs the samples' dataset indices and the epoch."""
        return any(s.needs_indices for s in self.pre + self.post)

    def _run(self, steps: list[BatchStep], x: Tensor, generator, indices, epoch: int) -> Tensor:
        if indices is None and any(s.needs_indices for s in steps):
            raise ValueError("this pipeline flips by dataset index: pass indices= and epoch=")
        for step in steps:
            x = step.apply(x, generator, indices, epoch)
        return x

    def pre_normalize(self, x: Tensor, generator: torch.Generator | None = None, *,
                      indices: Tensor | None = None, epoch: int = 0) -> Tensor:
        """The steps before normalisation, on a uint8 (or 0..1 float) batch."""
        return self._run(self.pre, x, generator, indices, epoch)

    def post_normalize(self, x: Tensor, generator: torch.Generator | None = None, *,
                       indices: Tensor | None = None, epoch: int = 0) -> Tensor:
        """The steps after normalisation, on the normalised float batch."""
        return self._run(self.post, x, generator, indices, epoch)

    def __call__(self, x: Tensor, mean: Tensor | Sequence[float], std: Tensor | Sequence[float],
                 generator: torch.Generator | None = None, *, indices: Tensor | None = None,
                 epoch: int = 0) -> Tensor:
        """pre steps -> `archspec.data.normalize.normalize` (x/255 for uint8, then (x - mean) / std) -> post steps."""
        x = self.pre_normalize(x, generator, indices=indices, epoch=epoch)
        return self.post_normalize(normalize(x, mean, std), generator, indices=indices, epoch=epoch)

    def __repr__(self) -> str:
        pre = ", ".join(s.label for s in self.pre)
        post = ", ".join(s.label for s in self.post)
        return f"BatchAugment(pre=[{pre}], post=[{post}])"
