"""Training throughput: what `archspec train` delivers versus a hand-optimized PyTorch loop and the
coursework reports' loop, for the same model, batch size and optimizer, in one process.

    .venv/bin/python benchmarks/train_speed.py specs/c5l3.yaml [--batch-size 64 512] [--steps 20]
        [--warmup 3] [--device auto|cpu|cuda] [--precision auto|fp32|bf16] [--repeats 1]

Variants (all on the same CIFAR-shaped random uint8 data, RandomCrop(pad 4) + horizontal flip,
the spec's default recipe's optimizer and loss):

  archspec   `archspec.train.loop.train` itself, on a throw-away run directory, with the data written
             as a cifar10 folder (standard pickle layout) so the real loader path runs. The recipe is the
             spec's default with `augment=flip_crop`, `epochs=1` and the batch size under test. Steps are
             timed by wrapping `loop.train_step` (the function the loop calls), so everything between
             steps - fetching and augmenting the batch, the scheduler, metric accumulation - is counted.
  reference  the same nn.Module (from `archspec.codegen.to_pytorch`, exec'd), uint8 data resident on the
             device, crop+flip as one batched gather on the device, bf16 autocast + channels_last +
             fused optimizer on CUDA (fp32 on CPU), torch.compile with the same `--compile` setting
             archspec gets (default auto: compiled on CUDA, eager on CPU), no host syncs.
  coursework torchvision-style Dataset of PIL images, transforms RandomCrop/Flip/ToTensor/Normalize,
             DataLoader(shuffle, num_workers=2), fp32, `loss.item()` every step.

Warm-up steps (default 3) are not timed; the first step (and, for the reference on CUDA, the
compile) is reported separately. On the CPU the rate is batch / median step time (robust against
other jobs on a shared machine), the mean over the timed window is printed too; on CUDA the rate is
the timed window's mean (per-step times would need syncs).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import archspec  # noqa: E402
from archspec.catalog import dataset_info  # noqa: E402
from archspec.codegen import to_pytorch  # noqa: E402
from archspec.recipes import load_recipe  # noqa: E402
from archspec.recipes.build import _FUSED_ON_CUDA, OPTIMIZERS  # noqa: E402
from archspec.train import loop  # noqa: E402
from archspec.train.device import resolve_device, resolve_precision  # noqa: E402
from archspec.train.torch_compile import resolve_compile  # noqa: E402

SHAPE = (3, 32, 32)
PAD = 4


@dataclass
class Timing:
    """Step-end timestamps of one run: `marks[0]` is the end of the last warm-up step."""

    batch: int
    first_step_s: float = float("nan")  # the first train step alone (compile included)
    startup_s: float = float("nan")  # from the start of the variant to the start of its first step
    marks: list[float] = field(default_factory=list)
    median_based: bool = True

    def mean_rate(self) -> float:
        steps = len(self.marks) - 1
        return self.batch * steps / (self.marks[-1] - self.marks[0])

    def rate(self) -> float:
        if not self.median_based:
            return self.mean_rate()
        return self.batch / statistics.median(np.diff(self.marks).tolist())


class StepClock:
    """Timestamps around training steps. Syncs the device only after the first step, at the end of
    warm-up and after the last step, so the timed window has no extra syncs on CUDA."""

    def __init__(self, timing: Timing, device: torch.device, warmup: int, steps: int,
                 every_step: bool | None = None) -> None:
        self.timing, self.device, self.warmup, self.steps = timing, device, warmup, steps
        # Per-step timestamps mean something only where steps are synchronous (CPU, or a loop that syncs).
        self.every_step = device.type == "cpu" if every_step is None else every_step
        timing.median_based = self.every_step
        self.done = 0
        self.start = time.perf_counter()
        self.step_start = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def before(self) -> None:
        if self.done == 0:
            self._sync()
            self.step_start = time.perf_counter()
            self.timing.startup_s = self.step_start - self.start

    def after(self) -> None:
        self.done += 1
        if self.done == 1:
            self._sync()
            self.timing.first_step_s = time.perf_counter() - self.step_start
        if self.done == self.warmup or self.done == self.warmup + self.steps:
            self._sync()
        if self.done >= self.warmup and self.every_step or self.done in (self.warmup, self.warmup + self.steps):
            self.timing.marks.append(time.perf_counter())

    @property
    def finished(self) -> bool:
        return self.done >= self.warmup + self.steps


# --- data ---------------------------------------------------------------------------------------


def random_cifar(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n random uint8 [3, 32, 32] images and labels 0..9 (speed does not depend on the pixels)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *SHAPE), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g)


def write_cifar_folder(root: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """The standard `cifar-10-batches-py` pickle layout, so archspec's own cifar10 loader reads it."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    flat = images.reshape(len(images), -1).numpy()
    for i, part in enumerate(np.array_split(np.arange(len(images)), 5), start=1):
        batch = {"data": np.ascontiguousarray(flat[part]), "labels": labels[part].tolist()}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    test = {"data": np.ascontiguousarray(flat[:256]), "labels": labels[:256].tolist()}
    (folder / "test_batch").write_bytes(pickle.dumps(test))


# --- the three variants ---------------------------------------------------------------------------


def run_archspec(spec, recipe, data_dir: Path, device: str, warmup: int, steps: int) -> Timing:
    timing = Timing(recipe.batch_size)
    clock = StepClock(timing, resolve_device(device), warmup, steps)
    original = loop.train_step

    def timed_step(*args, **kwargs):
        clock.before()
        out = original(*args, **kwargs)
        clock.after()
        return out

    loop.train_step = timed_step
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            result = loop.train(spec, recipe, dataset="cifar10", data_dir=data_dir, device=device,
                                run_dir=Path(run_dir) / "run", limit_test=256, progress=False, quiet=True,
                                console=Console(file=io.StringIO()))
    finally:
        loop.train_step = original
    if result.status != "completed" or not clock.finished:
        raise SystemExit(f"archspec run did not complete {warmup + steps} steps: {result.status} {result.message}")
    return timing


def build_plain_model(spec) -> torch.nn.Module:
    """The spec as plain PyTorch: the source `archspec show --code` prints, exec'd."""
    namespace: dict = {"__name__": "generated"}
    exec(compile(to_pytorch(spec), f"<{spec.name} generated>", "exec"), namespace)  # noqa: S102
    return namespace["build_model"]()


def make_optimizer(recipe, model: torch.nn.Module, *, fused: bool) -> torch.optim.Optimizer:
    """The recipe's optimizer class and hyperparameters, one param group (plain torch)."""
    cfg = recipe.optimizer
    kwargs = cfg.torch_kwargs()
    if fused and cfg.name in _FUSED_ON_CUDA:
        kwargs["fused"] = True
    return OPTIMIZERS[cfg.name](model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)


def crop_flip(x: torch.Tensor) -> torch.Tensor:
    """RandomCrop(pad 4, zero fill) + RandomHorizontalFlip on a [B, C, H, W] batch: one gather."""
    b, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (PAD, PAD, PAD, PAD))
    oy = torch.randint(0, 2 * PAD + 1, (b, 1), device=dev)
    ox = torch.randint(0, 2 * PAD + 1, (b, 1), device=dev)
    rows = oy + torch.arange(h, device=dev)
    cols = ox + torch.arange(w, device=dev)
    cols = torch.where(torch.rand(b, 1, device=dev) < 0.5, cols.flip(1), cols)
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def run_reference(spec, recipe, images: torch.Tensor, labels: torch.Tensor, device: str, precision: str,
                  warmup: int, steps: int, compile_mode: str | None) -> Timing:
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    cuda = dev.type == "cuda"
    timing = Timing(recipe.batch_size)
    clock = StepClock(timing, dev, warmup, steps)
    torch.manual_seed(recipe.seed)
    model = build_plain_model(spec).to(dev)
    if cuda:
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(recipe, model, fused=cuda)
    forward = torch.compile(model, mode=compile_mode) if compile_mode else model
    info = dataset_info("cifar10")
    mean = torch.tensor(info.mean, device=dev).view(1, 3, 1, 1) * 255
    inv_std = 1 / (torch.tensor(info.std, device=dev).view(1, 3, 1, 1) * 255)
    x_all, y_all = images.to(dev), labels.to(dev)
    autocast = (torch.autocast(dev.type, dtype=prec.autocast_dtype) if prec.autocast_dtype is not None
                else contextlib.nullcontext())
    model.train()
    b, n = recipe.batch_size, len(labels)
    order = torch.randperm(n, device=dev)
    for i in range(warmup + steps):
        lo = (i * b) % n
        if lo + b > n:
            order, lo = torch.randperm(n, device=dev), 0
        idx = order[lo:lo + b]
        clock.before()
        x = crop_flip(x_all[idx]).float().sub_(mean).mul_(inv_std)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            loss = F.cross_entropy(forward(x), y_all[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        clock.after()
    return timing


class PILImages(torch.utils.data.Dataset):
    """Like torchvision.datasets.CIFAR10: HWC uint8 array, PIL image per item, then the transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        self.data = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.targets = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def run_coursework(spec, recipe, images: torch.Tensor, labels: torch.Tensor, device: str, warmup: int,
                   steps: int, workers: int) -> Timing:
    from torchvision import transforms as T

    dev = resolve_device(device)
    timing = Timing(recipe.batch_size)
    clock = StepClock(timing, dev, warmup, steps, every_step=True)  # .item() syncs every step anyway
    info = dataset_info("cifar10")
    transform = T.Compose([T.RandomCrop(32, padding=PAD), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(info.mean, info.std)])
    loader = torch.utils.data.DataLoader(PILImages(images, labels, transform), batch_size=recipe.batch_size,
                                         shuffle=True, num_workers=workers)
    torch.manual_seed(recipe.seed)
    model = build_plain_model(spec).to(dev)
    optimizer = make_optimizer(recipe, model, fused=False)
    criterion = torch.nn.CrossEntropyLoss()
    model.train()
    running_loss = 0.0
    done = 0
    while done < warmup + steps:
        for inputs, targets in loader:
            clock.before()
            inputs, targets = inputs.to(dev), targets.to(dev)
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            clock.after()
            done += 1
            if done == warmup + steps:
                break
    return timing


# --- driver ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--batch-size", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before the timed ones (>= 1)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", help="archspec and reference (coursework is always fp32)")
    ap.add_argument("--repeats", type=int, default=1, help="run each variant this often; report the median")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the coursework loop")
    ap.add_argument("--compile", default="auto",
                    help="the recipe's compile value for both archspec and the reference: auto (torch.compile on "
                         "CUDA only), false, true, reduce-overhead (CUDA graphs), max-autotune, ...")
    ap.add_argument("--no-compile", action="store_true", help="same as --compile false")
    ap.add_argument("--variants", nargs="+", default=["archspec", "reference", "coursework"],
                    choices=["archspec", "reference", "coursework"])
    args = ap.parse_args()
    if args.warmup < 1 or args.steps < 2:
        ap.error("need --warmup >= 1 and --steps >= 2")

    dev = resolve_device(args.device)
    prec = resolve_precision(args.precision, dev)
    compile_value = "false" if args.no_compile else args.compile
    compile_mode = resolve_compile(yaml.safe_load(compile_value), dev)
    spec = archspec.load_spec(args.spec, dataset="cifar10")
    if tuple(spec.input_shape) != SHAPE:
        raise SystemExit(f"{args.spec}: this benchmark needs a {SHAPE} model, not {tuple(spec.input_shape)}")
    threads = torch.get_num_threads()
    print(f"{spec.name}: {sum(p.numel() for p in build_plain_model(spec).parameters()):,} params | device {dev} "
          f"| precision {prec.name} | compile {compile_mode or 'off'} | torch {torch.__version__} | {threads} CPU threads | "
          f"{args.warmup} warm-up + {args.steps} timed steps x {args.repeats}")
    rate_note = "batch / median step time" if dev.type == "cpu" else "timed-window mean"
    print(f"images/s = {rate_note}; 'mean' = timed-window mean; first = first step (s); startup = to first step (s)")
    for batch in args.batch_size:
        recipe = load_recipe(spec.recipe or "adam", batch_size=batch, epochs=1,
                             overrides=["augment=flip_crop", f"precision={args.precision}", f"compile={compile_value}"])
        n = batch * (args.warmup + args.steps)
        images, labels = random_cifar(n)
        results: dict[str, list[Timing]] = {v: [] for v in args.variants}
        with tempfile.TemporaryDirectory() as data_dir:
            write_cifar_folder(Path(data_dir), images, labels)
            for _ in range(args.repeats):  # interleaved, so a burst of load hits every variant alike
                for variant in args.variants:
                    if variant == "archspec":
                        t = run_archspec(spec, recipe, Path(data_dir), args.device, args.warmup, args.steps)
                    elif variant == "reference":
                        t = run_reference(spec, recipe, images, labels, args.device, args.precision, args.warmup,
                                          args.steps, compile_mode)
                    else:
                        t = run_coursework(spec, recipe, images, labels, args.device, args.warmup, args.steps,
                                           args.workers)
                    results[variant].append(t)
        rate = {v: statistics.median(t.rate() for t in ts) for v, ts in results.items()}
        print(f"\nbatch {batch} ({recipe.optimizer.name} lr {recipe.optimizer.lr:g}, flip_crop)")
        print(f"  {'variant':<11} {'images/s':>9} {'mean':>9} {'vs ref':>7} {'first':>7} {'startup':>8}")
        for v, ts in results.items():
            ratio = f"{rate[v] / rate['reference']:.2f}x" if "reference" in rate else "-"
            mean = statistics.median(t.mean_rate() for t in ts)
            first = statistics.median(t.first_step_s for t in ts)
            startup = statistics.median(t.startup_s for t in ts)
            print(f"  {v:<11} {rate[v]:9.1f} {mean:9.1f} {ratio:>7} {first:7.2f} {startup:8.2f}")
        if "archspec" in rate and "coursework" in rate:
            print(f"  archspec / coursework: {rate['archspec'] / rate['coursework']:.2f}x")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
