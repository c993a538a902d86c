"""Batches for training and evaluation: `make_loaders(...) -> DataBundle`.

Three paths:

- No augmentation: the whole uint8 dataset is moved to the device once and batches are index
  slices, converted to float and normalised on the device. For CIFAR/MNIST-sized data this is much
  faster than a DataLoader (no workers, no collation, no host-to-device copy per step).
- Augmentation with batched equivalents (`archspec.data.batch_augment`, e.g. flip_crop, heavy): the
  same device-resident data, each batch augmented on the device with per-sample random draws
  (`AugmentedDeviceBatches`). Chosen by `data_path="auto"` for built-in datasets that fit.
- Otherwise (imagefolder, very large sets, steps with no batched equivalent, `data_path="loader"`):
  a torch DataLoader over a Dataset that applies the v2 transforms per sample on uint8 tensors in
  worker processes, then normalises, then applies the post-normalisation steps.

In both paths the training order is a pure function of (seed, epoch): `train.set_epoch(e)` before
iterating gives the same batches whether or not the run was interrupted and resumed. The random
draws of augmentation are seeded per sample from (seed, epoch, index) as well, so they do not depend
on the number of workers or on what ran before. Iterating without calling `set_epoch` moves on to the
next epoch by itself.

`rank`/`world_size` shard the training set like torch's DistributedSampler: each epoch's
permutation is padded (by wrapping around) to a multiple of `world_size` and dealt round-robin, so
every rank gets the same number of batches. The test set is not sharded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from archspec.catalog import DatasetInfo
from archspec.data.augment import build_augment
from archspec.data.datasets import IMAGEFOLDER_PREFIX, ImageTensors, load_dataset
from archspec.data.normalize import normalize
from archspec.data.seeding import derive_seed
from archspec.errors import ArchspecError


@dataclass
class DataBundle:
    """What a training run needs from the data side. `num_train`/`num_test` count samples after
    `limit_*` and before sharding."""

    train: DeviceBatches | AugmentedDeviceBatches | AugmentedBatches
    test: DeviceBatches
    info: DatasetInfo
    num_train: int
    num_test: int
    class_names: tuple[str, ...]


def epoch_order(n: int, *, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """The sample indices `rank` visits in `epoch`, in order (CPU int64)."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "shuffle", epoch))
    order = torch.randperm(n, generator=generator)
    per_rank = math.ceil(n / world_size)
    total = per_rank * world_size
    if total > n:  # pad by wrapping around, so every rank sees the same number of samples
        order = order.repeat(math.ceil(total / n))[:total]
    return order[rank:total:world_size]


def _num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else math.ceil(n / batch_size)


class DeviceBatches:
    """Batches sliced out of one uint8 tensor resident on the device."""

    def __init__(self, data: ImageTensors, *, batch_size: int, mean: torch.Tensor, std: torch.Tensor,
                 device: torch.device, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1) -> None:
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.mean = mean.to(device)
        self.std = std.to(device)
        self.device = device
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        n = len(data)
        self.num_samples = math.ceil(n / world_size) if shuffle else n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def raw_images(self, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first `count` images as stored (uint8, un-augmented, not sharded) and the [C, 1, 1]
        mean/std that normalise them: what data-dependent init (`init: whiten`) computes from."""
        return self.images[:count], self.mean, self.std

    def __len__(self) -> int:
        return _num_batches(self.num_samples, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        if self.shuffle:
            order = epoch_order(len(self.labels), seed=self.seed, epoch=epoch, rank=self.rank,
                                world_size=self.world_size).to(self.device)
        else:
            order = None
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.num_samples)
            if order is None:
                x, y = self.images[lo:hi], self.labels[lo:hi]
            else:
                index = order[lo:hi]
                x, y = self.images[index], self.labels[index]
            yield normalize(x, self.mean, self.std), y


class AugmentedDeviceBatches(DeviceBatches):
    """The device-resident path with augmentation: each batch is sliced out of the uint8 tensor on the
    device and augmented there by a `BatchAugment` (one set of batched ops per batch, per-sample random
    draws). The draws come from a generator on the device seeded from (seed, epoch, rank) when the
    epoch starts, so an epoch's images are a pure function of those and a resumed run replays them."""

    def __init__(self, data: ImageTensors, *, augment, **kwargs) -> None:
        super().__init__(data, shuffle=True, **kwargs)
        self.augment = augment

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = epoch_order(len(self.labels), seed=self.seed, epoch=epoch, rank=self.rank,
                            world_size=self.world_size).to(self.device)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(derive_seed(self.seed, "device-augment", epoch, self.rank))
        for b in range(len(self)):
            index = order[b * self.batch_size:min((b + 1) * self.batch_size, self.num_samples)]
            x = self.augment(self.images[index], self.mean, self.std, generator, indices=index, epoch=epoch)
            yield x, self.labels[index]


class _AugmentedImages(torch.utils.data.Dataset):
    """Per-sample augmentation. Items are addressed as (epoch, index) so the random draws can be
    seeded from (seed, epoch, index): reproducible across resumes and worker counts."""

    def __init__(self, data: ImageTensors, pre, post, mean: torch.Tensor, std: torch.Tensor, seed: int) -> None:
        self.images = data.images
        self.labels = data.labels
        self.pre, self.post = pre, post
        self.mean, self.std = mean, std
        self.seed = seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        from archspec.data.alternating_flip import augmenting_sample  # imports torchvision, loaded by now

        epoch, index = key
        # fork_rng: with num_workers=0 this runs in the training process, whose RNG must not move.
        # Only the CPU generator is seeded (the transforms run on CPU tensors); torch.manual_seed would
        # also reseed every accelerator and cost ~100x more per sample. augmenting_sample tells steps
        # that depend on the sample (AlternatingHorizontalFlip) its (seed, epoch, index).
        with torch.random.fork_rng(devices=[]), augmenting_sample(seed=self.seed, epoch=epoch, index=index):
            torch.default_generator.manual_seed(derive_seed(self.seed, "augment", epoch, index))
            x = self.images[index]
            if self.pre is not None:
                x = self.pre(x)
            x = normalize(x, self.mean, self.std)
            if self.post is not None:
                x = self.post(x)
        return x, self.labels[index]


class _EpochSampler(torch.utils.data.Sampler):
    """Yields (epoch, index) in `epoch_order`; runs in the main process even with persistent workers."""

    def __init__(self, n: int, seed: int, rank: int, world_size: int) -> None:
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = epoch_order(self.n, seed=self.seed, epoch=self.epoch, rank=self.rank, world_size=self.world_size)
        return iter([(self.epoch, int(i)) for i in order])


class AugmentedBatches:
    """Training batches from a DataLoader that augments per sample, moved to `device`."""

    def __init__(self, data: ImageTensors, *, pre, post, batch_size: int, mean: torch.Tensor, std: torch.Tensor,
                 device: torch.device, seed: int, num_workers: int, drop_last: bool, rank: int,
                 world_size: int) -> None:
        self.device = device
        self.seed = seed
        self.epoch = 0
        self.sampler = _EpochSampler(len(data), seed, rank, world_size)
        self.num_samples = len(self.sampler)
        self.generator = torch.Generator()
        self.loader = torch.utils.data.DataLoader(
            _AugmentedImages(data, pre, post, mean, std, seed),
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            drop_last=drop_last,
            generator=self.generator,
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def raw_images(self, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As `DeviceBatches.raw_images`: the first `count` stored images (on the CPU) and mean/std."""
        images = self.loader.dataset
        return images.images[:count], images.mean, images.std

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        self.sampler.epoch = epoch
        self.generator.manual_seed(derive_seed(self.seed, "loader", epoch))
        non_blocking = self.device.type == "cuda"
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)


def _mean_std(normalize: Any, info: DatasetInfo, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean/std as [C, 1, 1] tensors: True -> the dataset's, False -> none (0 and 1),
    {"mean": [...], "std": [...]} -> those (one number, or a one-item list, applies to every channel)."""
    if normalize is True:
        mean, std = info.mean, info.std
    elif normalize is False or normalize is None:
        mean, std = (0.0,) * channels, (1.0,) * channels
    elif isinstance(normalize, Mapping):
        extra = set(normalize) - {"mean", "std"}
        if extra or not {"mean", "std"} <= set(normalize):
            raise ArchspecError('normalize needs exactly the keys "mean" and "std"', path="normalize")
        mean, std = normalize["mean"], normalize["std"]
    else:
        raise ArchspecError(f"normalize must be true, false or {{mean: [...], std: [...]}}, got {normalize!r}",
                            path="normalize")
    values = []
    for key, value in (("mean", mean), ("std", std)):
        value = [value] if isinstance(value, int | float) else list(value)
        if len(value) == 1:
            value = value * channels
        if len(value) != channels or not all(isinstance(v, int | float) for v in value):
            raise ArchspecError(f"{key} needs one number for all channels or {channels}, one per channel; "
                                f"got {value!r}", path=f"normalize.{key}")
        values.append(torch.tensor(value, dtype=torch.float32).view(channels, 1, 1))
    if (values[1] <= 0).any():
        raise ArchspecError("std values must be > 0", path="normalize.std")
    return values[0], values[1]


def _limited(data: ImageTensors, limit: int | None, seed: int, split: str) -> ImageTensors:
    """The first `limit` samples of a seeded permutation, dealt class by class (round robin), so the
    subset is as class-balanced as the data allows. Kept in dataset order."""
    n = len(data)
    if limit is None or limit >= n:
        return data
    if limit < 1:
        raise ArchspecError(f"limit_{split} must be at least 1, got {limit}")
    generator = torch.Generator().manual_seed(derive_seed(seed, "limit", split))
    perm = torch.randperm(n, generator=generator)
    labels = data.labels[perm]
    by_class = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank_in_class = torch.empty(n, dtype=torch.int64)
    rank_in_class[by_class] = torch.arange(n) - starts[labels[by_class]]
    chosen = perm[torch.argsort(rank_in_class, stable=True)[:limit]].sort().values
    return ImageTensors(data.images[chosen], data.labels[chosen], data.info, data.class_names)


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(v)) for v in shape)


def _check_matches(dataset: str, data: ImageTensors, input_shape, num_classes) -> None:
    actual = tuple(int(v) for v in data.images.shape[1:])
    hint = (f"load the spec with this dataset (e.g. --data {dataset}) so its shapes are re-inferred, "
            "or choose a dataset that matches the spec")
    if input_shape is not None and tuple(int(v) for v in input_shape) != actual:
        raise ArchspecError(f'dataset "{dataset}" has {_shape_text(actual)} images but the model expects '
                            f"{_shape_text(input_shape)}", hint=hint)
    if num_classes is not None and int(num_classes) != data.info.num_classes:
        raise ArchspecError(f'dataset "{dataset}" has {data.info.num_classes} classes but the model has '
                            f"{num_classes} outputs", hint=hint)


DATA_PATHS = ("auto", "device", "loader")
DEVICE_DATA_MAX_BYTES = 2 << 30  # "auto" keeps training sets up to this size (uint8) on the device


def _batched_augment(dataset: str, augment: Any, train: ImageTensors, data_path: str, seed: int):
    """The BatchAugment for the device path, or None for the DataLoader path (see make_loaders)."""
    from archspec.data.batch_augment import BatchAugment

    if data_path == "loader":
        return None
    shape = tuple(int(v) for v in train.images.shape[1:])
    batched = BatchAugment.from_spec(augment, shape, seed=seed)
    if data_path == "device":
        if batched is None:
            raise ArchspecError("this augment has a step with no batched (device) equivalent",
                                path="augment", hint='use data_path "auto" or "loader" for it')
        return batched
    fits = train.images.numel() * train.images.element_size() <= DEVICE_DATA_MAX_BYTES
    return batched if fits and not dataset.startswith(IMAGEFOLDER_PREFIX) else None


@dataclass
class TestData:
    """The test split alone, for evaluation (`make_test_loader`)."""

    test: DeviceBatches
    info: DatasetInfo
    num_test: int
    class_names: tuple[str, ...]


def make_test_loader(
    dataset: str,
    *,
    input_shape: Sequence[int] | None,
    num_classes: int | None,
    batch_size: int,
    normalize: bool | Mapping = True,
    data_dir: Path | str | None = None,
    download: bool = True,
    limit_test: int | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> TestData:
    """Only the test batches, as `make_loaders(...).test` would give them (same subset for the same
    `limit_test` and seed, same normalisation): `archspec eval` need not decode the training split."""
    if batch_size < 1:
        raise ArchspecError("batch sizes must be at least 1")
    device = torch.device(device)
    test = load_dataset(dataset, "test", data_dir=data_dir, download=download, input_shape=input_shape,
                        num_classes=num_classes, seed=seed)
    _check_matches(dataset, test, input_shape, num_classes)
    test = _limited(test, limit_test, seed, "test")
    mean, std = _mean_std(normalize, test.info, int(test.images.shape[1]))
    batches = DeviceBatches(test, batch_size=batch_size, mean=mean, std=std, device=device, shuffle=False)
    return TestData(batches, test.info, len(test), test.class_names)


def make_loaders(
    dataset: str,
    *,
    input_shape: Sequence[int] | None,
    num_classes: int | None,
    batch_size: int,
    augment: Any = "none",
    normalize: bool | Mapping = True,
    data_dir: Path | str | None = None,
    download: bool = True,
    limit_train: int | None = None,
    limit_test: int | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    num_workers: int | None = None,
    eval_batch_size: int | None = None,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    data_path: str = "auto",
) -> DataBundle:
    """Load `dataset`, check it fits the model, and return train/test batch iterables on `device`.

    `data_path` picks how augmented training batches are made: "device" (batched augmentation on
    the device-resident data; an error when a step has no batched equivalent), "loader" (the
    per-sample torchvision DataLoader), or "auto": device when the dataset is a built-in one of at
    most DEVICE_DATA_MAX_BYTES and `BatchAugment.from_spec` supports every step, else loader.
    """
    if data_path not in DATA_PATHS:
        raise ArchspecError(f'unknown data path "{data_path}"; use one of: {", ".join(DATA_PATHS)}')
    if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
        raise ArchspecError("batch sizes must be at least 1")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ArchspecError(f"rank must be in 0..world_size-1, got rank {rank} of {world_size}")
    device = torch.device(device)
    common = dict(data_dir=data_dir, download=download, input_shape=input_shape, num_classes=num_classes, seed=seed)
    train = load_dataset(dataset, "train", **common)
    test = load_dataset(dataset, "test", **common)
    _check_matches(dataset, train, input_shape, num_classes)
    train = _limited(train, limit_train, seed, "train")
    test = _limited(test, limit_test, seed, "test")

    shape = tuple(int(v) for v in train.images.shape[1:])
    mean, std = _mean_std(normalize, train.info, shape[0])
    pre, post = build_augment(augment, shape)
    eval_size = eval_batch_size or batch_size
    test_batches = DeviceBatches(test, batch_size=eval_size, mean=mean, std=std, device=device, shuffle=False)
    batched = _batched_augment(dataset, augment, train, data_path, seed) if (pre or post) else None
    if pre is None and post is None:
        train_batches = DeviceBatches(train, batch_size=batch_size, mean=mean, std=std, device=device, shuffle=True,
                                      seed=seed, drop_last=drop_last, rank=rank, world_size=world_size)
    elif batched is not None:
        train_batches = AugmentedDeviceBatches(train, augment=batched, batch_size=batch_size, mean=mean, std=std,
                                               device=device, seed=seed, drop_last=drop_last, rank=rank,
                                               world_size=world_size)
    else:
        workers = num_workers if num_workers is not None else max(0, min(4, (os.cpu_count() or 1) - 1))
        train_batches = AugmentedBatches(train, pre=pre, post=post, batch_size=batch_size, mean=mean, std=std,
                                         device=device, seed=seed, num_workers=workers, drop_last=drop_last,
                                         rank=rank, world_size=world_size)
    return DataBundle(train_batches, test_batches, train.info, len(train), len(test), train.class_names)
