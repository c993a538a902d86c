"""Training and evaluation: `train(spec, recipe, ...)` and `evaluate(spec, checkpoint, ...)`.

The names are resolved lazily so that importing `archspec.train` (e.g. for `RunResult` in a
type hint, or by the CLI module at start-up) does not pull in torch until something runs. No
submodule shares a public name (the evaluation code lives in `evaluation`, not `evaluate`): a
submodule is bound as an attribute of the package when it is first imported, which would
replace the function of the same name.

Modules: `loop` (the phases of a run), `setup` (set-up phase), `state` (the `Run` every phase
carries), `checkpoint` (what checkpoints hold, their integrity, resume checks), `checkpoint_schema`
(the type of every field a reader uses), `observers` (progress, run files, plots, and the seam for
loggers), `evaluation`, `prepare` (spec + recipe for a run, as the CLI and sweeps choose them), and
the single concerns `device`, `distributed`, `ema`, `tta`, `whiten`, `torch_compile`, `stop`,
`rundir`, `runlock` (one owner per run directory), `divergence` (NaN, blow-up, collapse to chance,
the lr to try), `memory_check` (will it fit), `report`; the observers `early_stop` and `tracking`
(with `tensorboard_log`, `mlflow_log`); `lr_find` (the learning-rate range test).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["EvalResult", "RunResult", "evaluate", "train"]

_HOMES = {"train": "loop", "RunResult": "state", "evaluate": "evaluation", "EvalResult": "evaluation"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'archspec.train' has no attribute {name!r}")
    value = getattr(import_module(f"archspec.train.{home}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
