"""Where and in what precision a run computes: device choice, autocast, GradScaler, memory format.

Kept apart from the loop so the rules ("auto" means bf16 on CUDA, fp16 needs CUDA, channels_last
only helps conv nets on CUDA) live in one place and training and evaluation agree on them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from archspec.errors import ArchspecError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_ALIASES = {"float32": "fp32", "32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "16": "fp16"}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str | None = "auto") -> torch.device:
    """`auto` picks cuda > mps > cpu; an explicit device must exist, else a clear error."""
    wanted = (name or "auto").strip().lower()
    if wanted == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(wanted)
    except (RuntimeError, ValueError):
        raise ArchspecError(f'unknown device "{name}"; use auto, cpu, cuda, cuda:N or mps') from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ArchspecError(f'device "{name}" requested but CUDA is not available here',
                                hint="use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ArchspecError(f'device "{name}" does not exist: this machine has '
                                f"{torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not _mps_available():
            raise ArchspecError(f'device "{name}" requested but MPS is not available here',
                                hint="use --device cpu (or auto)")
    elif device.type != "cpu":
        raise ArchspecError(f'unsupported device "{name}"; use auto, cpu, cuda, cuda:N or mps')
    return device


@dataclass(frozen=True)
class Precision:
    """The resolved numeric mode: which dtype autocast uses (None: plain fp32) and whether to scale."""

    name: str  # fp32 | bf16 | fp16 (never "auto": that is resolved)
    autocast_dtype: torch.dtype | None
    use_scaler: bool

    def autocast(self, device: torch.device):
        """A context manager for the forward pass (a no-op in fp32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)


def resolve_precision(name: str | None, device: torch.device) -> Precision:
    """`auto`: bf16 autocast on CUDA, fp32 elsewhere. `bf16`: autocast on any device.
    `fp16`: autocast + GradScaler, CUDA only (fp16 on CPU is slow and poorly supported)."""
    key = str(name or "auto").strip().lower()
    key = _ALIASES.get(key, key)
    if key not in PRECISIONS:
        raise ArchspecError(f'unknown precision "{name}"; use one of: {", ".join(PRECISIONS)}')
    if key == "auto":
        key = "bf16" if device.type == "cuda" else "fp32"
    if key == "fp32":
        return Precision("fp32", None, False)
    if key == "bf16":
        return Precision("bf16", torch.bfloat16, False)
    if device.type != "cuda":
        raise ArchspecError(f"precision fp16 needs a CUDA GPU (this run is on {device.type})",
                            hint="use precision bf16 or fp32 (--set precision=bf16)")
    return Precision("fp16", torch.float16, True)


def wants_channels_last(model: torch.nn.Module, device: torch.device) -> bool:
    """channels_last speeds up convolutions with cuDNN (tensor cores); elsewhere it only costs copies."""
    if device.type != "cuda":
        return False
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def configure_backends(device: torch.device) -> None:
    """cuDNN autotuning: input shapes are fixed for a whole run, so the search pays for itself."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def uses_recipe_threads(fn):
    """Decorator for `train(spec, recipe, ...)`: the recipe's `threads` (`--threads`) set torch's CPU
    threads for the run, and the previous count is restored after it.

    torch's default (one thread per core) can be many times slower than one thread on a shared or
    loaded machine; a run's thread count is recorded in its summary.json.
    """
    import functools

    @functools.wraps(fn)
    def wrapper(spec, recipe, *args, **kwargs):
        previous = torch.get_num_threads()
        threads = getattr(recipe, "threads", None)
        if threads:
            torch.set_num_threads(int(threads))
        try:
            return fn(spec, recipe, *args, **kwargs)
        finally:
            torch.set_num_threads(previous)

    return wrapper
