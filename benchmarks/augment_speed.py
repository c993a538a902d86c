"""Batched augmentation (archspec.data.batch_augment) versus the per-sample torchvision v2 path, on
CIFAR-sized random uint8 images.

    .venv/bin/python benchmarks/augment_speed.py [--presets flip_crop heavy] [--n 4096] [--batch 512]
        [--per-sample-n 1024]

For each preset it times, on the CPU (and on CUDA when available):
- per-sample: what a DataLoader worker does per image in archspec/data/loader.py (v2 pre-normalisation
  steps on a uint8 CHW tensor, normalise, post-normalisation steps), in one process, on the first
  `--per-sample-n` images (it is slow; the rate does not depend on the count);
- batched: `BatchAugment` on [batch, 3, 32, 32] uint8 tensors on the device, normalisation included.
It prints images/s for both and the ratio, from the median time of a chunk (64 images per-sample, one
batch batched) over `--repeats` passes, so that other load on a shared machine skews it less.

CPU runs use `--threads` torch threads (default 1): a DataLoader worker runs with one thread, and on
a machine shared with other jobs multi-threaded ops stall on their slowest thread, which makes the
batched numbers swing by several times from run to run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from archspec.data.augment import build_augment
from archspec.data.batch_augment import BatchAugment

SHAPE = (3, 32, 32)
MEAN = torch.tensor([0.4914, 0.4822, 0.4465])
STD = torch.tensor([0.2470, 0.2435, 0.2616])


def _median_rate(chunk_times: list[float], chunk_size: int) -> float:
    """Images/s from the median chunk time: a burst of load from other processes on a shared machine
    slows a few chunks, not the median."""
    return chunk_size / statistics.median(chunk_times)


def per_sample_rate(preset: str, images: torch.Tensor, repeats: int, chunk: int = 64) -> float:
    pre, post = build_augment(preset, SHAPE)
    mean, std = MEAN.view(3, 1, 1), STD.view(3, 1, 1)
    times = []
    for _ in range(repeats):
        for lo in range(0, len(images) - chunk + 1, chunk):
            start = time.perf_counter()
            for image in images[lo:lo + chunk]:
                x = pre(image) if pre is not None else image
                x = (x.float() / 255 - mean) / std
                if post is not None:
                    x = post(x)
            times.append(time.perf_counter() - start)
    return _median_rate(times, chunk)


def batched_rate(preset: str, images: torch.Tensor, batch: int, device: torch.device, repeats: int) -> float:
    augment = BatchAugment.from_spec(preset, SHAPE)
    if augment is None:
        raise SystemExit(f"{preset} has no batched pipeline")
    images = images.to(device)
    mean, std = MEAN.to(device), STD.to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    augment(images[:batch], mean, std, generator)  # warm-up (kernel selection, allocator)
    times = []
    for _ in range(repeats):
        for lo in range(0, len(images) - batch + 1, batch):
            start = time.perf_counter()
            augment(images[lo:lo + batch], mean, std, generator)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return _median_rate(times, batch)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+", default=["flip_crop", "heavy"])
    ap.add_argument("--n", type=int, default=4096, help="images per pass")
    ap.add_argument("--per-sample-n", type=int, default=1024, help="images per pass of the per-sample path")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    images = torch.randint(0, 256, (args.n, *SHAPE), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.n} images of "
          f"{'x'.join(map(str, SHAPE))}, batch {args.batch}")
    for preset in args.presets:
        slow = per_sample_rate(preset, images[:args.per_sample_n], args.repeats)
        print(f"{preset:12s} per-sample v2 (cpu, 1 process) {slow:12,.0f} images/s")
        for device in devices:
            fast = batched_rate(preset, images, args.batch, device, args.repeats)
            print(f"{preset:12s} BatchAugment ({device.type:4s})            {fast:12,.0f} images/s   "
                  f"{fast / slow:6.1f}x")


if __name__ == "__main__":
    main()
