"""One way to turn (seed, purpose, epoch, index, ...) into an RNG seed.

Why: shuffling, subsetting, synthetic data and per-sample augmentation each need their own random
stream that depends only on the run's seed and where we are (epoch, sample), never on how many
random numbers something else drew before. A resumed run then sees exactly the data an
uninterrupted one would. Python's `hash()` is salted per process, so we hash with blake2b.
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that is a pure function of `parts` (ints and strings), stable across processes."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") >> 1
