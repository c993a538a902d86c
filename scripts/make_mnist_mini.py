#!/usr/bin/env python3
"""Build archspec/data/mnist_mini.npz: 6,000 train / 1,000 test MNIST digits, class-balanced.

Why: `mnist-mini` lets archspec train a real dataset with no download (tests, demos, offline
machines) while staying small enough to ship inside the package (< 2 MB).

Sampling: for each digit, 600 training and 100 test images drawn without replacement by
numpy.random.default_rng(SEED); kept in their original MNIST order. The chosen MNIST indices are
stored too (`train_index`, `test_index`) so anyone can check the subset against the full set.

Usage: python scripts/make_mnist_mini.py [--source ../shared/data/mnist.npz] [--out archspec/data/mnist_mini.npz]
The source is an .npz with uint8 x_train (60000,28,28), y_train, x_test (10000,28,28), y_test.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

SEED = 0
PER_CLASS = {"train": 600, "test": 100}
MAX_BYTES = 2 * 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


def balanced_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in range(10)]
    return np.sort(np.concatenate(picks))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "mnist.npz")
    ap.add_argument("--out", type=Path, default=REPO / "archspec" / "data" / "mnist_mini.npz")
    args = ap.parse_args()

    rng = np.random.default_rng(SEED)
    arrays = {}
    with np.load(args.source, allow_pickle=False) as src:
        for split in ("train", "test"):
            x, y = src[f"x_{split}"], src[f"y_{split}"]
            index = balanced_indices(y, PER_CLASS[split], rng)
            arrays[f"x_{split}"] = x[index].astype(np.uint8)
            arrays[f"y_{split}"] = y[index].astype(np.uint8)
            arrays[f"{split}_index"] = index.astype(np.int32)

    # Written atomically: temp file in the same folder, fsync, rename.
    fd, tmp = tempfile.mkstemp(prefix=".mnist_mini.", suffix=".npz", dir=args.out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        size = os.path.getsize(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; this file ships in the package
        if size >= MAX_BYTES:
            raise SystemExit(f"{args.out}: {size} bytes, over the {MAX_BYTES} byte limit")
        os.replace(tmp, args.out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {args.out} ({size / 1e6:.2f} MB): "
          f"{len(arrays['y_train'])} train, {len(arrays['y_test'])} test")


if __name__ == "__main__":
    main()
