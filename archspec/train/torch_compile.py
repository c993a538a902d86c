"""The recipe's `compile:` key: whether and how the training step goes through `torch.compile`.

Values (a recipe's `compile`):
  auto              torch.compile on CUDA (default mode), eager elsewhere: on a CPU the first compile
                    costs tens of seconds and the kernels gain little, and MPS support is partial.
  false             always eager.
  true | default    torch.compile in its default mode on any device.
  reduce-overhead   torch.compile with CUDA graphs: removes the per-kernel launch cost, which is what
                    bounds small batches of small models on a fast GPU.
  max-autotune, max-autotune-no-cudagraphs
                    torch.compile's autotuning modes (longer compiles, sometimes faster kernels).

Only the training forward/backward is compiled; evaluation runs the plain module (a compiled model
switched to eval() would compile a second graph for a few hundred test batches). Checkpoints
store the plain module's state_dict (`Run.module` is the unwrapped model), so compiled and eager runs
write interchangeable files.

Why compile time is reported apart: the first step of each batch shape triggers a compilation that
can take longer than an epoch of a small model; counting it as training time would make every short
run look slow, and hiding it would make a run look faster than its wall clock. The loop times those
steps separately (`compile_seconds` in summary.json) and leaves them out of images/s.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import torch

from archspec.errors import ArchspecError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILE_CHOICES = ("auto", False, True, *COMPILE_MODES)


def resolve_compile(value: Any, device: torch.device) -> str | None:
    """The torch.compile mode for a recipe's `compile` value on `device`, or None for eager."""
    if value is None or value == "auto":
        return "default" if device.type == "cuda" else None
    if value is False:
        return None
    if value is True:
        return "default"
    if value in COMPILE_MODES:
        if value == "reduce-overhead" and device.type != "cuda":
            raise ArchspecError("compile: reduce-overhead uses CUDA graphs and needs a CUDA device "
                                f"(this run is on {device.type})", path="compile",
                                hint="use compile: true (default mode) or false here")
        return str(value)
    choices = ", ".join(str(c).lower() if isinstance(c, bool) else c for c in COMPILE_CHOICES)
    raise ArchspecError(f"compile must be one of {choices}; got {value!r}", path="compile")


def compile_model(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """`torch.compile(model, mode=mode)`. The wrapper shares parameters and buffers with `model`."""
    return torch.compile(model, mode=mode)


def is_compile_error(exc: BaseException) -> bool:
    """True for the errors torch.compile raises when it cannot trace or build a model (dynamo's and
    inductor's exception classes), told apart by module so that torch._dynamo need not be imported."""
    return type(exc).__module__.split(".")[:2] in (["torch", "_dynamo"], ["torch", "_inductor"])


def uses_cuda_graphs(mode: str | None) -> bool:
    """True for the modes whose compiled steps replay CUDA graphs (outputs live in reused buffers)."""
    return mode in ("reduce-overhead", "max-autotune")


def mark_step_begin() -> None:
    """Tell the CUDA-graph runtime a new training step starts, so the previous step's outputs may be
    overwritten (what torch's docs ask of training loops under reduce-overhead)."""
    torch.compiler.cudagraph_mark_step_begin()


class CompileClock:
    """Times the training steps that compile, apart from the others.

    With a compile mode set, the first step of each batch shape (the first batch, and a smaller last
    batch) triggers a compilation; those steps are timed with device syncs around them (only they
    pay for a sync) and their seconds and images are kept in `seconds`/`images` for the current
    epoch. Under CUDA graphs each step is also marked as a new step (see `mark_step_begin`).
    Without a compile mode `step()` does nothing at all.
    """

    def __init__(self, mode: str | None, device: torch.device) -> None:
        self.mode = mode
        self.device = device
        self.cuda_graphs = uses_cuda_graphs(mode) and device.type == "cuda"
        self.shapes_seen: set[tuple[int, ...]] = set()
        self.seconds = 0.0  # this epoch's
        self.images = 0

    def start_epoch(self) -> None:
        self.seconds, self.images = 0.0, 0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def step(self, x: torch.Tensor) -> Iterator[None]:
        if self.mode is None:
            yield
            return
        if self.cuda_graphs:
            mark_step_begin()
        shape = tuple(x.shape)
        if shape in self.shapes_seen:
            yield
            return
        self.shapes_seen.add(shape)
        self._sync()
        began = time.perf_counter()
        yield
        self._sync()
        self.seconds += time.perf_counter() - began
        self.images += int(shape[0])
