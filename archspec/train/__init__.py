"""Training and evaluation: `train(spec, recipe, ...)` and `evaluate(spec, checkpoint, ...)`.

The names are resolved lazily so that importing `archspec.train` (e.g. for `RunResult` in a
type hint, or by the CLI module at start-up) does not pull in torch until something runs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EvalResult", "RunResult", "evaluate", "train"]


def __getattr__(name: str) -> Any:
    if name in ("train", "RunResult"):
        from archspec.train import loop

        return getattr(loop, name)
    if name in ("evaluate", "EvalResult"):
        from archspec.train import evaluate as evaluate_module

        return getattr(evaluate_module, name)
    raise AttributeError(f"module 'archspec.train' has no attribute {name!r}")
