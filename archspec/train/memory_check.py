"""Pre-flight: refuse a run whose training step cannot fit in the device's free memory, before
anything is allocated.

Why: a spec that cannot fit is otherwise found out by the operating system - swap, then the OOM
killer, minutes later and without a message (9.8 GB allocated under a 12 GB cap took 2.5 minutes
to die). The need is archspec.memory's estimate of the peak of one training step (weights,
gradients, optimizer state, the batch, what autograd keeps for backward: the numbers `archspec
count` prints) for the recipe's batch size, precision and optimizer, from a meta-device build
(no weights allocated), plus the EMA's copy of the weights. Left out, so the real peak is higher
still: the CUDA context and cuDNN workspaces, the allocator's caching, the dataset in memory.

What the device has: the free memory of the GPU (`torch.cuda.mem_get_info`), or on the CPU the
smallest of MemAvailable, the room under a container's memory limit (cgroup v2, else v1) and
the room under `ulimit -v`. CPU processes of one machine (`--devices N --device cpu`) share it.
"""

from __future__ import annotations

import os
from pathlib import Path

from archspec.errors import ArchspecError


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


def training_need(spec, recipe, device_type: str):
    """(bytes one training step needs at its peak, EMA copy included; archspec.memory's estimate)."""
    from archspec.compile import build_model
    from archspec.memory import estimate_memory
    from archspec.recipes.build import memory_setup

    estimate = estimate_memory(spec, build_model(spec, device="meta"), memory_setup(recipe, device_type))
    ema = estimate.params_bytes if recipe.ema is not None else 0
    return estimate.peak_bytes + ema, estimate


def check_memory(spec, recipe, device, *, processes: int = 1) -> None:
    """Refuse, with the numbers, a run whose estimated peak exceeds what `device` has free."""
    from archspec.summary import human_bytes

    have = available_memory(device) if device.type in ("cpu", "cuda") else None
    if have is None:
        return
    free, source = have
    need, m = training_need(spec, recipe, device.type)
    if need * processes <= free:
        return
    each = f" ({processes} processes x {human_bytes(need)})" if processes > 1 else ""
    parts = [f"weights {human_bytes(m.params_bytes)}", f"gradients {human_bytes(m.grads_bytes)}",
             f"{m.optimizer} state {human_bytes(m.optimizer_bytes)}",
             f"saved for backward {human_bytes(m.activation_bytes)} at batch {m.batch_size}"]
    if recipe.ema is not None:
        parts.append(f"EMA copy {human_bytes(m.params_bytes)}")
    raise ArchspecError(f"this run needs about {human_bytes(need * processes)}{each} at the peak of a training step "
                        f"({m.peak_phase}) but {device.type} has {human_bytes(free)} {source}: {', '.join(parts)}",
                        hint="use a smaller model or --batch-size, or pass --force to try anyway")
