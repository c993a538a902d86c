"""Augmentation presets and the explicit torchvision.transforms.v2 list form."""

from __future__ import annotations

import pytest
import torch
import yaml
from torchvision.transforms import v2

from archspec.data.augment import AUGMENT_PRESETS, augment_steps, build_augment, describe_augment
from archspec.data.loader import make_loaders
from archspec.errors import ArchspecError

SHAPES = [(3, 32, 32), (1, 28, 28)]


def _image(shape, seed=0):
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("preset", sorted(set(AUGMENT_PRESETS) - {"none"}))
def test_presets_keep_shape_and_dtype_and_change_images(preset, shape):
    pre, post = build_augment(preset, shape)
    assert pre is not None
    image = _image(shape)
    changed = False
    for seed in range(8):
        torch.manual_seed(seed)
        out = pre(image)
        assert out.shape == shape and out.dtype == torch.uint8
        changed |= not torch.equal(out, image)
        if post is not None:
            normalised = (out.float() / 255 - 0.5) / 0.5
            after = post(normalised)
            assert after.shape == shape and after.dtype == torch.float32
    assert changed


def test_none_means_no_steps():
    assert build_augment("none", (3, 32, 32)) == (None, None)
    assert build_augment(None, (3, 32, 32)) == (None, None)
    assert build_augment([], (3, 32, 32)) == (None, None)


def test_heavy_matches_the_reports_and_erases_after_normalisation():
    pre, post = build_augment("heavy", (3, 32, 32))
    kinds = [type(t) for t in pre.transforms]
    assert kinds == [v2.RandomCrop, v2.RandomHorizontalFlip, v2.RandomRotation, v2.RandomAffine, v2.ColorJitter]
    crop, jitter = pre.transforms[0], pre.transforms[4]
    assert crop.padding_mode == "reflect" and crop.size == (32, 32)
    assert jitter.saturation is not None and jitter.hue is not None
    assert [type(t) for t in post.transforms] == [v2.RandomErasing]
    assert post.transforms[0].p == 0.5 and post.transforms[0].scale == (0.02, 0.33)


def test_grey_images_get_no_saturation_or_hue_jitter_and_digit_presets_do_not_flip():
    pre, _ = build_augment("heavy", (1, 28, 28))
    jitter = pre.transforms[-1]
    assert isinstance(jitter, v2.ColorJitter) and jitter.saturation is None and jitter.hue is None
    for preset in ("heavy_no_flip", "shift", "crop"):
        steps, _ = augment_steps(preset, (1, 28, 28))
        assert not any(isinstance(t, v2.RandomHorizontalFlip) for t in steps)
    assert augment_steps("crop", (1, 28, 28))[0][0].padding == [2, 2, 2, 2]
    assert augment_steps("crop", (3, 32, 32))[0][0].padding == [4, 4, 4, 4]


def test_explicit_list_from_yaml():
    recipe = yaml.safe_load("augment: [{RandomCrop: {size: 32, padding: 4}}, RandomHorizontalFlip, "
                            "{RandomRotation: 10}, {RandomAffine: {degrees: 0, translate: [0.1, 0.1]}}]")
    pre, post = build_augment(recipe["augment"], (3, 32, 32))
    assert post is None
    crop, flip, rotation, affine = pre.transforms
    assert isinstance(crop, v2.RandomCrop) and crop.size == (32, 32) and crop.padding == [4, 4, 4, 4]
    assert isinstance(flip, v2.RandomHorizontalFlip) and rotation.degrees == [-10.0, 10.0]
    assert affine.translate == (0.1, 0.1)
    assert pre(_image((3, 32, 32))).shape == (3, 32, 32)


def test_normalize_marker_splits_the_list():
    pre, post = build_augment(["RandomHorizontalFlip", "Normalize", {"RandomErasing": {"p": 1.0}}], (3, 8, 8))
    assert [type(t) for t in pre.transforms] == [v2.RandomHorizontalFlip]
    assert [type(t) for t in post.transforms] == [v2.RandomErasing]
    with pytest.raises(ArchspecError, match="a bare Normalize only marks"):
        build_augment([{"Normalize": {"mean": [0.5], "std": [0.5]}}], (3, 8, 8))
    with pytest.raises(ArchspecError, match="Normalize appears twice"):
        build_augment(["Normalize", "Normalize"], (3, 8, 8))


@pytest.mark.parametrize("marker_first, expected", [(True, 7.0), (False, (7 / 255 - 0.5) / 0.5)])
def test_steps_after_normalize_see_normalised_values(marker_first, expected):
    """RandomErasing's fill value is in normalised units after the marker, in pixel units before it."""
    erase = {"RandomErasing": {"p": 1.0, "value": 7, "scale": [0.2, 0.2], "ratio": [1.0, 1.0]}}
    steps = ["Normalize", erase] if marker_first else [erase]
    bundle = make_loaders("synthetic", input_shape=(3, 16, 16), num_classes=10, batch_size=8, augment=steps,
                          normalize={"mean": 0.5, "std": 0.5}, limit_train=8, num_workers=0)
    x, _ = next(iter(bundle.train))
    erased = (x - expected).abs() < 1e-5
    assert 0.1 < erased.float().mean() < 0.4  # about 20% of each image, and only there


def test_unknown_transform_suggests_a_name():
    with pytest.raises(ArchspecError, match='unknown transform "RandomCorp" \\(did you mean "RandomCrop"\\?\\)') as e:
        build_augment(["RandomHorizontalFlip", {"RandomCorp": {"size": 32}}], (3, 32, 32))
    assert e.value.path == "augment[1]"
    with pytest.raises(ArchspecError, match='unknown transform "functional"'):
        build_augment(["functional"], (3, 32, 32))  # a v2 attribute, but not a Transform class


def test_unknown_preset_suggests_a_name():
    with pytest.raises(ArchspecError, match='unknown augment preset "flipcrop" \\(did you mean "flip_crop"\\?\\)'):
        build_augment("flipcrop", (3, 32, 32))
    with pytest.raises(ArchspecError, match="unknown augment preset"):
        describe_augment("heavvy")


@pytest.mark.parametrize("augment, message", [
    ([{"RandomCrop": {"sise": 32}}], "RandomCrop: .*sise"),
    ([{"RandomCrop": {"size": 40}}], "fails on a 3x32x32 image"),
    ([{"Resize": {"size": 16}}], "turns 3x32x32 images into 3x16x16"),
    ([{"RandomCrop": {"size": 32}, "RandomHorizontalFlip": None}], "write a step as a transform name"),
    ([3], "write a step as a transform name"),
    ({"RandomCrop": 32}, "augment must be a preset name or a list"),
])
def test_bad_steps_are_archspec_errors(augment, message):
    with pytest.raises(ArchspecError, match=message):
        build_augment(augment, (3, 32, 32))


def test_building_does_not_move_the_global_rng():
    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    build_augment("heavy", (3, 32, 32))
    assert torch.equal(torch.rand(4), expected)


def test_describe_augment_is_one_line():
    assert describe_augment(None) == describe_augment("none") == "none"
    assert describe_augment("flip_crop") == f"flip_crop ({AUGMENT_PRESETS['flip_crop']})"
    text = describe_augment([{"RandomCrop": {"size": 32, "padding": 4}}, "RandomHorizontalFlip", {"RandomRotation": 10}])
    assert text == "RandomCrop(size=32, padding=4), RandomHorizontalFlip, RandomRotation(10)"
    assert all("\n" not in describe_augment(name) for name in AUGMENT_PRESETS)
