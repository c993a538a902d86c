"""Where sweep cells and tune trials run: in this process, one after another, or as Ray tasks.

Both executors take a module-level function and its (picklable) arguments and hand back handles
to wait on, so `sweep` and `tune` have one loop whatever runs the work:

* `LocalExecutor` calls the function at once, in this process: one cell at a time, with the live
  progress display and Ctrl-C handling of `archspec train`.
* `RayExecutor` submits each call as a Ray task with its resources (`--cpus-per-trial`,
  `--gpus-per-trial`) to `ray.init(address=...)`: a running cluster, or a local Ray instance when no
  address is given. Ray retries a task whose worker process died (`max_retries`); the cell function
  then finds the checkpoint the dead attempt left and resumes from it (sweep.run_cell), so a killed
  worker costs at most one epoch.

`shared(cls, ...)` makes one object that every task can call (`Shared.call(name, *args)`): a plain
object here, a Ray actor on the driver's node there. `tune` keeps its Optuna study in one, so the
SQLite file has a single writer however many trials run at once.

Nothing here writes files: run directories are written by the training loop with the atomic
writers, on the path the driver chose (which a Ray worker must see: see folder_lock.check_visible).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from archspec.errors import ArchspecError
from archspec.extras import require

EXECUTORS = ("local", "ray")


class LocalShared:
    """An object tasks call directly (the local executor runs them in this process)."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.obj, method)(*args)


class RayShared:
    """A Ray actor handle with the same `call` as LocalShared (picklable: tasks receive it)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def call(self, method: str, *args: Any) -> Any:
        import ray

        return ray.get(getattr(self.actor, method).remote(*args))


@dataclass(eq=False)  # a handle: hashed by identity
class _Done:
    """A local call that has already run: its value, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None


class LocalExecutor:
    """Runs each submitted call immediately, in this process."""

    name = "local"

    def submit(self, fn: Callable, *args: Any, label: str = "") -> _Done:
        try:
            return _Done(value=fn(*args))
        except Exception as exc:  # noqa: BLE001 - handed to result(), which raises it where the caller waits
            return _Done(error=exc)

    def wait(self, handles: list) -> list:
        return list(handles)

    def result(self, handle: _Done) -> Any:
        if handle.error is not None:
            raise handle.error
        return handle.value

    def shared(self, cls: type, *args: Any) -> LocalShared:
        return LocalShared(cls(*args))

    def slots(self) -> int:
        return 1

    def cancel(self, handles: list) -> None:
        pass

    def close(self) -> None:
        pass


class RayExecutor:
    """Runs each submitted call as a Ray task; `close()` shuts down a Ray instance it started itself."""

    name = "ray"

    def __init__(self, *, address: str | None = None, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
                 max_retries: int = 3) -> None:
        if cpus_per_trial <= 0:
            raise ArchspecError(f"--cpus-per-trial must be > 0, got {cpus_per_trial:g}")
        if gpus_per_trial < 0:
            raise ArchspecError(f"--gpus-per-trial must be >= 0, got {gpus_per_trial:g}")
        self.ray = require("ray", feature="--executor ray")
        self.cpus, self.gpus, self.max_retries = float(cpus_per_trial), float(gpus_per_trial), int(max_retries)
        self.started = False
        if not self.ray.is_initialized():
            try:
                self.ray.init(address=address, include_dashboard=False, logging_level="WARNING")
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ArchspecError(f"cannot connect to Ray at {address or 'a new local instance'}: {first}",
                                    path="--address") from None
            self.started = True
        self._remote: dict[Callable, Any] = {}

    def submit(self, fn: Callable, *args: Any, label: str = "") -> Any:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self.ray.remote(fn)
        options = {"num_cpus": self.cpus, "num_gpus": self.gpus, "max_retries": self.max_retries}
        if label:
            options["name"] = label
        return remote.options(**options).remote(*args)

    def wait(self, handles: list) -> list:
        ready, _ = self.ray.wait(list(handles), num_returns=1)
        return ready

    def result(self, handle: Any) -> Any:
        from ray.exceptions import RayTaskError

        try:
            return self.ray.get(handle)
        except RayTaskError as exc:  # a user error in the task is a user error here: one line, exit 2
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ArchspecError):
                raise cause from None
            raise

    def shared(self, cls: type, *args: Any) -> RayShared:
        """An actor on this (the driver's) node: what it writes lands on the driver's file system."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = self.ray.get_runtime_context().get_node_id()
        actor = self.ray.remote(cls).options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False)).remote(*args)
        return RayShared(actor)

    def slots(self) -> int:
        """How many tasks the cluster can run at once with these resources (at least 1)."""
        total = self.ray.cluster_resources()
        fits = [total.get("CPU", 0.0) // self.cpus]
        if self.gpus:
            fits.append(total.get("GPU", 0.0) // self.gpus)
        return max(1, int(min(fits)))

    def threads(self) -> int:
        """torch threads for one task: the CPUs it reserved (at least 1)."""
        return max(1, int(self.cpus))

    def cancel(self, handles: list) -> None:
        for handle in handles:
            self.ray.cancel(handle, force=True)

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
        self.started = False


def make_executor(name: str, *, address: str | None = None, cpus_per_trial: float = 1.0,
                  gpus_per_trial: float = 0.0, max_retries: int = 3) -> LocalExecutor | RayExecutor:
    """The executor `--executor NAME` asks for; Ray-only options with `local` are an error."""
    if name == "local":
        extra = [flag for flag, given in (("--address", address is not None), ("--cpus-per-trial", cpus_per_trial != 1),
                                          ("--gpus-per-trial", gpus_per_trial != 0)) if given]
        if extra:
            raise ArchspecError(f"{', '.join(extra)} only apply to --executor ray", path="--executor local")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address=address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                           max_retries=max_retries)
    raise ArchspecError(f'unknown executor "{name}"; choose one of {", ".join(EXECUTORS)}', path="--executor")
