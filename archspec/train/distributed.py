"""Training on several processes (GPUs) with PyTorch's own engine: torchrun + DistributedDataParallel.

archspec does not manage processes itself. `archspec train ... --devices N` re-runs the same command
under `python -m torch.distributed.run --standalone --nproc-per-node N` (`launch`), and each process
torchrun starts finds RANK / WORLD_SIZE / LOCAL_RANK in its environment (`from_environment`). The
training loop then asks this module for the few collective decisions a run needs:

* `Group.decide(fn)`: rank 0 runs `fn` (create the run directory) and every rank gets its result, or
  the same error, so the ranks agree on where the run lives without racing to create it.
* `Group.sum(values)`: the epoch's loss sum, correct count and sample count added over the ranks, so
  every rank reports (and checks for divergence on) the numbers of the whole training set.
* `Group.any(flag)`: a stop request (Ctrl-C, SIGTERM) seen by any rank stops every rank at the same
  step; a rank that stopped alone would leave the others waiting in DDP's gradient all-reduce.

With one process (no torchrun, or WORLD_SIZE=1) `from_environment` returns a `Group` whose
collectives are plain local operations, so the loop has a single code path.

`recorded_exit` carries the worker's real exit code (3 diverged, 130 interrupted, 2 bad input) back
to `launch` through a file, since torchrun itself only reports "a child failed" (exit code 1).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archspec.errors import ArchspecError
from archspec.train.stop import StopRequest

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
EXIT_FILE_ENV = "ARCHSPEC_EXIT_FILE"  # where rank 0 writes its exit code for `launch`


def torchrun_worker() -> bool:
    """True in a process started by torchrun (its rendezvous variables are set)."""
    return all(key in os.environ for key in ENV_KEYS)


def _env_int(key: str, default: int) -> int:
    try:
        return int(os.environ.get(key, default))
    except ValueError:
        raise ArchspecError(f"environment variable {key}={os.environ[key]!r} is not an integer") from None


def current_rank() -> int:
    """This process's rank (0 outside torchrun); cheap, imports nothing."""
    return _env_int("RANK", 0) if torchrun_worker() else 0


@dataclass
class Group:
    """This process's place in the job. `world_size == 1`: a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised: bool = False  # whether we created the process group (and must destroy it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: Sequence[Any], device) -> list[float]:
        """Add scalars (numbers or 0-d tensors) over the ranks in one all-reduce; floats back on every rank."""
        import torch

        parts = [v.detach().to(device=device, dtype=torch.float64).reshape(1) if isinstance(v, torch.Tensor)
                 else torch.tensor([float(v)], dtype=torch.float64, device=device) for v in values]
        flat = torch.cat(parts)
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        return flat.tolist()

    def any(self, flag: bool, device) -> bool:
        """True on every rank when `flag` is true on at least one."""
        if not self.enabled:
            return bool(flag)
        return self.sum([1.0 if flag else 0.0], device)[0] > 0

    def decide(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on rank 0 only and hand its (picklable) result to every rank. An ArchspecError on
        rank 0 is raised on every rank, so no rank is left waiting for a decision that never comes."""
        if not self.enabled:
            return fn()
        import torch.distributed as dist

        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except ArchspecError as exc:
                box[0] = ("error", exc)
                dist.broadcast_object_list(box, src=0)
                raise
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise value
        return value

    def broadcast_buffers(self, module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics, which each rank updates on
        its own shard), so evaluation sees the model rank 0 checkpoints and all ranks agree."""
        if not self.enabled:
            return
        import torch.distributed as dist

        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Destroy the process group we created (idempotent)."""
        if self.initialised:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.initialised = False


def from_environment() -> Group:
    """The Group torchrun describes in the environment (rank 0 of 1 when not under torchrun).
    Does not touch the process group: `setup` does that once the device is known."""
    if not torchrun_worker():
        return Group()
    rank, world, local = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ArchspecError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return Group(rank=rank, world_size=world, local_rank=local)


def setup(group: Group, device):
    """Initialise the process group for `group` on `device` (a resolved torch.device) and return the
    device this rank computes on: `cuda:LOCAL_RANK` with NCCL on CUDA, the CPU with Gloo otherwise."""
    import torch
    import torch.distributed as dist

    if not group.enabled:
        return device
    if device.type == "mps":
        raise ArchspecError("multi-process training is not supported on Apple MPS",
                            hint="train on one device (drop --devices), or use CUDA GPUs / --device cpu")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if group.local_rank >= count:
            raise ArchspecError(f"process {group.local_rank} of this machine has no GPU: only {count} visible",
                                hint=f"use --devices {count} or fewer")
        device = torch.device("cuda", group.local_rank)
        torch.cuda.set_device(device)
        backend, extra = "nccl", {"device_id": device}
    else:
        backend, extra = "gloo", {}
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=group.rank, world_size=group.world_size, **extra)
        group.initialised = True
        atexit.register(group.close)  # also when the run ends with an error
    return device


def wrap_model(model, group: Group, device):
    """DistributedDataParallel around `model` when there are several ranks; the model itself otherwise.
    DDP broadcasts rank 0's weights at construction and all-reduces gradients in backward."""
    if not group.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


class GroupStopRequest(StopRequest):
    """StopRequest for torchrun workers. One Ctrl-C reaches a worker twice: from the terminal (the
    whole foreground process group gets SIGINT) and again when torchrun forwards it. The plain
    StopRequest would take the second one as "stop now"; here signals within `DEBOUNCE_SECONDS` of
    the first count as the same request."""

    DEBOUNCE_SECONDS = 5.0

    def __init__(self) -> None:
        super().__init__()
        self._first_at: float | None = None

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if self._first_at is not None and now - self._first_at < self.DEBOUNCE_SECONDS:
            return
        if self._first_at is None:
            self._first_at = now
        super()._handle(signum, frame)


def stop_request(group: Group) -> StopRequest:
    return GroupStopRequest() if group.enabled else StopRequest()


# --- the launcher side: `archspec train --devices N` ----------------------------------------------


def argv_from_context(ctx, *, drop: Sequence[str] = ()) -> list[str]:
    """Rebuild a command's arguments from a click context's parsed values (options that differ from
    their defaults, then positionals), leaving out the parameters named in `drop`. Works whether the
    command came from a shell (sys.argv) or from a test runner."""
    options: list[str] = []
    positionals: list[str] = []
    for param in ctx.command.params:
        if param.name in drop:
            continue
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":  # (typer vendors click: no isinstance on its classes)
            values = value if isinstance(value, list | tuple) else [value]
            positionals.extend(str(v) for v in values if v is not None)
            continue
        if value is None or value == param.default or (param.multiple and not value):
            continue
        flag = param.opts[0]
        if param.is_flag:
            if value:
                options.append(flag)
            elif param.secondary_opts:
                options.append(param.secondary_opts[0])
            continue
        for item in value if param.multiple else [value]:
            options.extend([flag, str(item)])
    return [*positionals, *options]


def torchrun_command(nproc: int, command: Sequence[str]) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc-per-node N -m archspec <command...>`.
    --standalone runs a local rendezvous on a free port: nothing to configure on one machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "archspec", *command]


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def check_devices(nproc: int, device: str, *, force: bool = False) -> None:
    """Refuse `--devices N` where this machine cannot run N processes on the requested device: more
    processes than GPUs, or - for CPU (Gloo) processes - than CPU cores unless `force` (each process
    holds a model and its data, ~1 GB for a small one, and they would only take turns on the cores)."""
    if nproc < 1:
        raise ArchspecError(f"--devices must be at least 1, got {nproc}")
    wanted = (device or "auto").strip().lower()
    if wanted != "cpu":
        import torch

        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            if nproc > count:
                raise ArchspecError(f"--devices {nproc} needs {nproc} GPUs; this machine has {count}",
                                    hint=f"use --devices {count}, or --device cpu for CPU processes")
            return
        if wanted.startswith("cuda"):
            raise ArchspecError(f'device "{device}" requested but CUDA is not available here',
                                hint="use --device cpu (or auto)")
        if wanted == "mps":
            raise ArchspecError("multi-process training is not supported on Apple MPS",
                                hint="drop --devices, or use --device cpu")
    cores = cpu_cores()
    if nproc > cores and not force:
        raise ArchspecError(f"--devices {nproc} would start {nproc} CPU processes on {cores} CPU core(s)",
                            hint=f"use --devices {cores} or fewer, or pass --force to start them anyway")


def launch(nproc: int, command: Sequence[str]) -> int:
    """Run `archspec <command>` on `nproc` processes under torchrun; return the run's exit code.

    While torchrun runs, this process ignores SIGINT (a Ctrl-C reaches the workers directly and they
    stop together, saving their state) and passes SIGTERM on to torchrun. The exit code is rank 0's
    own (0, 2, 3, 130) when it recorded one, else torchrun's.
    """
    with tempfile.TemporaryDirectory(prefix="archspec-launch-") as tmp:
        exit_file = Path(tmp) / "exit-code"
        env = dict(os.environ, **{EXIT_FILE_ENV: str(exit_file)})
        proc = subprocess.Popen(torchrun_command(nproc, command), env=env)
        previous = {}
        with contextlib.suppress(ValueError):  # not the main thread: leave the handlers alone
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
            previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, lambda s, f: proc.send_signal(signal.SIGTERM))
        try:
            returncode = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        try:
            return int(exit_file.read_text().strip())
        except (OSError, ValueError):
            return returncode


def _write_exit_code(code: int) -> None:
    path = os.environ.get(EXIT_FILE_ENV)
    if path and current_rank() == 0:
        with contextlib.suppress(OSError):
            Path(path).write_text(f"{int(code)}\n")


def recorded_exit(fn):
    """Decorator for the `train` command in torchrun workers: records rank 0's exit code for `launch`,
    and keeps ranks other than 0 from printing the same bad-input error N times (they exit 2 quietly)."""
    import typer

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not torchrun_worker():
            return fn(*args, **kwargs)
        try:
            result = fn(*args, **kwargs)
        except typer.Exit as exc:
            _write_exit_code(exc.exit_code)
            raise
        except ArchspecError:
            _write_exit_code(2)
            if current_rank() != 0:
                raise typer.Exit(2) from None
            raise
        except KeyboardInterrupt:
            _write_exit_code(130)
            raise
        _write_exit_code(0)
        return result

    return wrapper
