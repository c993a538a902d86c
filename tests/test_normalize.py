"""archspec.data.normalize: the one normalisation the loaders, the batched augmentation and the
whitening init share."""

from __future__ import annotations

import pytest
import torch

from archspec.data.normalize import normalize

MEAN = [0.4, 0.5, 0.6]
STD = [0.2, 0.25, 0.3]


def _by_hand(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty(x.shape, dtype=torch.float32)
    for c in range(3):
        out[..., c, :, :] = (x[..., c, :, :].double() / 255 - MEAN[c]) / STD[c]
    return out


@pytest.mark.parametrize("shape", [(3,), (3, 1, 1), (1, 3, 1, 1)])
def test_uint8_images_are_scaled_then_normalised_per_channel(shape):
    x = torch.randint(0, 256, (5, 3, 4, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = normalize(x, torch.tensor(MEAN).view(shape), torch.tensor(STD).view(shape))
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out, _by_hand(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(normalize(x[0], MEAN, STD), out[0])  # one image, lists of floats


def test_float_images_are_taken_as_0_to_1_and_never_modified():
    x = torch.rand(4, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    before = x.clone()
    out = normalize(x, MEAN, STD)
    assert torch.equal(x, before) and out.data_ptr() != x.data_ptr()
    torch.testing.assert_close(out, (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1))
    half = x.to(torch.bfloat16)
    assert normalize(half, MEAN, STD).dtype == torch.float32


def test_no_stats_only_scales():
    x = torch.tensor([[[[0, 51, 255]]]], dtype=torch.uint8)
    assert normalize(x).flatten().tolist() == pytest.approx([0.0, 0.2, 1.0])
    assert normalize(x, mean=[0.5]).flatten().tolist() == pytest.approx([-0.5, -0.3, 0.5])


def test_the_device_loader_feeds_the_model_normalised_images():
    from archspec.catalog import dataset_info
    from archspec.data.datasets import ImageTensors
    from archspec.data.loader import DeviceBatches

    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    data = ImageTensors(images, torch.arange(10) % 3, dataset_info("cifar10"), ("a", "b", "c"))
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    batches = DeviceBatches(data, batch_size=4, mean=mean, std=std, device=torch.device("cpu"), shuffle=False)
    x = torch.cat([xb for xb, _ in batches])
    torch.testing.assert_close(x, _by_hand(images), atol=1e-6, rtol=0)
