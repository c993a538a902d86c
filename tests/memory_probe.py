"""Measure what torch really holds, to check archspec/memory.py's estimate against.

Everything runs under `FakeTensorMode`: tensors have shapes, dtypes and devices but no storage, so
a 100M-parameter model costs nothing, and a fake "cuda" tensor takes CUDA's code paths (fused
dropout, cuDNN batch norm, CUDA autocast) on a machine without a GPU, for the forward pass.
(The autograd engine needs a real GPU for a CUDA backward, so whole steps are measured on the CPU,
and on a real GPU with `torch.cuda.max_memory_allocated` when one is present.)

* `saved_tensors(module, x)`: what autograd saves for backward in one forward (saved-tensor hooks).
* `forward_kept_bytes(...)`: the bytes a whole model's forward keeps for backward.
* `step_peak(...)`: the peak of archspec's own `train_step`, measured by torch's `MemTracker`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import MemTracker

from archspec.compile import build_model
from archspec.recipes.build import build_loss, build_optimizer
from archspec.train.loop import train_step

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


@contextlib.contextmanager
def autocast(device_type: str, dtype):
    """torch.autocast, minus its refusal to enable CUDA autocast without a GPU (fake CUDA tensors
    dispatch through autocast like real ones). A no-op for dtype None."""
    if dtype is None:
        yield
        return
    enabled, old = torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)
    torch.set_autocast_enabled(device_type, True)
    torch.set_autocast_dtype(device_type, dtype)
    torch.autocast_increment_nesting()
    try:
        yield
    finally:
        if torch.autocast_decrement_nesting() == 0:
            torch.clear_autocast_cache()
        torch.set_autocast_enabled(device_type, enabled)
        torch.set_autocast_dtype(device_type, old)


class Precision:
    """Stands in for archspec.train.device.Precision in `train_step` (same `autocast` method)."""

    def __init__(self, name: str):
        self.name = name

    def autocast(self, device):
        return autocast(device.type, DTYPES[self.name])


def _key(t: torch.Tensor):
    return t.untyped_storage()._cdata


@dataclass
class SavedTensors:
    input: bool  # the input tensor itself is saved
    output: bool  # the output tensor itself is saved
    other_bytes: int  # everything else saved (masks, indices, stats, inner activations, weight copies)


def saved_tensors(module: torch.nn.Module, x: torch.Tensor, device_type: str, precision: str) -> SavedTensors:
    """What autograd saves during `module(x)`: each storage once, parameters and buffers left out."""
    saved = {}

    def pack(t):
        saved.setdefault(_key(t), t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(device_type, DTYPES[precision]):
        y = module(x)
    own = {_key(t) for t in [*module.parameters(), *module.buffers()]}
    others = [t for k, t in saved.items() if k not in own and k not in (_key(x), _key(y))]
    return SavedTensors(_key(x) in saved, _key(y) in saved,
                        sum(t.untyped_storage().nbytes() for t in others))


def forward_kept_bytes(spec, batch: int, device_type: str, precision: str) -> int:
    """Bytes a forward of `spec`'s model saves for backward (each storage once), not counting
    parameters, buffers or the input batch: the activations a training step keeps."""
    saved = {}

    def pack(t):
        saved.setdefault(_key(t), t)
        return t

    with FakeTensorMode():
        with torch.device(device_type):
            model = build_model(spec)
            x = torch.randn(batch, *spec.input_shape)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                autocast(device_type, DTYPES[precision]):
            model(x)
        own = {_key(t) for t in [*model.parameters(), *model.buffers(), x]}
        return sum(t.untyped_storage().nbytes() for k, t in saved.items() if k not in own)


def step_peak(spec, recipe, batch: int, precision: str = "fp32", steps: int = 2) -> int:
    """Peak bytes of `steps` calls of archspec's `train_step` on the CPU, measured by torch's
    MemTracker on fake tensors: weights, gradients, optimizer state, batch, activations, temporaries.
    Two steps: from the second on, the optimizer state and the last step's gradients exist."""
    device = torch.device("cpu")
    with FakeTensorMode():
        model = build_model(spec)
        optimizer = build_optimizer(recipe, model)
        criterion = build_loss(recipe, spec.num_classes)
        tracker = MemTracker()
        tracker.track_external(model, optimizer)
        with tracker:
            x = torch.randn(batch, *spec.input_shape)
            y = torch.randint(0, spec.num_classes, (batch,))
            for _ in range(steps):
                tracker.reset_mod_stats()
                train_step(model, x, y, criterion=criterion, optimizer=optimizer, precision=Precision(precision),
                           device=device)
        return tracker.get_tracker_snapshot("peak")[device]["Total"]


def cuda_step_peak(spec, recipe, batch: int, precision: str = "bf16") -> int:
    """Peak bytes allocated during the second of two `train_step`s on a real GPU (counting the model,
    optimizer and batch, made here), with channels_last as `archspec train` sets it. cuDNN picks
    kernels without benchmarking: the estimate leaves out workspaces, which benchmarking enlarges."""
    from archspec.train.device import resolve_precision, wants_channels_last

    device = torch.device("cuda")
    benchmark, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, False
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    model = build_model(spec).to(device)
    optimizer = build_optimizer(recipe, model)
    criterion = build_loss(recipe, spec.num_classes)
    x = torch.randn(batch, *spec.input_shape, device=device)
    y = torch.randint(0, spec.num_classes, (batch,), device=device)
    prec = resolve_precision(precision, device)
    channels_last = wants_channels_last(model, device)  # as archspec.train does
    for _ in range(2):  # the second step is the steady state
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        train_step(model, x, y, criterion=criterion, optimizer=optimizer, precision=prec, device=device,
                   channels_last=channels_last)
    torch.cuda.synchronize()
    torch.backends.cudnn.benchmark = benchmark
    return torch.cuda.max_memory_allocated() - base
