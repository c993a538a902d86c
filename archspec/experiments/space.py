"""The search-space file of `archspec tune`: what a study varies, what it optimises, how it searches.

```yaml
metric: test_acc                                   # reported every epoch; the last value is the score
params:
  optimizer.lr: {low: 1.0e-4, high: 10, log: true} # a float range (log-uniform)
  batch_size: {type: int, low: 32, high: 256, step: 32}
  augment: [none, flip_crop]                       # a list: one of these values
  vars.width: {type: int, low: 8, high: 64}        # a `vars:` value of the spec
sampler: {name: tpe, seed: 0}
pruner: {name: median, startup_trials: 2}
```

Why a file of its own rather than command-line flags: a study is resumed and compared later, so
its definition must be kept whole (it is stored in the study) and checked before the first trial
trains. It is read like a spec (archspec.spec.yamlload: positions, no duplicate keys, bounded
size) and every problem is one located line, ``space.yaml:4:17: params.optimizer.lr.low: ...``.
Keys are recipe keys as `--set` takes them, or `vars.NAME` for a spec variable; each value the
space can produce at its edges (both ends of a range, every listed value) is applied to the recipe
or the spec once here, so a typo or an impossible width fails now and not in trial 17.

No Optuna import here: the file is validated (and `tune --dry-run` works) without it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from archspec.errors import ArchspecError, did_you_mean
from archspec.spec.schema_check import dotted, validate_against
from archspec.spec.yamlload import Positions, load_yaml, locate

METRICS = ("test_acc", "test_loss", "train_acc", "train_loss")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "halving", "hyperband", "none")
SCALAR = {"type": ["number", "string", "boolean", "null"]}

_RANGE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["float", "int"]},
        "low": {"type": "number"},
        "high": {"type": "number"},
        "log": {"type": "boolean"},
        "step": {"type": "number", "exclusiveMinimum": 0},
        "choices": {"type": "array", "minItems": 1, "items": SCALAR},
    },
}
_NAMED = {  # `sampler: tpe` or `sampler: {name: tpe, ...}`
    "sampler": {"properties": {"name": {"enum": list(SAMPLERS)}, "seed": {"type": "integer"},
                               "startup_trials": {"type": "integer", "minimum": 0}}},
    "pruner": {"properties": {"name": {"enum": list(PRUNERS)},
                              "startup_trials": {"type": "integer", "minimum": 0},
                              "warmup_epochs": {"type": "integer", "minimum": 0},
                              "min_epochs": {"type": "integer", "minimum": 1},
                              "reduction_factor": {"type": "integer", "minimum": 2}}},
}
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["params"],
    "properties": {
        "metric": {"enum": list(METRICS)},
        "direction": {"enum": ["maximize", "minimize"]},
        "params": {"type": "object",
                   "additionalProperties": {"anyOf": [{"type": "array", "minItems": 1, "items": SCALAR}, _RANGE]}},
        **{key: {"anyOf": [{"enum": list(SAMPLERS if key == "sampler" else PRUNERS)},
                           {"type": "object", "additionalProperties": False, "required": ["name"], **spec}]}
           for key, spec in _NAMED.items()},
    },
}


@dataclass(frozen=True)
class Param:
    """One searched key: a float or int range, or a list of choices."""

    key: str  # "optimizer.lr" (a recipe key) or "vars.width" (a spec variable)
    kind: str  # float | int | choice
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    @property
    def var(self) -> str | None:
        """The spec variable this sets, or None for a recipe key."""
        return self.key[len("vars."):] if self.key.startswith("vars.") else None

    def edges(self) -> list[Any]:
        """The values checked before the study starts: both ends of a range, or every choice."""
        if self.kind == "choice":
            return list(self.choices)
        cast = int if self.kind == "int" else float
        return [cast(self.low), cast(self.high)]

    def grid_values(self) -> list[Any] | None:
        """Every value, when there are finitely many small ones (choices, or an int range with a step)."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            step = int(self.step or 1)
            return list(range(int(self.low), int(self.high) + 1, step))
        return None

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        text = f"{self.kind} {self.low:g} .. {self.high:g}"
        return text + (" (log)" if self.log else "") + (f" step {self.step:g}" if self.step else "")


@dataclass
class SearchSpace:
    """A validated search-space file."""

    file: str
    params: list[Param]
    metric: str = "test_acc"
    direction: str = "maximize"
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe"})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    positions: Positions = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """What the study stores, to refuse resuming it with another definition (JSON types only)."""
        return json.loads(json.dumps({"metric": self.metric, "direction": self.direction, "sampler": self.sampler,
                                      "pruner": self.pruner, "params": [asdict(p) for p in self.params]}))

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space; every parameter must have finitely many values."""
        return {p.key: p.grid_values() or [] for p in self.params}

    def grid_size(self) -> int:
        return math.prod(len(values) for values in self.grid().values())


def _error(positions: Positions, file: str, path: tuple, message: str, hint: str | None = None) -> ArchspecError:
    line, col = locate(positions, path)
    return ArchspecError(message, file=file, line=line, col=col, path=dotted(path), hint=hint)


def _param(key: str, raw: Any, positions: Positions, file: str) -> Param:
    here = ("params", key)
    if not key.strip() or any(not part for part in key.split(".")) or key == "vars":
        raise _error(positions, file, here + ("<key>",), f'"{key}" is not a recipe key or vars.NAME')
    if isinstance(raw, list):
        raw = {"choices": raw}
    if "choices" in raw:
        extra = sorted(set(raw) - {"choices"})
        if extra:
            raise _error(positions, file, here + (extra[0], "<key>"),
                         f'"{extra[0]}" does not go with choices: give either choices or low/high')
        if len({repr(c) for c in raw["choices"]}) != len(raw["choices"]):
            raise _error(positions, file, here + ("choices",), "a value is listed twice")
        return Param(key, "choice", choices=tuple(raw["choices"]))
    for end in ("low", "high"):
        if end not in raw:
            raise _error(positions, file, here, 'a range needs "low" and "high" (or give a list of choices)')
    kind = raw.get("type", "float")
    low, high, step, log = raw["low"], raw["high"], raw.get("step"), bool(raw.get("log", False))
    if kind == "int":
        for name, value in (("low", low), ("high", high), ("step", step)):
            if value is not None and (isinstance(value, bool) or not float(value).is_integer()):
                raise _error(positions, file, here + (name,), f"{name} of an int range must be a whole number")
    if not low < high:
        raise _error(positions, file, here + ("high",), f"high ({high:g}) must be greater than low ({low:g})")
    if log and low <= 0:
        raise _error(positions, file, here + ("low",), f"a log range needs low > 0, got {low:g}")
    if log and step is not None:
        raise _error(positions, file, here + ("step",), "a range cannot have both log and step")
    return Param(key, kind, low=low, high=high, log=log, step=step)


def _named(raw: Any, default: str) -> dict[str, Any]:
    if raw is None:
        return {"name": default}
    return {"name": raw} if isinstance(raw, str) else dict(raw)


def read_space(path: str | Path, *, sampler: str | None = None, pruner: str | None = None) -> SearchSpace:
    """Read and check the file itself (schema and ranges); `sampler`/`pruner` replace the file's choice."""
    file = str(path)
    data, positions = load_yaml(path, file=file)
    if not isinstance(data, dict):
        raise ArchspecError("a search space must be a mapping with `params:`", file=file, line=1, col=1)
    validate_against(data, SCHEMA, positions, file)
    if not data["params"]:
        raise _error(positions, file, ("params",), "no parameters to search: list at least one",
                     hint="e.g. params: {optimizer.lr: {low: 1.0e-4, high: 1.0e-1, log: true}}")
    params = [_param(str(key), raw, positions, file) for key, raw in data["params"].items()]
    metric = data.get("metric", "test_acc")
    space = SearchSpace(file=file, params=params, metric=metric,
                        direction=data.get("direction", "minimize" if metric.endswith("loss") else "maximize"),
                        sampler=_named(data.get("sampler"), "tpe"), pruner=_named(data.get("pruner"), "median"),
                        positions=positions)
    for flag, value, names in (("--sampler", sampler, SAMPLERS), ("--pruner", pruner, PRUNERS)):
        if value is not None and value not in names:
            raise ArchspecError(f'unknown {flag[2:]} "{value}"{did_you_mean(value, names)}; choose one of '
                                f"{', '.join(names)}", path=flag)
    if sampler:
        space.sampler = {"name": sampler, **({"seed": space.sampler["seed"]} if "seed" in space.sampler else {})}
    if pruner:
        space.pruner = {"name": pruner}
    if space.sampler["name"] == "grid":
        for param in params:
            if param.grid_values() is None:
                raise _error(positions, file, ("params", param.key, "<key>"),
                             "the grid sampler needs a list of values (or an int range) for every parameter",
                             hint=f"e.g. {param.key}: [{param.low:g}, {param.high:g}]")
    return space


def check_against(space: SearchSpace, apply: Callable[[Param, Any], None], spec_vars: dict[str, Any]) -> None:
    """Check that every `vars.NAME` is one of `spec_vars`, then apply every edge value of every parameter
    through `apply(param, value)`; an ArchspecError it raises is re-raised at the parameter's line in the
    space file (with the spec's location, if any)."""
    for param in space.params:
        if param.var is not None and param.var not in spec_vars:
            raise _error(space.positions, space.file, ("params", param.key, "<key>"),
                         f'the spec has no variable "{param.var}"{did_you_mean(param.var, spec_vars)}; '
                         f"its vars: {', '.join(spec_vars) or 'none'}")
    for param in space.params:
        for value in param.edges():
            try:
                apply(param, value)
            except ArchspecError as e:
                from_set = not e.file and (e.path or "").startswith("--set")
                detail = e.message if from_set else str(e)
                raise _error(space.positions, space.file, ("params", param.key, "<key>"),
                             f"{param.key}={value!r} does not work: {detail}", hint=e.hint) from None
