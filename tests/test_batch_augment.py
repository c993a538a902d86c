"""Batched augmentation against torchvision.transforms.v2 applied per sample.

Each random op is checked two ways: (1) its parameter distribution, recovered from structured images
(position-coded pixels, a Gaussian blob, flat colours), matches v2's with chi-square / KS tolerances at
the 0.1% level; (2) for fixed parameters (degenerate ranges, or parameters recovered from the output)
its pixels equal v2's. All seeds are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import colorsys
import math

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from archspec.data.augment import AUGMENT_PRESETS, build_augment
from archspec.data.batch_augment import (
    BatchAugment,
    affine_batch,
    alternating_flip,
    color_jitter,
    hflip,
    random_affine,
    random_crop,
    random_erasing,
    random_resized_crop,
    random_rotation,
    random_translate,
    resized_crop_batch,
    vflip,
)
from archspec.errors import ArchspecError


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy machine threaded ops wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- statistics helpers ---------------------------------------------------------------------------


def chi2_critical(df: int, z: float = 3.29) -> float:
    """Upper 0.05% point of chi-square(df) (Wilson-Hilferty approximation)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def assert_uniform(values: torch.Tensor, support: int) -> None:
    counts = torch.bincount(values, minlength=support).double()
    assert counts.numel() == support, "values outside the expected support"
    expected = values.numel() / support
    stat = ((counts - expected) ** 2 / expected).sum().item()
    assert stat < chi2_critical(support - 1), f"chi-square {stat:.1f} for {support} cells"


def assert_same_histogram(a: torch.Tensor, b: torch.Tensor) -> None:
    """Two-sample chi-square on integer samples of possibly different sizes."""
    lo = min(a.min().item(), b.min().item())
    ca = torch.bincount(a - lo).double()
    cb = torch.bincount(b - lo).double()
    n = max(ca.numel(), cb.numel())
    ca = torch.cat([ca, ca.new_zeros(n - ca.numel())])
    cb = torch.cat([cb, cb.new_zeros(n - cb.numel())])
    used = (ca + cb) > 0
    ca, cb = ca[used], cb[used]
    k1, k2 = math.sqrt(cb.sum() / ca.sum()), math.sqrt(ca.sum() / cb.sum())
    stat = ((k1 * ca - k2 * cb) ** 2 / (ca + cb)).sum().item()
    assert stat < chi2_critical(max(int(used.sum()) - 1, 1)), f"two-sample chi-square {stat:.1f}"


def assert_same_distribution(a: torch.Tensor, b: torch.Tensor) -> None:
    """Two-sample Kolmogorov-Smirnov at the 0.1% level."""
    a, b = a.double().sort().values, b.double().sort().values
    pooled = torch.cat([a, b])
    fa = torch.searchsorted(a, pooled, right=True) / a.numel()
    fb = torch.searchsorted(b, pooled, right=True) / b.numel()
    d = (fa - fb).abs().max().item()
    critical = 1.95 * math.sqrt((a.numel() + b.numel()) / (a.numel() * b.numel()))
    assert d < critical, f"KS distance {d:.3f} >= {critical:.3f}"


def per_sample(transform, batch: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The per-sample path: a v2 transform called image by image."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([transform(image) for image in batch])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def marker(h: int, w: int) -> torch.Tensor:
    """[1, 1, h, w] float image whose pixel (r, c) holds r*100 + c + 1, so any output pixel names its
    source (0 means fill)."""
    r = torch.arange(h, dtype=torch.float32)[:, None]
    c = torch.arange(w, dtype=torch.float32)[None, :]
    return (r * 100 + c + 1)[None, None]


def blob(size: int = 25, at: tuple[float, float] = (6.0, 0.0), sigma: float = 1.0) -> torch.Tensor:
    """[1, 1, size, size] Gaussian blob at (dx, dy) pixels from the centre."""
    centre = (size - 1) / 2
    y = torch.arange(size, dtype=torch.float32)[:, None] - centre - at[1]
    x = torch.arange(size, dtype=torch.float32)[None, :] - centre - at[0]
    return torch.exp(-(x**2 + y**2) / (2 * sigma**2))[None, None]


def centroid(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Intensity centroid (dx, dy) from the image centre, per sample of [B, 1, H, W]."""
    _, _, h, w = images.shape
    y = torch.arange(h, dtype=torch.float32)[:, None] - (h - 1) / 2
    x = torch.arange(w, dtype=torch.float32)[None, :] - (w - 1) / 2
    mass = images.sum(dim=(1, 2, 3))
    return (images * x).sum(dim=(1, 2, 3)) / mass, (images * y).sum(dim=(1, 2, 3)) / mass


def ccw_angle(images: torch.Tensor) -> torch.Tensor:
    """Counter-clockwise angle (degrees, y axis pointing down) of the centroid."""
    dx, dy = centroid(images)
    return torch.rad2deg(torch.atan2(-dy, dx))


def random_uint8(shape, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen(seed))


# --- crop, translate, flips -----------------------------------------------------------------------


def test_random_crop_offsets_are_uniform_like_v2():
    image = marker(10, 10)
    ours = random_crop(image.expand(3000, -1, -1, -1), 3, generator=gen(1))
    theirs = per_sample(v2.RandomCrop(10, padding=3), image.expand(1200, -1, -1, -1), seed=1)
    # Output pixel (3, 3) comes from padded (top + 3, left + 3), i.e. image pixel (top, left).
    for out in (ours, theirs):
        code = out[:, 0, 3, 3].long() - 1
        top, left = code // 100, code % 100
        assert top.min() == 0 and top.max() == 6 and left.min() == 0 and left.max() == 6
        assert_uniform(top * 7 + left, 49)
    assert_same_histogram(ours[:, 0, 3, 3].long(), theirs[:, 0, 3, 3].long())


@pytest.mark.parametrize("pad_mode", ["constant", "edge", "reflect", "symmetric"])
def test_random_crop_pixels_equal_pad_then_crop(pad_mode):
    """For each sample, the offset read off the marker channel reproduces the output with v2's pad + crop."""
    h, w = 9, 11
    content = torch.rand(64, 2, h, w, generator=gen(2))
    batch = torch.cat([marker(h, w).expand(64, -1, -1, -1), content], 1)
    out = random_crop(batch, 4, pad_mode, fill=0.5, generator=gen(3))
    code = out[:, 0, 4, 4].long() - 1
    for i in range(64):
        top, left = int(code[i] // 100), int(code[i] % 100)
        padded = TF.pad(batch[i], [4], fill=0.5, padding_mode=pad_mode)
        assert torch.equal(out[i], TF.crop(padded, top, left, h, w))


def test_random_crop_reads_padding_like_v2():
    """(left, top, right, bottom) padding: the offsets span the same ranges as v2's."""
    image = marker(8, 8)
    padding = (1, 2, 3, 0)
    ours = random_crop(image.expand(500, -1, -1, -1), padding, generator=gen(4))
    theirs = per_sample(v2.RandomCrop(8, padding=list(padding)), image.expand(300, -1, -1, -1), 4)
    # Output (2, 1) comes from image (top, left): top in 0..2, left in 0..4.
    sets = [set((out[:, 0, 2, 1].long() - 1).tolist()) for out in (ours, theirs)]
    assert sets[0] == sets[1] == {100 * t + s for t in range(3) for s in range(5)}


def test_random_translate_matches_v2_random_affine_translation():
    image = marker(10, 10)
    ours = random_translate(image.expand(3000, -1, -1, -1), 0.25, generator=gen(5))
    theirs = per_sample(v2.RandomAffine(degrees=0, translate=(0.25, 0.25)), image.expand(1000, -1, -1, -1), 5)
    for out in (ours, theirs):
        code = out[:, 0, 5, 5].long() - 1  # source of the centre pixel: (5 - dy, 5 - dx)
        dy, dx = 5 - code // 100, 5 - code % 100
        assert dx.abs().max() == 2 and dy.abs().max() == 2  # round(U(-2.5, 2.5))
        # Everything shifted in from outside the image is the zero fill, and only that.
        rows = torch.arange(10)[None, :, None] - dy[:, None, None]
        cols = torch.arange(10)[None, None, :] - dx[:, None, None]
        outside = (rows < 0) | (rows > 9) | (cols < 0) | (cols > 9)
        assert torch.equal(out[:, 0] == 0, outside)
    assert_same_histogram(ours[:, 0, 5, 5].long(), theirs[:, 0, 5, 5].long())
    # Given the shift read off the centre pixel, the whole image is v2's affine with that translation.
    code = ours[:50, 0, 5, 5].long() - 1
    for i, (dy, dx) in enumerate(zip((5 - code // 100).tolist(), (5 - code % 100).tolist(), strict=True)):
        assert torch.equal(ours[i], TF.affine(image[0], angle=0.0, translate=[dx, dy], scale=1.0, shear=[0.0, 0.0]))


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_hflip_rate_and_pixels(p):
    x = random_uint8((20000, 1, 2, 3), seed=6)
    out = hflip(x, p, generator=gen(7))
    flipped = (out != x).flatten(1).any(1)
    assert torch.equal(out[flipped], x[flipped].flip(-1))
    assert torch.equal(out[~flipped], x[~flipped])
    # Exclude images equal to their own mirror, whose flips cannot be seen.
    visible = (x != x.flip(-1)).flatten(1).any(1)
    rate = flipped[visible].double().mean().item()
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / int(visible.sum()))


def test_vflip_flips_rows():
    x = random_uint8((4000, 1, 3, 2), seed=8)
    out = vflip(x, 0.5, generator=gen(9))
    flipped = (out != x).flatten(1).any(1)
    assert torch.equal(out[flipped], x[flipped].flip(-2))
    assert 0.4 < flipped.double().mean().item() < 0.55


def test_alternating_flip_flips_complementary_halves():
    x = random_uint8((1, 1, 2, 5), seed=10).expand(10000, -1, -1, -1)
    indices = torch.randperm(10000, generator=gen(11))
    flipped = [(alternating_flip(x, indices, epoch) != x).flatten(1).any(1) for epoch in range(4)]
    assert torch.equal(flipped[0], ~flipped[1])
    assert torch.equal(flipped[0], flipped[2]) and torch.equal(flipped[1], flipped[3])
    assert abs(flipped[0].double().mean().item() - 0.5) < 0.03
    # The choice follows the dataset index, not the position in the batch.
    order = torch.randperm(10000, generator=gen(12))
    again = (alternating_flip(x, indices[order], 0) != x).flatten(1).any(1)
    assert torch.equal(again, flipped[0][order])
    # Another seed picks another half.
    other = (alternating_flip(x, indices, 0, seed=1) != x).flatten(1).any(1)
    assert 0.3 < (other != flipped[0]).double().mean().item() < 0.7


# --- rotation and affine --------------------------------------------------------------------------


def test_rotation_angles_match_v2():
    image = blob()
    ours = random_rotation(image.expand(2000, -1, -1, -1), 15, interpolation="bilinear", generator=gen(13))
    theirs = per_sample(v2.RandomRotation(15, interpolation=v2.InterpolationMode.BILINEAR),
                        image.expand(200, -1, -1, -1), 13)
    a, b = ccw_angle(ours), ccw_angle(theirs)
    for angles in (a, b):
        assert -15.5 < angles.min() < -14 and 14 < angles.max() < 15.5
    assert abs(a.mean().item()) < 0.6
    assert_same_distribution(a, b)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_fixed_rotation_and_affine_pixels_equal_v2(interpolation):
    """Degenerate ranges make v2 deterministic: same pixels, which pins the sign conventions."""
    x = random_uint8((6, 3, 13, 17), seed=14)
    mode = v2.InterpolationMode(interpolation)
    rot = random_rotation(x, (20, 20), interpolation=interpolation, generator=gen(0))
    assert torch.equal(rot, per_sample(v2.RandomRotation((20, 20), interpolation=mode), x))
    kwargs = dict(degrees=(-12, -12), scale=(1.2, 1.2), shear=(5, 5, -3, -3))
    aff = random_affine(x, **kwargs, interpolation=interpolation, fill=(10, 200, 30), generator=gen(0))
    assert torch.equal(aff, per_sample(v2.RandomAffine(**kwargs, interpolation=mode, fill=(10, 200, 30)), x))


def test_affine_batch_equals_v2_affine_per_sample():
    x = torch.rand(12, 3, 11, 14, generator=gen(15))
    g = gen(16)
    angle = torch.rand(12, generator=g) * 90 - 45
    shift = torch.randint(-3, 4, (12, 2), generator=g).float()
    scale = torch.rand(12, generator=g) * 0.6 + 0.7
    shear = torch.rand(12, 2, generator=g) * 20 - 10
    out = affine_batch(x, angle, shift, scale, shear, interpolation="bilinear", fill=0.25, center=(4.0, 6.0))
    for i in range(12):
        ref = TF.affine(x[i], angle=angle[i].item(), translate=shift[i].tolist(), scale=scale[i].item(),
                        shear=shear[i].tolist(), interpolation=v2.InterpolationMode.BILINEAR, fill=0.25,
                        center=[4.0, 6.0])
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_affine_angle_scale_and_translation_match_v2():
    image = blob(at=(5.0, 0.0))
    kwargs = dict(degrees=20, scale=(0.8, 1.2))
    ours = random_affine(image.expand(2000, -1, -1, -1), **kwargs, interpolation="bilinear", generator=gen(17))
    theirs = per_sample(v2.RandomAffine(**kwargs, interpolation=v2.InterpolationMode.BILINEAR),
                        image.expand(200, -1, -1, -1), 17)
    # RandomAffine's positive angles turn clockwise on screen, the opposite of RandomRotation.
    assert_same_distribution(ccw_angle(ours), ccw_angle(theirs))
    assert 18 < -ccw_angle(ours).min() < 20.5
    radius = [torch.hypot(*centroid(out)) / 5 for out in (ours, theirs)]
    assert 0.78 < radius[0].min() < 0.82 and 1.18 < radius[0].max() < 1.22
    assert_same_distribution(*radius)

    centred = blob(at=(0.0, 0.0))
    kwargs = dict(degrees=5, translate=(0.1, 0.2))
    ours = random_affine(centred.expand(2000, -1, -1, -1), **kwargs, interpolation="bilinear", generator=gen(18))
    theirs = per_sample(v2.RandomAffine(**kwargs, interpolation=v2.InterpolationMode.BILINEAR),
                        centred.expand(200, -1, -1, -1), 18)
    for axis, limit in ((0, 2), (1, 5)):  # round(U(-2.5, 2.5)) and round(U(-5, 5)) pixels
        shifts = [centroid(out)[axis].round().long() for out in (ours, theirs)]
        assert shifts[0].abs().max() == limit
        assert_same_histogram(*shifts)


# --- colour ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("factor", [dict(brightness=(1.3, 1.3)), dict(contrast=(0.6, 0.6)),
                                    dict(saturation=(1.7, 1.7)), dict(hue=(0.2, 0.2)), dict(hue=(-0.37, -0.37))])
def test_color_adjustments_equal_v2_for_fixed_factors(factor, dtype):
    x = random_uint8((16, 3, 10, 12), seed=19)
    if dtype.is_floating_point:
        x = x.to(dtype) / 255
    ours = color_jitter(x, **factor, generator=gen(0))
    theirs = per_sample(v2.ColorJitter(**factor), x)
    assert ours.dtype == dtype
    diff = (ours.double() - theirs.double()).abs()
    if dtype == torch.uint8 and ("saturation" in factor or "hue" in factor):
        # v2 blends with a fused multiply-add and converts HSV in another order of float operations.
        assert diff.max() <= 1 and (diff > 0).double().mean() < 0.01
    elif dtype == torch.uint8:
        assert torch.equal(ours, theirs)
    else:
        assert diff.max() < 1e-5


def _brightness_image():
    return torch.full((1, 1, 4, 4), 0.5), lambda out: out[:, 0, 0, 0] / 0.5


def _contrast_image():
    image = torch.full((1, 1, 4, 4), 0.25)
    image[..., 2:, :] = 0.75
    return image, lambda out: (out[:, 0, 3, 0] - out[:, 0, 0, 0]) / 0.5


def _saturation_image():
    image = torch.tensor([0.6, 0.4, 0.2]).view(1, 3, 1, 1).expand(1, 3, 4, 4).clone()
    return image, lambda out: (out[:, 0, 0, 0] - out[:, 2, 0, 0]) / 0.4


def _hue_image():
    image = torch.tensor([0.8, 0.3, 0.2]).view(1, 3, 1, 1).expand(1, 3, 4, 4).clone()

    def shift(out):
        start = colorsys.rgb_to_hsv(0.8, 0.3, 0.2)[0]
        hues = torch.tensor([colorsys.rgb_to_hsv(*rgb)[0] for rgb in out[:, :, 0, 0].tolist()])
        return (hues - start + 0.5) % 1 - 0.5

    return image, shift


@pytest.mark.parametrize("name, amount, build, low, high", [
    ("brightness", 0.4, _brightness_image, 0.6, 1.4),
    ("contrast", 0.5, _contrast_image, 0.5, 1.5),
    ("saturation", 0.7, _saturation_image, 0.3, 1.7),
    ("hue", 0.2, _hue_image, -0.2, 0.2),
])
def test_color_jitter_factor_distributions_match_v2(name, amount, build, low, high):
    image, recover = build()
    ours = recover(color_jitter(image.expand(3000, -1, -1, -1), **{name: amount}, generator=gen(20)))
    theirs = recover(per_sample(v2.ColorJitter(**{name: amount}), image.expand(200 if name == "hue" else 800, -1, -1, -1), 20))
    span = high - low
    assert low - 1e-3 < ours.min() < low + 0.01 * span and high - 0.01 * span < ours.max() < high + 1e-3
    assert abs(ours.mean().item() - (low + high) / 2) < 0.02 * span
    assert_same_distribution(ours, theirs)


def test_color_jitter_order_is_random_per_sample_like_v2():
    """Brightness then contrast differs from contrast then brightness (clamping): both orders occur,
    about equally often, and they are exactly v2's two outcomes."""
    factors = dict(brightness=(1.8, 1.8), contrast=(0.3, 0.3))
    x = random_uint8((1, 3, 6, 6), seed=21).expand(600, -1, -1, -1)
    ours = color_jitter(x, **factors, generator=gen(22)).flatten(1)
    theirs = per_sample(v2.ColorJitter(**factors), x[:200]).flatten(1)
    outcomes, counts = torch.unique(ours, dim=0, return_counts=True)
    assert len(outcomes) == 2 and torch.equal(outcomes, torch.unique(theirs, dim=0))
    assert 0.4 < counts[0].item() / 600 < 0.6


def test_color_jitter_all_four_steps_give_v2s_outcomes():
    """With all four factors fixed, the outcome depends only on the order (24 orders): ours and v2's
    outcomes are the same set, so hue sits at every position as in v2."""
    factors = dict(brightness=(1.6, 1.6), contrast=(0.5, 0.5), saturation=(1.8, 1.8), hue=(0.15, 0.15))
    x = torch.rand(1, 3, 2, 3, generator=gen(43)).expand(2000, -1, -1, -1)
    ours = color_jitter(x, **factors, generator=gen(44)).flatten(1)
    theirs = per_sample(v2.ColorJitter(**factors), x[:200], seed=44).flatten(1)
    distance = torch.cdist(ours.double(), theirs.double())
    assert distance.min(0).values.max() < 1e-5  # every v2 outcome is one of ours
    assert distance.min(1).values.max() < 1e-5  # and every one of ours is one of v2's
    assert len(torch.unique((ours * 1e4).round(), dim=0)) > 6  # the order really matters here


def test_color_jitter_grey_images_skip_saturation_and_hue():
    x = random_uint8((8, 1, 5, 5), seed=23)
    assert torch.equal(color_jitter(x, saturation=(2.0, 2.0), hue=(0.3, 0.3), generator=gen(0)), x)
    jittered = color_jitter(x, brightness=(1.5, 1.5), saturation=(2.0, 2.0), generator=gen(0))
    assert torch.equal(jittered, per_sample(v2.ColorJitter(brightness=(1.5, 1.5)), x))


# --- erasing and resized crops --------------------------------------------------------------------


def _erased_boxes(out: torch.Tensor):
    """(erased?, area fraction, log aspect h/w) per sample of a [B, 1, H, W] image of ones erased to 0."""
    zero = out[:, 0] == 0
    rows, cols = zero.any(2), zero.any(1)
    h, w = rows.sum(1), cols.sum(1)
    assert torch.equal(zero.sum((1, 2)), h * w), "erased pixels do not form one rectangle"
    erased = h > 0
    return erased, (h * w)[erased] / zero[0].numel(), (h[erased] / w[erased]).log()


def test_random_erasing_matches_v2():
    ones = torch.ones(1, 1, 16, 16)
    ours = _erased_boxes(random_erasing(ones.expand(3000, -1, -1, -1), 0.5, generator=gen(24)))
    theirs = _erased_boxes(per_sample(v2.RandomErasing(0.5), ones.expand(1200, -1, -1, -1), 24))
    for erased, area, _ in (ours, theirs):
        assert abs(erased.double().mean().item() - 0.5) < 0.06
        assert 0.01 < area.min() < 0.03 and 0.3 < area.max() < 0.37
    assert_same_distribution(ours[1], theirs[1])
    assert_same_distribution(ours[2], theirs[2])


def test_random_erasing_values_and_always_on():
    x = random_uint8((200, 3, 12, 12), seed=25)
    out = random_erasing(x, 1.0, value=(1, 2, 3), generator=gen(26))
    changed = out != x
    assert changed.flatten(1).any(1).double().mean() > 0.95
    for c, value in enumerate((1, 2, 3)):
        assert (out[:, c][changed[:, c]] == value).all()
    assert torch.equal(random_erasing(x, 0.0, generator=gen(26)), x)
    noisy = random_erasing(torch.zeros(50, 1, 12, 12), 1.0, value="random", generator=gen(27))
    assert noisy[noisy != 0].std() > 0.5


def test_random_resized_crop_boxes_match_v2():
    image = marker(12, 12)
    ours = random_resized_crop(image.expand(3000, -1, -1, -1), interpolation="nearest", generator=gen(28))
    theirs = per_sample(v2.RandomResizedCrop(12, interpolation=v2.InterpolationMode.NEAREST),
                        image.expand(800, -1, -1, -1), 28)
    # Nearest resizing: output (0, 0) is the box's top-left pixel, (11, 11) sits at floor(11 * size / 12).
    for corner in ((0, 0), (11, 11)):
        codes = [out[:, 0, corner[0], corner[1]].long() - 1 for out in (ours, theirs)]
        assert_same_distribution(codes[0] // 100, codes[1] // 100)
        assert_same_distribution(codes[0] % 100, codes[1] % 100)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_resized_crop_batch_pixels_equal_v2(interpolation):
    x = random_uint8((16, 3, 12, 14), seed=29)
    g = gen(30)
    top, left = torch.randint(0, 6, (16,), generator=g), torch.randint(0, 6, (16,), generator=g)
    height, width = torch.randint(1, 7, (16,), generator=g), torch.randint(1, 9, (16,), generator=g)
    out = resized_crop_batch(x, top, left, height, width, (12, 14), interpolation=interpolation)
    ref = torch.stack([TF.resized_crop(x[i], int(top[i]), int(left[i]), int(height[i]), int(width[i]), [12, 14],
                                       interpolation=v2.InterpolationMode(interpolation)) for i in range(16)])
    diff = (out.int() - ref.int()).abs()
    if interpolation == "nearest":
        assert torch.equal(out, ref)
    else:  # v2's uint8 bilinear kernel rounds in fixed point
        assert diff.max() <= 1
    as_float = resized_crop_batch(x.float() / 255, top, left, height, width, (12, 14), interpolation=interpolation)
    ref_float = torch.stack([TF.resized_crop(x[i].float() / 255, int(top[i]), int(left[i]), int(height[i]),
                                             int(width[i]), [12, 14], interpolation=v2.InterpolationMode(interpolation))
                             for i in range(16)])
    torch.testing.assert_close(as_float, ref_float, atol=1e-5, rtol=0)


# --- common contract: shape, dtype, device, determinism ---------------------------------------------

OPS = {
    "random_crop": lambda x, g: random_crop(x, 4, "reflect", generator=g),
    "random_translate": lambda x, g: random_translate(x, 0.1, generator=g),
    "hflip": lambda x, g: hflip(x, generator=g),
    "random_rotation": lambda x, g: random_rotation(x, 15, generator=g),
    "random_affine": lambda x, g: random_affine(x, 10, (0.1, 0.1), (0.9, 1.1), 5, interpolation="bilinear",
                                                generator=g),
    "color_jitter": lambda x, g: color_jitter(x, 0.2, 0.2, 0.2, 0.1, generator=g),
    "random_erasing": lambda x, g: random_erasing(x, 0.9, generator=g),
    "random_resized_crop": lambda x, g: random_resized_crop(x, generator=g),
}


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_keep_shape_dtype_device_and_are_deterministic(name, dtype):
    x = random_uint8((32, 3, 16, 16), seed=31)
    if dtype.is_floating_point:
        x = x.to(dtype) / 255
    before = x.clone()
    out = OPS[name](x, gen(32))
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert torch.equal(x, before), "the input batch was modified"
    assert torch.equal(out, OPS[name](x, gen(32)))
    assert not torch.equal(out, OPS[name](x, gen(33)))
    assert not torch.equal(out, x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_run_on_cuda_with_device_or_cpu_generators(name):
    x = random_uint8((32, 3, 16, 16), seed=34).cuda()
    cuda_gen = torch.Generator(device="cuda").manual_seed(35)
    out = OPS[name](x, cuda_gen)
    assert out.device == x.device and out.dtype == x.dtype and out.shape == x.shape
    assert torch.equal(out, OPS[name](x, torch.Generator(device="cuda").manual_seed(35)))
    on_cpu_gen = OPS[name](x, gen(36))  # random numbers drawn on the CPU and moved
    assert on_cpu_gen.device == x.device and torch.equal(on_cpu_gen, OPS[name](x, gen(36)))


# --- the pipeline ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
@pytest.mark.parametrize("preset", sorted(AUGMENT_PRESETS))
def test_every_preset_has_a_batched_pipeline(preset, shape):
    augment = BatchAugment.from_spec(preset, shape)
    assert augment is not None
    pre, post = build_augment(preset, shape)
    assert [s.label.split("(")[0] for s in augment.pre] == [type(t).__name__ for t in (pre.transforms if pre else [])]
    assert [s.label.split("(")[0] for s in augment.post] == [type(t).__name__ for t in (post.transforms if post else [])]
    x = random_uint8((8, *shape), seed=37)
    out = augment(x, [0.5] * shape[0], [0.25] * shape[0], gen(38))
    assert out.shape == x.shape and out.dtype == torch.float32


@pytest.mark.parametrize("augment", [
    [{"GaussianBlur": {"kernel_size": 3}}],
    [{"RandomRotation": {"degrees": 10, "expand": True}}],
    [{"RandomRotation": {"degrees": 10, "interpolation": "bicubic"}}],
    [{"RandomCrop": {"size": 24}}],
    [{"RandomHorizontalFlip": None}, "RandomGrayscale"],
])
def test_steps_without_a_batched_equivalent_give_none(augment):
    assert BatchAugment.from_spec(augment, (3, 32, 32)) is None


def test_spec_errors_are_the_per_sample_paths_errors():
    with pytest.raises(ArchspecError, match="did you mean"):
        BatchAugment.from_spec("flip_corp", (3, 32, 32))
    with pytest.raises(ArchspecError, match="unknown transform"):
        BatchAugment.from_spec(["RandomFlop"], (3, 32, 32))


def test_steps_after_normalize_see_normalised_values():
    """RandomErasing after the Normalize marker paints 0 in normalised units (the mean), not raw 0."""
    spec = ["RandomHorizontalFlip", "Normalize", {"RandomErasing": {"p": 1.0}}]
    augment = BatchAugment.from_spec(spec, (3, 8, 8))
    assert [s.label.split("(")[0] for s in augment.post] == ["RandomErasing"]
    x = torch.full((64, 3, 8, 8), 255, dtype=torch.uint8)
    out = augment(x, [0.5] * 3, [0.5] * 3, gen(39))
    assert set(out.unique().tolist()) == {0.0, 1.0}  # 255 normalises to 1; erased pixels are 0


def test_call_normalises_like_the_loader_and_leaves_the_input_alone():
    from archspec.data.normalize import normalize

    mean, std = torch.tensor([0.4, 0.5, 0.6]).view(3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(3, 1, 1)
    x = random_uint8((4, 3, 6, 6), seed=40)
    identity = BatchAugment.from_spec("none", (3, 6, 6))
    torch.testing.assert_close(identity(x, mean.flatten(), std.flatten()), normalize(x, mean, std))
    floats = x.float() / 255
    before = floats.clone()
    identity(floats, mean.flatten(), std.flatten())
    assert torch.equal(floats, before)


def test_flip_crop_pipeline_matches_the_per_sample_preset():
    """End to end: the centre pixel's source under flip_crop is distributed as with v2's Compose."""
    image = (torch.arange(144).view(1, 1, 12, 12)).to(torch.uint8)  # every pixel names its position
    ours = BatchAugment.from_spec("flip_crop", (1, 12, 12)).pre_normalize(image.expand(3000, -1, -1, -1), gen(41))
    pre, _ = build_augment("flip_crop", (1, 12, 12))
    theirs = per_sample(pre, image.expand(1000, -1, -1, -1), 41)
    assert ours.dtype == torch.uint8
    assert_same_histogram(ours[:, 0, 6, 6].long(), theirs[:, 0, 6, 6].long())
    # Crop offsets 0..8 put source row 2..10 under the centre; the flip moves the column to 1..10.
    possible = {12 * r + c for r in range(2, 11) for c in range(1, 11)}
    assert set(ours[:, 0, 6, 6].tolist()) == possible and set(theirs[:, 0, 6, 6].tolist()) <= possible


def test_alternating_flip_pipeline_needs_indices():
    crop_flip = [{"RandomCrop": {"size": 8, "padding": 4}}, "AlternatingHorizontalFlip"]
    augment = BatchAugment.from_spec(crop_flip, (1, 8, 8))
    assert augment.needs_indices and "AlternatingHorizontalFlip" in repr(augment)
    x = random_uint8((16, 1, 8, 8), seed=42)
    with pytest.raises(ValueError, match="indices"):
        augment.pre_normalize(x, gen(0))
    no_crop = BatchAugment.from_spec(["AlternatingHorizontalFlip"], (1, 8, 8))
    indices = torch.arange(16)
    assert torch.equal(no_crop.pre_normalize(x, gen(0), indices=indices, epoch=3), alternating_flip(x, indices, 3))
    assert not BatchAugment.from_spec("flip_crop", (1, 8, 8)).needs_indices


def test_every_mapped_v2_class_builds_its_step_with_default_arguments():
    """The class -> builder table: each entry gives a step named after its class for v2's defaults
    (at the input size), and a subclass is not taken for its base (it may draw differently)."""
    from torchvision.transforms import v2

    from archspec.data.batch_augment import _step_for, step_builders

    required = {v2.RandomCrop: dict(size=(8, 8), padding=2), v2.RandomRotation: dict(degrees=10),
                v2.RandomAffine: dict(degrees=10), v2.RandomResizedCrop: dict(size=(8, 8))}
    for cls in step_builders():
        t = cls(**required.get(cls, {}))
        step = _step_for(t, 8, 8, seed=1)
        assert step is not None and step.label.startswith(cls.__name__), cls
        x = random_uint8((2, 3, 8, 8), seed=41)
        out = step.apply(x, gen(42), torch.arange(2), 0)
        assert out.shape == x.shape and out.dtype == x.dtype

    class MyFlip(v2.RandomHorizontalFlip):
        pass

    assert _step_for(MyFlip(), 8, 8, seed=0) is None
