"""The least memory training a spec needs, and the memory the device has: compared before building.

Why: a spec that cannot fit is otherwise found out by the operating system - swap, then the OOM
killer, minutes later and without a message (9.8 GB allocated under a 12 GB cap took 2.5 minutes
to die). The estimate comes from a meta-device build (no weights allocated), so it costs about
what `archspec count` costs.

The estimate is a lower bound on purpose, so that refusing on it is never wrong:

* parameters and buffers, one gradient per trainable parameter, the optimizer's state (Adam keeps
  two values per parameter, SGD with momentum one, ...) and the EMA copy, at 4 bytes a value;
* activations: only the outputs of the layers with parameters (convolutions, linear layers,
  norms: each one a new tensor that backward keeps), x the batch size, at 4 bytes (2 under
  bf16/fp16 autocast). Activation functions, pooling, the data loader, the CUDA context and the
  allocator's slack are left out: the real peak is higher, never lower.

A more detailed estimate (what autograd saves per layer kind) can replace `activation_values`;
`training_footprint` and `check_fits` are what the trainer calls.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archspec.errors import ArchspecError

GiB = 2**30


@dataclass(frozen=True)
class Footprint:
    """Bytes a training step needs at the least, by part."""

    params: int  # parameters and buffers
    grads: int
    optimizer: int
    ema: int
    activations: int
    batch_size: int
    optimizer_slots: int  # state values per trainable parameter

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.ema + self.activations

    def parts(self) -> str:
        items = [("parameters", self.params), ("gradients", self.grads),
                 (f"optimizer state ({self.optimizer_slots} per parameter)", self.optimizer), ("EMA copy", self.ema),
                 (f"activations for batch {self.batch_size}", self.activations)]
        return ", ".join(f"{name} {size(n)}" for name, n in items if n)


def size(n: float) -> str:
    """Bytes for people: 1.5 GiB, 320 MiB, 12 KiB."""
    for unit, scale in (("TiB", 2**40), ("GiB", GiB), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def optimizer_slots(optimizer: Any) -> int:
    """State values torch keeps per parameter for `optimizer` (a recipe's OptimizerConfig)."""
    name = optimizer.name
    if name == "sgd":
        return 1 if optimizer.momentum else 0
    if name in ("adam", "adamw"):
        return 3 if optimizer.amsgrad else 2
    if name == "rmsprop":
        return 1 + bool(optimizer.momentum) + bool(optimizer.centered)
    return 1  # adagrad: the running sum of squares


def activation_values(spec, model) -> int:
    """Values per sample in the outputs of the layers that own parameters (see the module docstring)."""
    from archspec.spec.tree import walk

    modules = dict(model.named_modules())
    total = math.prod(spec.input_shape)  # the batch itself
    for visit in walk(spec.layers):
        module = modules.get(visit.path)
        if visit.node.impl.composite or module is None:
            continue
        if any(True for _ in module.parameters()):
            total += math.prod(visit.node.out_shape)
    return total


def training_footprint(spec, recipe, *, autocast: bool = False) -> Footprint:
    """The lower-bound footprint of training `spec` with `recipe` (one process, one device)."""
    from archspec.compile import build_model

    model = build_model(spec, device="meta")
    params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    slots = optimizer_slots(recipe.optimizer)
    value = 2 if autocast else 4
    return Footprint(params=4 * params, grads=4 * trainable, optimizer=4 * slots * trainable,
                     ema=4 * params if recipe.ema is not None else 0,
                     activations=value * recipe.batch_size * activation_values(spec, model),
                     batch_size=recipe.batch_size, optimizer_slots=slots)


# --- what the device has -------------------------------------------------------------------------


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    """Room left under a container's memory limit (cgroup v2, else v1); None when unlimited."""
    root = Path("/sys/fs/cgroup")
    limit, used = _read_int(root / "memory.max"), _read_int(root / "memory.current")
    if limit is None:
        limit, used = _read_int(root / "memory/memory.limit_in_bytes"), _read_int(root / "memory/memory.usage_in_bytes")
    if limit is None or used is None or limit >= 2**60:
        return None
    return max(0, limit - used)


def _address_space_available() -> int | None:
    """Room left under `ulimit -v` (RLIMIT_AS); None when unlimited (or no such limit: Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        status = Path("/proc/self/status").read_text()
        used = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        used = 0
    return max(0, soft - used)


def available_memory(device) -> tuple[int, str] | None:
    """(bytes free for this run, where that figure comes from) on `device`; None when unknown (MPS)."""
    if device.type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free), f"free on {device}"
    if device.type != "cpu":
        return None
    found = [(n, what) for n, what in ((_meminfo_available(), "available RAM"),
                                       (_cgroup_available(), "left under the container's memory limit"),
                                       (_address_space_available(), "left under ulimit -v")) if n is not None]
    return min(found) if found else None


def check_fits(footprint: Footprint, device, *, processes: int = 1) -> None:
    """Refuse, with the numbers, a run whose lower-bound footprint exceeds what `device` has free.
    `processes` share the device's memory (CPU processes of one machine under torchrun)."""
    have = available_memory(device)
    if have is None:
        return
    free, source = have
    need = footprint.total * processes
    if need <= free:
        return
    each = f" ({processes} processes x {size(footprint.total)})" if processes > 1 else ""
    raise ArchspecError(f"this run needs at least {size(need)}{each} but {device.type} has {size(free)} {source}: "
                        f"{footprint.parts()}",
                        hint="use a smaller model or --batch-size, or pass --force to try anyway")
