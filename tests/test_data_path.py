"""The device-resident training path with batched augmentation (make_loaders data_path="auto"/"device").

Tiny synthetic data on the CPU: the same code runs on a GPU with the data and generator there.
"""

from __future__ import annotations

import io
import textwrap

import pytest
import torch
from rich.console import Console

import archspec
from archspec.data import loader as loader_module
from archspec.data.loader import AugmentedBatches, AugmentedDeviceBatches, DeviceBatches, make_loaders
from archspec.errors import ArchspecError
from archspec.recipes import load_recipe
from archspec.train.checkpoint import load_checkpoint
from archspec.train.loop import train

from .conftest import tiny_spec_text

pytestmark = pytest.mark.usefixtures("no_run_plots")  # no test here looks at a run's curves.png / lr.png

SHAPE = (3, 16, 16)


def _bundle(augment="flip_crop", **kwargs):
    kwargs.setdefault("limit_train", 32)
    return make_loaders("synthetic", input_shape=SHAPE, num_classes=10, batch_size=8, augment=augment,
                        normalize=False, **kwargs)


def _epoch(batches, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    batches.set_epoch(epoch)
    xs, ys = zip(*batches, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_flip_crop_uses_the_device_path_and_differs_per_epoch_but_not_per_run():
    bundle = _bundle()
    assert isinstance(bundle.train, AugmentedDeviceBatches)
    x1, y1 = _epoch(bundle.train, 1)
    x1_again, y1_again = _epoch(_bundle().train, 1)  # a fresh loader: a resumed run
    assert torch.equal(x1, x1_again) and torch.equal(y1, y1_again)
    x2, _ = _epoch(bundle.train, 2)
    assert not torch.equal(x1, x2)
    assert x1.shape == (32, *SHAPE) and x1.dtype == torch.float32

    # Same order as the un-augmented path, and each image is its sample moved by at most the crop
    # padding (4 px) and maybe mirrored: compare pixel sets of the interior, which a shift keeps.
    plain = _bundle(augment="none")
    assert isinstance(plain.train, DeviceBatches)
    raw, y_raw = _epoch(plain.train, 1)
    assert torch.equal(y1, y_raw)
    assert not torch.equal(x1, raw)

    def found(aug, src):
        candidates = [src, src.flip(-1)]
        for c in candidates:
            padded = torch.nn.functional.pad(c, (4, 4, 4, 4))
            for dy in range(9):
                for dx in range(9):
                    if torch.equal(padded[:, dy:dy + 16, dx:dx + 16], aug):
                        return True
        return False

    assert all(found(x1[i], raw[i]) for i in range(len(raw)))


def test_batched_augmentation_leaves_the_training_rng_alone():
    bundle = _bundle("heavy")
    assert isinstance(bundle.train, AugmentedDeviceBatches)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    _epoch(bundle.train, 1)
    assert torch.equal(torch.rand(3), expected)


def test_data_path_switch():
    assert isinstance(_bundle(data_path="loader", num_workers=0).train, AugmentedBatches)
    assert isinstance(_bundle(data_path="device").train, AugmentedDeviceBatches)
    # RandomInvert has no batched equivalent: auto falls back to the DataLoader, device refuses.
    assert isinstance(_bundle(["RandomInvert"], num_workers=0).train, AugmentedBatches)
    with pytest.raises(ArchspecError, match="no batched"):
        _bundle(["RandomInvert"], data_path="device")
    with pytest.raises(ArchspecError, match='unknown data path "gpu"'):
        _bundle(data_path="gpu")


def test_sharded_device_path_covers_the_training_set_once():
    labels = [_epoch(_bundle(rank=r, world_size=2, limit_train=24).train, 3)[1] for r in (0, 1)]
    whole = _epoch(_bundle(augment="none", limit_train=24).train, 3)[1]
    assert torch.equal(torch.sort(torch.cat(labels)).values, torch.sort(whole).values)


TINY = tiny_spec_text(size=16, pool=4)


def test_training_on_the_device_path_runs_and_resumes_exactly(tmp_path, monkeypatch):
    used = []
    original = AugmentedDeviceBatches.__iter__

    def spy(self):
        used.append(self.epoch)
        return original(self)

    monkeypatch.setattr(loader_module.AugmentedDeviceBatches, "__iter__", spy)
    (tmp_path / "tiny.yaml").write_text(textwrap.dedent(TINY).lstrip())
    spec = archspec.load_spec(tmp_path / "tiny.yaml")
    recipe = load_recipe("quick", overrides=["augment=flip_crop"], batch_size=16)
    common = dict(device="cpu", limit_train=48, limit_test=16, console=Console(file=io.StringIO()),
                  progress=False)
    one = train(spec, recipe, run_dir=tmp_path / "one", **common, stop_after_epoch=1)
    assert one.status == "interrupted" and one.metrics[0]["train_loss"] > 0
    assert used == [1]
    resumed = train(spec, recipe, resume=tmp_path / "one", **common)
    straight = train(spec, recipe, run_dir=tmp_path / "straight", **common)
    assert resumed.status == straight.status == "completed"
    assert [r["train_loss"] for r in resumed.metrics] == [r["train_loss"] for r in straight.metrics]
    a, b = load_checkpoint(tmp_path / "one" / "last.pt"), load_checkpoint(tmp_path / "straight" / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key])
