"""`AlternatingHorizontalFlip`, airbench's flip as a per-sample torchvision.transforms.v2 step.

A fixed pseudo-random half of the dataset (a hash of each sample's dataset index and the recipe's
seed) is mirrored on even epochs and the other half on odd epochs, so over any two consecutive epochs
every image is seen once each way. The decision is `batch_augment.alternating_flips`, the same hash
the batched path (`batch_augment.alternating_flip`) uses, so both paths flip the same samples.

A v2 transform sees only the image, so the sample being augmented is handed to it explicitly:

    with augmenting_sample(seed=seed, epoch=epoch, index=index):
        x = compose(x)

`loader._AugmentedImages.__getitem__` does this for every sample (in the worker process that runs
it). Outside such a block, e.g. `build_augment`'s dry run on a blank image, the step leaves the
image as it is.

This module imports torchvision; `archspec.data.augment` imports it only when a recipe uses the step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from archspec.data.batch_augment import alternating_flips


@dataclass(frozen=True)
class Sample:
    """The sample being augmented: the hash seed, the epoch (from 1 in training) and its dataset index."""

    seed: int
    epoch: int
    index: int


_CURRENT: ContextVar[Sample | None] = ContextVar("archspec_augmenting_sample", default=None)


@contextlib.contextmanager
def augmenting_sample(*, seed: int, epoch: int, index: int) -> Iterator[Sample]:
    """Within the block, per-sample steps that depend on the sample (AlternatingHorizontalFlip) read
    (seed, epoch, index) from here."""
    sample = Sample(int(seed), int(epoch), int(index))
    token = _CURRENT.set(sample)
    try:
        yield sample
    finally:
        _CURRENT.reset(token)


def current_sample() -> Sample | None:
    """The sample set by the innermost `augmenting_sample` block, or None outside one."""
    return _CURRENT.get()


class AlternatingHorizontalFlip(v2.Transform):
    """Mirror the image left-right when `alternating_flips(index, epoch, seed=seed)` says so for the
    current sample (see `augmenting_sample`); outside a sample block, leave it unchanged. Takes no
    arguments: the seed is the run's, the epoch and index the sample's."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        sample = _CURRENT.get()
        flip = sample is not None and alternating_flips(sample.index, sample.epoch, seed=sample.seed)
        return {"flip": flip}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.horizontal_flip, inpt) if params["flip"] else inpt
