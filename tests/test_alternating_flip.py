"""AlternatingHorizontalFlip: airbench's alternating flip as a recipe step, on both data paths.

Each test compares an augmented epoch with the same epoch un-augmented (same seed, so the same
order): every image must be exactly its sample or exactly its mirror image.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torchvision.transforms import v2

from archspec.data.alternating_flip import AlternatingHorizontalFlip, augmenting_sample, current_sample
from archspec.data.augment import build_augment, describe_augment
from archspec.data.batch_augment import BatchAugment, alternating_flip, alternating_flips
from archspec.data.loader import AugmentedBatches, AugmentedDeviceBatches, epoch_order, make_loaders
from archspec.errors import ArchspecError
from archspec.recipes import load_recipe

SHAPE = (3, 8, 8)
FLIP = ["AlternatingHorizontalFlip"]


def _loaders(augment, *, seed: int, n: int, data_path: str = "auto", num_workers: int = 0):
    return make_loaders("synthetic", input_shape=SHAPE, num_classes=10, batch_size=16, augment=augment,
                        normalize=False, limit_train=n, limit_test=16, seed=seed, data_path=data_path,
                        num_workers=num_workers)


def _epoch(batches, epoch: int) -> torch.Tensor:
    batches.set_epoch(epoch)
    return torch.cat([x for x, _ in batches])


@functools.cache
def _raw(seed: int, n: int, epoch: int) -> torch.Tensor:
    """The epoch's images without augmentation, in the (seed, epoch) training order."""
    return _epoch(_loaders("none", seed=seed, n=n).train, epoch)


def _flips(augment, *, seed: int, n: int, epoch: int, data_path: str, num_workers: int = 0) -> torch.Tensor:
    """Per dataset index (0..n-1): was that image mirrored in `epoch`? Asserts each image is exactly its
    sample or exactly its mirror image."""
    train = _loaders(augment, seed=seed, n=n, data_path=data_path, num_workers=num_workers).train
    assert isinstance(train, AugmentedDeviceBatches if data_path == "device" else AugmentedBatches)
    x, raw = _epoch(train, epoch), _raw(seed, n, epoch)
    assert (raw != raw.flip(-1)).flatten(1).any(1).all()  # no image is its own mirror image
    mirrored = (x == raw.flip(-1)).flatten(1).all(1)
    unchanged = (x == raw).flatten(1).all(1)
    assert (mirrored ^ unchanged).all()
    flips = torch.empty(n, dtype=torch.bool)
    flips[epoch_order(n, seed=seed, epoch=epoch)] = mirrored
    return flips


@pytest.mark.parametrize("data_path", ["device", "loader"])
def test_every_image_is_seen_once_each_way_over_two_epochs(data_path):
    n = 64
    epoch1 = _flips(FLIP, seed=0, n=n, epoch=1, data_path=data_path)
    epoch2 = _flips(FLIP, seed=0, n=n, epoch=2, data_path=data_path)
    assert torch.equal(epoch1, ~epoch2)
    assert 0.25 < epoch1.double().mean().item() < 0.75  # a half, not all or none
    assert torch.equal(_flips(FLIP, seed=0, n=n, epoch=3, data_path=data_path), epoch1)


@pytest.mark.parametrize("augment", [FLIP, ["Normalize", "AlternatingHorizontalFlip"]],
                         ids=["before-normalize", "after-normalize"])
def test_both_paths_flip_the_same_images(augment):
    for seed, epoch in ((0, 1), (3, 2)):
        device = _flips(augment, seed=seed, n=64, epoch=epoch, data_path="device")
        loader = _flips(augment, seed=seed, n=64, epoch=epoch, data_path="loader")
        assert torch.equal(device, loader)
        expected = torch.tensor([alternating_flips(i, epoch, seed=seed) for i in range(64)])
        assert torch.equal(device, expected)


def test_worker_processes_flip_the_same_images():
    """__getitem__ runs in the worker, which must see the sample's (seed, epoch, index) too."""
    device = _flips(FLIP, seed=5, n=32, epoch=1, data_path="device")
    assert torch.equal(_flips(FLIP, seed=5, n=32, epoch=1, data_path="loader", num_workers=1), device)


def test_another_seed_flips_another_half():
    n = 256
    seed0 = _flips(FLIP, seed=0, n=n, epoch=1, data_path="device")
    seed1 = _flips(FLIP, seed=1, n=n, epoch=1, data_path="device")
    for flips in (seed0, seed1):
        assert 0.35 < flips.double().mean().item() < 0.65
    assert 0.3 < (seed0 != seed1).double().mean().item() < 0.7


def test_per_sample_decision_is_the_batched_hash():
    indices = torch.arange(1000)
    x = torch.arange(2, dtype=torch.uint8).view(1, 1, 1, 2).expand(1000, -1, -1, -1)
    for seed, epoch in ((0, 1), (0, 2), (7, 5)):
        batched = alternating_flip(x, indices, epoch, seed=seed)[:, 0, 0, 0] == 1
        assert batched.tolist() == [alternating_flips(i, epoch, seed=seed) for i in range(1000)]


def test_transform_reads_the_current_sample_and_does_nothing_outside_one():
    image = torch.arange(12, dtype=torch.uint8).view(1, 3, 4)
    step = AlternatingHorizontalFlip()
    assert current_sample() is None and torch.equal(step(image), image)
    seen = set()
    for index in range(8):
        with augmenting_sample(seed=2, epoch=1, index=index) as sample:
            assert current_sample() == sample
            out = step(image)
        assert current_sample() is None
        flipped = alternating_flips(index, 1, seed=2)
        assert torch.equal(out, image.flip(-1) if flipped else image)
        seen.add(flipped)
    assert seen == {True, False}


def test_list_step_builds_and_maps_to_the_batched_flip():
    augment = [{"RandomCrop": {"size": 8, "padding": 2, "padding_mode": "reflect"}}, "AlternatingHorizontalFlip"]
    pre, post = build_augment(augment, SHAPE)  # the dry run on a blank image, outside any sample
    assert post is None and [type(t) for t in pre.transforms] == [v2.RandomCrop, AlternatingHorizontalFlip]
    batched = BatchAugment.from_spec(augment, SHAPE, seed=4)
    assert batched.needs_indices and "AlternatingHorizontalFlip(seed=4)" in repr(batched)
    assert describe_augment(augment).endswith(", AlternatingHorizontalFlip")
    assert build_augment([{"AlternatingHorizontalFlip": None}], SHAPE)[0] is not None


def test_recipe_file_using_it_loads_and_trains_on_the_device_path(tmp_path):
    path = tmp_path / "alt.yaml"
    path.write_text("extends: quick\naugment:\n  - {RandomCrop: {size: 8, padding: 1}}\n"
                    "  - AlternatingHorizontalFlip\nseed: 3\n")
    recipe = load_recipe(path)
    assert recipe.augment[1] == "AlternatingHorizontalFlip"
    bundle = _loaders(recipe.augment, seed=int(recipe.seed), n=16)
    assert isinstance(bundle.train, AugmentedDeviceBatches)  # "auto" keeps it on the device
    bundle.train.set_epoch(1)
    assert sum(len(x) for x, _ in bundle.train) == 16


def test_fast_recipe_uses_it():
    recipe = load_recipe("fast")
    assert "AlternatingHorizontalFlip" in recipe.augment and "RandomHorizontalFlip" not in recipe.augment
    batched = BatchAugment.from_spec(recipe.augment, (3, 32, 32), seed=int(recipe.seed))
    assert batched is not None and batched.needs_indices


@pytest.mark.parametrize("step", [{"AlternatingHorizontalFlip": {"p": 1.0}}, {"AlternatingHorizontalFlip": 0.5},
                                  {"AlternatingHorizontalFlip": [1]}])
def test_arguments_are_refused_with_the_step_path(tmp_path, step):
    augment = ["RandomVerticalFlip", step]
    with pytest.raises(ArchspecError, match="AlternatingHorizontalFlip takes no arguments") as e:
        build_augment(augment, SHAPE)
    assert e.value.path == "augment[1]"
    with pytest.raises(ArchspecError, match="takes no arguments") as e:
        _loaders(augment, seed=0, n=16)
    assert e.value.path == "augment[1]"


def test_misspelt_name_suggests_it():
    with pytest.raises(ArchspecError, match='did you mean "AlternatingHorizontalFlip"') as e:
        build_augment(["AlternatingHorizontalFlp"], SHAPE)
    assert e.value.path == "augment[0]"
