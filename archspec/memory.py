"""Training memory: what one training step of a spec holds, layer by layer and at its peak.

torchinfo's "forward/backward pass size" adds up every layer's output; what a training step really
holds is different. Autograd keeps, from the forward until each layer's backward, the tensors the
gradients need (*saved tensors*): a conv keeps its input, a ReLU its output, batch norm its input
and statistics, dropout a mask, max pooling its input and int64 indices, flatten nothing. Outputs
nobody keeps are freed as soon as the next layer has read them, and a tensor kept by two layers
(a ReLU's output is the next conv's input) exists once. Each kind says what it keeps
(`LayerKind.saved` in archspec/layers); this module threads the tensors through the layer tree,
counts each once, and replays one training step to find its peak.

The step replayed is archspec's `train_step` in its steady state (the second step onwards):

* resident all along: weights and buffers, optimizer state (Adam: two parameter-sized tensors,
  SGD with momentum: one), the batch (inputs and int64 labels);
* forward: the previous step's gradients are still alive (train_step sets them to None after the
  forward), kept tensors pile up, each layer briefly adds its output and scratch;
* backward: gradients of the weights appear layer by layer while the kept tensors are freed, with
  the gradient flowing in and out of the current layer alive;
* optimizer step: weights, gradients, state, and the step's own temporaries (torch's for-loop
  Adam builds a few parameter-sized ones, the fused CUDA kernels none).

The peak is the largest of the three phases. Precision follows the recipe: under bf16/fp16
autocast, convs and linears compute in 16 bits (their outputs, and every activation after them, take
2 bytes), keep 16-bit copies of their weights, and cast a 32-bit input down once. Not counted:
cuDNN/cuBLAS workspaces, the CUDA context, the allocator's caching (`torch.cuda.memory_reserved`
is larger than what is allocated), the data loader's prefetched batches.
tests/test_memory.py checks every kind's saved tensors against autograd's, and whole training
steps against torch's memory tracker.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from archspec.errors import ArchspecError
from archspec.layers.base import Held, Saved
from archspec.spec.tree import Spec, Visit, fold

ITEMSIZE = {"fp32": 4, "bf16": 2, "fp16": 2, "int64": 8, "bool": 1}
DEVICES = ("cuda", "cpu")


@dataclass(frozen=True)
class OptimizerMemory:
    """What an optimizer adds to a step, in parameter-sized tensors (archspec.recipes.build
    derives it from a recipe: `optimizer_memory`).

    `state`: tensors kept between steps per parameter (Adam 2, SGD with momentum 1, plain SGD 0).
    `counters`: a 4-byte step count per parameter tensor (Adam, Adagrad, RMSprop).
    `scratch`: temporaries inside ``step()``: that many copies of the largest parameter tensor
    (torch's for-loop implementations), or of all parameters when `scratch_all` (foreach ones).
    """

    name: str = "none"
    state: int = 0
    counters: bool = False
    scratch: int = 0
    scratch_all: bool = False


@dataclass(frozen=True)
class Setup:
    """What to estimate for: the batch size, the device type, the recipe's precision and optimizer."""

    batch_size: int
    device: str = "cuda"
    precision: str = "auto"
    optimizer: OptimizerMemory = field(default_factory=OptimizerMemory)


@dataclass
class MemoryEstimate:
    """Bytes of one steady-state training step. `layers` maps a module path to the bytes of the
    tensors that layer creates and autograd keeps for backward (nested layers included)."""

    batch_size: int
    device: str
    precision: str
    optimizer: str
    params_bytes: int  # weights and buffers
    grads_bytes: int
    optimizer_bytes: int  # state kept between steps
    batch_bytes: int  # inputs and labels
    activation_bytes: int  # kept for backward (the forward/backward pass size)
    forward_peak: int
    backward_peak: int
    step_peak: int
    peak_bytes: int
    peak_phase: str
    layers: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["peak_mb"] = round(self.peak_bytes / 2**20, 2)
        return d


def resolve_precision(precision: str, device: str) -> str:
    """auto: bf16 on CUDA, fp32 on the CPU; fp16 only on CUDA (the rules of archspec.train.device)."""
    if device not in DEVICES:
        raise ArchspecError(f'cannot estimate memory for device "{device}"; use one of: {", ".join(DEVICES)}')
    key = {"auto": "bf16" if device == "cuda" else "fp32"}.get(precision, precision)
    if key not in ("fp32", "bf16", "fp16"):
        raise ArchspecError(f'unknown precision "{precision}"; use auto, fp32, bf16 or fp16')
    if key == "fp16" and device != "cuda":
        raise ArchspecError("precision fp16 needs a CUDA GPU; estimate for --device cuda or use bf16")
    return key


def tensor_bytes(items: tuple[Held, ...], batch: int, act: int, lowp: int | None = None,
                 inp: int | None = None) -> int:
    """Bytes of `items` at `batch`: "act" ones take `act` bytes per element, "input" ones the
    input's `inp`, "lowp" ones autocast's `lowp` (the input's without autocast)."""
    size = {"act": act, "input": inp or act, "lowp": lowp or inp or act}
    return sum(h.numel * (batch if h.per_sample else 1) * (size.get(h.dtype) or ITEMSIZE[h.dtype]) for h in items)


def compute_itemsize(saved: Saved, itemsize: int, lowp: int | None) -> int:
    """Bytes per element a layer computes in, given its input's (`itemsize`) and autocast's (`lowp`,
    None without autocast): autocast runs "lowp" layers in 16 bits and "fp32" ones in 32."""
    if lowp and saved.compute == "lowp":
        return lowp
    if saved.compute == "promote":
        return max(itemsize, 4)
    return 4 if lowp and saved.compute == "fp32" else itemsize


def input_copy_itemsize(saved: Saved, itemsize: int, lowp: int | None) -> int | None:
    """Bytes per element of the copy autocast makes of a kept input it casts (a 32-bit input to a
    16-bit conv, a 16-bit input to an fp32 layer_norm on CUDA), or None when the input itself is kept."""
    if not saved.input or not lowp:
        return None
    if saved.compute == "lowp" and itemsize != lowp:
        return lowp
    if saved.compute == "fp32" and itemsize != 4:
        return 4
    return None


def own_bytes(saved: Saved, batch: int, act: int, lowp: int | None, input_grad: bool = True,
              inp: int | None = None) -> int:
    """Bytes a layer keeps besides its input and output: its `held` tensors and, under autocast
    (`lowp`: 2 bytes), the 16-bit copies of its weights it keeps."""
    cast = saved.cast + (saved.cast_if_grad if input_grad else 0)
    return tensor_bytes(saved.held, batch, act, lowp, inp) + (cast * lowp if lowp else 0)


# --------------------------------------------------------------------------------------------
# the tensors and operations of one forward pass


@dataclass(eq=False)
class _Tensor:
    nbytes: int
    itemsize: int
    grad: bool  # requires grad (some layer before it, or making it, trains)
    keepers: int = 0  # operations that keep it for backward
    readers: int = 0  # operations that still read it in the forward
    pinned: bool = False  # the batch and the model's output: alive the whole step
    base: _Tensor | None = None  # a view's tensor: whose storage it reads and keeps alive


@dataclass(eq=False)
class _Op:
    path: str  # the module path of the layer (a composite's own work: the composite's path)
    reads: list[_Tensor]
    out: _Tensor | None  # None: the output is an input (a view, an identity)
    keeps: list[_Tensor]
    held: int  # bytes of its own kept tensors: masks, indices, statistics, casts, inner activations
    temp: int  # bytes alive only while it runs
    cached: int  # bytes alive until the forward ends (16-bit weight copies in autocast's cache)
    grads: int  # bytes of the gradients of its own trainable parameters


class _Forward:
    """Builds the operations of one forward pass from the layer tree (a `fold` over it)."""

    def __init__(self, setup: Setup, precision: str, modules: dict):
        self.batch = setup.batch_size
        self.device = setup.device
        self.lowp = ITEMSIZE[precision] if precision != "fp32" else None  # autocast's itemsize
        self.modules = modules
        self.ops: list[_Op] = []

    def trainable(self, path: str) -> int:
        return sum(p.numel() for p in self.modules[path].parameters() if p.requires_grad)

    def tensor(self, numel: int, itemsize: int, grad: bool) -> _Tensor:
        return _Tensor(self.batch * numel * itemsize, itemsize, grad)

    def add(self, visit: Visit, saved: Saved, x: _Tensor, reads: list[_Tensor], out_numel: int,
            out_itemsize: int, act: int, grads: int) -> _Tensor:
        """Record one operation reading `reads` (its input `x` among them) and return its output.
        Its own tensors of dtype "act" take `act` bytes per element."""
        trains = x.grad or grads > 0 or any(t.grad for t in reads)
        reads = [t.base or t for t in reads]  # reading (or keeping) a view is reading its tensor
        out = self.tensor(out_numel, out_itemsize, trains)
        keeps: list[_Tensor] = []
        held = cached = 0
        if trains:  # without a graph nothing is kept
            copy = input_copy_itemsize(saved, x.itemsize, self.lowp)
            if copy:
                held += x.nbytes // x.itemsize * copy  # autocast keeps its cast copy of the input
            elif saved.input:
                keeps.append(x.base or x)
            if saved.output:
                keeps.append(out)
            if saved.groups:
                keeps.extend(reads[:-1])  # a composite's group outputs (its last read is its input)
            held += own_bytes(saved, self.batch, act, self.lowp, x.grad, x.itemsize)
            cached = saved.cast_if_grad * self.lowp if self.lowp and not x.grad else 0
        for t in reads:
            t.readers += 1
        for t in keeps:
            t.keepers += 1
        temp = tensor_bytes(saved.temp, self.batch, act)
        self.ops.append(_Op(visit.path, reads, out, keeps, held, temp, cached, grads * 4))
        return out

    def leaf(self, visit: Visit, x: _Tensor) -> _Tensor:
        node = visit.node
        saved = node.impl.saved(node.options, node.in_shape, node.out_shape, self.device)
        if saved.alias:
            return x
        if saved.view:
            return _Tensor(self.batch * math.prod(node.out_shape) * x.itemsize, x.itemsize, x.grad, base=x.base or x)
        itemsize = compute_itemsize(saved, x.itemsize, self.lowp)
        return self.add(visit, saved, x, [x], math.prod(node.out_shape), itemsize, itemsize,
                        self.trainable(visit.path))

    def composite(self, visit: Visit, x: _Tensor, outs: list[_Tensor]) -> _Tensor:
        node, impl = visit.node, visit.node.impl
        saved = impl.saved(node.options, node.in_shape, node.out_shape, self.device)
        if saved.alias:
            return outs[0]
        places = impl.child_paths(len(node.children))
        own = self.trainable(visit.path) - sum(self.trainable(f"{visit.path}.{p}" if p else visit.path)
                                               for p in places)
        # adding or stacking promotes to the widest dtype (the input's too where it is added back)
        paths = max(t.itemsize for t in [*outs, *([x] if saved.merges_input else [])])
        act = compute_itemsize(saved, paths, self.lowp) if saved.compute == "lowp" else paths
        itemsize = compute_itemsize(saved, paths, self.lowp) if saved.compute == "fp32" else paths
        # the merge reads every group's output and the input (a shortcut, a gate)
        return self.add(visit, saved, x, [*outs, x], math.prod(node.out_shape), itemsize, act, own)


def _program(visit: Visit, groups: list[list]):
    """`fold` step: a function running `visit`'s layer (and its groups) on a `_Forward`."""
    if not visit.node.children:
        return lambda fw, x: fw.leaf(visit, x)

    def run(fw: _Forward, x: _Tensor) -> _Tensor:
        outs = []
        for group in groups:
            y = x
            for step in group:
                y = step(fw, y)
            outs.append(y)
        return fw.composite(visit, x, outs)

    return run


# --------------------------------------------------------------------------------------------
# replaying the step


@dataclass
class _Resident:
    params: int
    grads: int
    state: int
    batch: int
    scratch: int


def _resident(model, setup: Setup, input_numel: int) -> _Resident:
    params = list(model.parameters())
    trained = [p for p in params if p.requires_grad]
    grads = sum(p.numel() for p in trained) * 4
    opt = setup.optimizer
    largest = max((p.numel() for p in trained), default=0) * 4
    return _Resident(
        params=sum(p.numel() * 4 for p in params) + sum(b.numel() * b.element_size() for b in model.buffers()),
        grads=grads,
        state=opt.state * grads + (4 * len(trained) if opt.counters else 0),
        batch=setup.batch_size * (input_numel * 4 + 8),
        scratch=opt.scratch * (grads if opt.scratch_all else largest),
    )


def _channels_last(model, device: str) -> bool:
    """Whether training copies each batch to channels_last: on CUDA, for a model with a conv (the
    rule of archspec.train.device.wants_channels_last, which this layer cannot import)."""
    from torch import nn

    return device == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules())


def _forward_peak(ops: list[_Op], start: int) -> tuple[int, int]:
    """(peak, bytes alive at the end) of the forward, from `start` bytes alive before it; the end
    still holds autocast's cache, freed when the forward's autocast region closes."""
    live = peak = start
    for op in ops:
        live += (op.out.nbytes if op.out else 0) + op.held + op.temp + op.cached
        peak = max(peak, live)
        live -= op.temp
        for t in op.reads:
            t.readers -= 1
            if t.readers == 0 and not t.keepers and not t.pinned:
                live -= t.nbytes
    return peak, live


def _backward_peak(ops: list[_Op], start: int) -> int:
    """Peak of the backward: each layer's gradient in and out alive while its weight gradients
    appear; its kept tensors go once the last layer keeping them is done."""
    live = peak = start
    for op in reversed(ops):
        grad_out = op.out.nbytes if op.out is not None and op.out.grad else 0
        grad_in = sum(t.nbytes for t in op.reads if t.grad)
        peak = max(peak, live + grad_out + grad_in + op.grads)
        live += op.grads - op.held
        for t in op.keeps:
            t.keepers -= 1
            if t.keepers == 0 and not t.pinned:
                live -= t.nbytes
    return peak


def estimate_memory(spec: Spec, model, setup: Setup) -> MemoryEstimate:
    """Estimate one training step of `spec` (its `model`, e.g. a meta-device build) for `setup`."""
    if setup.batch_size < 1:
        raise ArchspecError(f"batch size must be at least 1, got {setup.batch_size}")
    precision = resolve_precision(setup.precision, setup.device)
    fw = _Forward(setup, precision, dict(model.named_modules()))
    batch = fw.tensor(math.prod(spec.input_shape), 4, False)
    batch.pinned = True
    out = batch
    for step in fold(spec.layers, _program):
        out = step(fw, out)
    out.pinned = True  # the logits: the loss reads them and train_step returns them
    layers = _per_layer(fw.ops)  # before the replay, which uses up the keepers' counts
    res = _resident(model, setup, math.prod(spec.input_shape))
    if _channels_last(model, setup.device):
        res.batch += batch.nbytes  # train_step's channels_last copy of the inputs lives through the step
    classes = math.prod(spec.output_shape)
    loss = setup.batch_size * classes * 4  # cross-entropy keeps fp32 log-probabilities
    cast = setup.batch_size * classes * 4 if out.itemsize != 4 else 0  # 16-bit logits cast up first
    start = res.params + res.state + res.grads + res.batch  # last step's gradients are still alive
    peak, end = _forward_peak(fw.ops, start)
    forward_peak = max(peak, end + loss + cast)
    cached = sum(op.cached for op in fw.ops)
    backward_peak = _backward_peak(fw.ops, end + loss - cached - res.grads)  # zero_grad(set_to_none) first
    logits = out.nbytes if out is not batch else 0
    step_peak = res.params + res.state + res.grads + res.batch + logits + res.scratch
    phases = {"forward": forward_peak, "backward": backward_peak, "optimizer step": step_peak}
    phase = max(phases, key=phases.__getitem__)
    return MemoryEstimate(
        batch_size=setup.batch_size, device=setup.device, precision=precision, optimizer=setup.optimizer.name,
        params_bytes=res.params, grads_bytes=res.grads, optimizer_bytes=res.state, batch_bytes=res.batch,
        activation_bytes=sum(layers.values()) + loss, forward_peak=forward_peak, backward_peak=backward_peak,
        step_peak=step_peak, peak_bytes=phases[phase], peak_phase=phase, layers=layers,
    )


def _per_layer(ops: list[_Op]) -> dict[str, int]:
    """Bytes each operation creates that are kept for backward (its kept output and own tensors)."""
    out: dict[str, int] = {}
    for op in ops:
        kept_out = op.out.nbytes if op.out is not None and op.out.keepers else 0
        out[op.path] = out.get(op.path, 0) + op.held + kept_out
    return out


def layer_bytes(estimate: MemoryEstimate, path: str) -> int:
    """Kept bytes of the layer at `path` and every layer nested in it."""
    return sum(b for p, b in estimate.layers.items() if p == path or p.startswith(path + "."))


__all__ = ["OptimizerMemory", "Setup", "MemoryEstimate", "compute_itemsize", "estimate_memory", "input_copy_itemsize",
           "layer_bytes", "own_bytes",
           "resolve_precision", "tensor_bytes"]
