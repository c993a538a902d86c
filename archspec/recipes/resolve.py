"""Find, merge, override and validate a recipe: `load_recipe(...) -> Recipe`. No torch import.

The steps, in order:

1. Look the recipe up: a built-in name (``adam``) or a file (anything with a ``/`` or ending
   ``.yaml``/``.yml``). Files are read with the position-aware loader, so every value knows the
   ``file:line:col`` it came from.
2. ``extends``: load the parent first and deep-merge this file over it. Mappings merge key by key,
   except that switching *kind* (another optimizer ``name``, loss ``name``, or schedule ``type`` /
   ``phases``) replaces the whole section: parameters of the old kind would not make sense.
3. Overrides (``--set key.path=value``, ``--epochs``, ``--batch-size``, ``--lr``), each checked
   against the schema's key paths first so a typo is named with a suggestion.
4. JSON Schema validation (``schema.json``), then the rules JSON Schema phrases badly (which keys
   apply to which optimizer or schedule piece). Every error points at the file position of the
   offending value, or at the ``--set`` option that supplied it.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from archspec.catalog import IMAGEFOLDER_PREFIX, dataset_info
from archspec.errors import ArchspecError, did_you_mean
from archspec.recipes.recipe import (
    COMMON_OPTIMIZER_KEYS,
    ONECYCLE_DEFAULTS,
    OPTIMIZER_KEYS,
    PHASE_DEFAULTS,
    Recipe,
    recipe_from,
)

BUILTIN_DIR = Path(__file__).with_name("builtin")
SCHEMA_PATH = Path(__file__).with_name("schema.json")

# PyYAML (YAML 1.1) reads `1e-3` as a *string*; recipes are full of such numbers.
_FLOAT_RE = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+$")
# Values that are free text (never coerced to numbers).
_TEXT_KEYS = {"name", "description", "extends", "dataset", "augment", "overrides"}


@functools.cache
def recipe_schema() -> dict[str, Any]:
    """The recipe JSON Schema shipped with the package."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def builtin_names() -> list[str]:
    """Names of the built-in recipes (the YAML files in archspec/recipes/builtin/), sorted."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def builtin_recipes() -> list[Recipe]:
    """Every built-in recipe, loaded and validated."""
    return [load_recipe(name) for name in builtin_names()]


def is_path_like(ref: str | Path) -> bool:
    """A recipe reference is a file when it is a Path, contains a slash, or ends in .yaml/.yml."""
    if isinstance(ref, Path):
        return True
    return "/" in ref or "\\" in ref or ref.endswith((".yaml", ".yml"))


def load_recipe(
    name_or_path: str | Path | None,
    *,
    overrides: Iterable[str] = (),
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int | None = None,
    threads: int | None = None,
    default: str = "adam",
) -> Recipe:
    """Resolve a recipe by built-in name or file path, apply overrides, validate, return a `Recipe`.

    `overrides` are ``key.path=value`` strings (values parsed as YAML; ``null`` removes a key so its
    default applies). `epochs`, `batch_size`, `lr`, `seed` and `threads` are the CLI's shortcut
    options. `None` for `name_or_path` means `default`. Any problem raises an `ArchspecError` that
    names the file position (or ``--set`` option) of the offending value. The changes are recorded
    in the recipe (`overrides`, and the description), see `_record_overrides`.
    """
    ref = default if name_or_path is None else name_or_path
    if isinstance(ref, str) and not ref.strip():
        raise ArchspecError("empty recipe name", hint=f"built-in recipes: {', '.join(builtin_names())}")
    origins = _Origins()
    data, source = _load_chain(ref, Path.cwd(), (), origins)

    applied = []
    for item in overrides:
        _apply_override(data, origins, item)
        applied.append(f"--set {item.strip()}")
    for flag, path, value in (
        ("--epochs", ("epochs",), epochs),
        ("--batch-size", ("batch_size",), batch_size),
        ("--lr", ("optimizer", "lr"), lr),
        ("--seed", ("seed",), seed),
        ("--threads", ("threads",), threads),
    ):
        if value is not None:
            _set_path(data, path, value, origins, flag)
            applied.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    if applied:
        _record_overrides(data, applied)

    _expand_shorthands(data)
    _coerce_numbers(data)
    _validate_schema(data, origins)
    _check_semantics(data, origins)
    return recipe_from(data, name=data["name"], source=source)


_CHANGED_RE = re.compile(r" \[changed by: .*\]$")


def _record_overrides(data: dict, applied: list[str]) -> None:
    """Say in the recipe itself how the command line changed it.

    A run's recipe.yaml is read later, by people and by `compare`: after `--epochs 2` it must not
    still describe "50 epochs". `overrides` lists every change in order (a run's recipe.yaml loaded
    again keeps its list and adds the new ones), and the description ends in ``[changed by: ...]``
    unless the description itself was overridden.
    """
    data["overrides"] = [*(data.get("overrides") or []), *applied]
    if any(item.startswith("--set description=") for item in applied):
        return
    base = _CHANGED_RE.sub("", str(data.get("description") or ""))
    data["description"] = f"{base} [changed by: {', '.join(data['overrides'])}]".strip()


# --- where values came from ------------------------------------------------------------------


class _Origins:
    """Maps each key path of the merged recipe to the file (or CLI option) that supplied it."""

    def __init__(self) -> None:
        self.by_path: dict[tuple, str] = {}
        self.positions: dict[str, dict[tuple, tuple[int, int]]] = {}

    def claim(self, file: str, prefix: tuple) -> None:
        """Everything `file` wrote under `prefix` now comes from `file`."""
        for path in self.positions[file]:
            if path[: len(prefix)] == prefix and not (path and path[-1] == "<key>"):
                self.by_path[path] = file

    def drop(self, prefix: tuple) -> None:
        for path in [p for p in self.by_path if p[: len(prefix)] == prefix]:
            del self.by_path[path]

    def error(self, message: str, path: tuple, hint: str | None = None) -> ArchspecError:
        from archspec.spec.schema_check import dotted
        from archspec.spec.yamlload import locate

        probe = tuple(path)
        while probe and probe not in self.by_path:
            probe = probe[:-1]
        source = self.by_path.get(probe)
        where = dotted(path) or "(top level)"
        if source is None:
            return ArchspecError(message, path=where, hint=hint)
        if source in self.positions:
            line, col = locate(self.positions[source], path)
            return ArchspecError(message, file=source, line=line, col=col, path=where, hint=hint)
        label = f"--set {dotted(path)}" if source == "--set" else source  # a CLI option
        return ArchspecError(message, path=label, hint=hint)


# --- loading files and extends ---------------------------------------------------------------


def _resolve_ref(ref: str | Path, base_dir: Path) -> tuple[Path, str, str, str]:
    """(path, display name for errors, default recipe name, source label) for a reference."""
    if is_path_like(ref):
        path = Path(ref).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        if not path.exists():
            raise ArchspecError(f'recipe file "{ref}" not found', file=str(ref))
        display = str(ref) if not Path(ref).is_absolute() and base_dir == Path.cwd() else str(path)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-.") or "recipe"
        return path, display, stem, display
    names = builtin_names()
    name = str(ref)
    if name not in names:
        raise ArchspecError(
            f'unknown recipe "{name}"{did_you_mean(name, names)}; built-in recipes: {", ".join(names)}',
            hint="a recipe file is given as a path (with a / or ending in .yaml), e.g. ./my-recipe.yaml",
        )
    path = BUILTIN_DIR / f"{name}.yaml"
    return path, str(path), name, f"builtin:{name}"


def _load_chain(ref: str | Path, base_dir: Path, chain: tuple[str, ...], origins: _Origins) -> tuple[dict, str]:
    """Load `ref` and, recursively, what it extends; returns (merged data, source label)."""
    from archspec.spec.yamlload import load_yaml

    path, display, stem, source = _resolve_ref(ref, base_dir)
    key = str(path.resolve())
    if key in chain:
        raise ArchspecError(f"extends cycle: {' -> '.join([*chain, key])}", file=display)
    data, positions = load_yaml(path, file=display)
    if not isinstance(data, dict):
        raise ArchspecError("a recipe must be a mapping (keys like epochs, batch_size, optimizer)",
                            file=display, line=1, col=1)
    origins.positions[display] = positions
    _expand_shorthands(data)
    parent = data.pop("extends", None)
    if parent is None:
        merged = data
        origins.claim(display, ())
    else:
        if not isinstance(parent, str) or not parent.strip():
            line, col = positions.get(("extends",), (None, None))
            raise ArchspecError("extends must be a recipe name or a path to a recipe file",
                                file=display, line=line, col=col, path="extends")
        try:
            merged, _ = _load_chain(parent.strip(), path.parent, (*chain, key), origins)
        except ArchspecError as e:
            if e.file is None:  # e.g. an unknown built-in name: say which file asked for it
                line, col = positions.get(("extends",), (None, None))
                raise ArchspecError(e.message, file=display, line=line, col=col, path="extends",
                                    hint=e.hint) from None
            raise
        origins.by_path[()] = display
        _merge_into(merged, data, (), origins, display)
    merged["name"] = data.get("name") or stem
    return merged, source


def _switches_kind(path: tuple, old: dict, new: dict) -> bool:
    """Whether `new` names a different optimizer / loss / schedule than `old` (then it replaces)."""
    if path in (("optimizer",), ("loss",)):
        return "name" in new and new["name"] != old.get("name")
    if path == ("schedule",):
        return "phases" in new or ("type" in new and new["type"] != old.get("type"))
    return False


def _merge_into(base: dict, over: dict, path: tuple, origins: _Origins, file: str) -> None:
    for k, v in over.items():
        p = (*path, k)
        old = base.get(k)
        if isinstance(v, dict) and isinstance(old, dict) and not _switches_kind(p, old, v):
            origins.by_path[p] = file
            _merge_into(old, v, p, origins, file)
        else:
            origins.drop(p)
            base[k] = copy.deepcopy(v)
            origins.claim(file, p)


def _expand_shorthands(data: dict) -> None:
    """``schedule: cosine`` -> ``{type: cosine}``, ``loss: nll`` -> ``{name: nll}`` (idempotent)."""
    if isinstance(data.get("schedule"), str):
        data["schedule"] = {"type": data["schedule"]}
    if isinstance(data.get("loss"), str):
        data["loss"] = {"name": data["loss"]}


def _coerce_numbers(value: Any, key: str | None = None) -> Any:
    """Turn strings like "1e-3" (which YAML 1.1 leaves as text) into floats, in place for containers."""
    if isinstance(value, dict):
        for k in list(value):
            if k not in _TEXT_KEYS or key is not None:
                value[k] = _coerce_numbers(value[k], k)
        return value
    if isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = _coerce_numbers(item, key)
        return value
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        return float(value)
    return value


# --- overrides -------------------------------------------------------------------------------


def _parse_value(raw: str, key: str) -> Any:
    from archspec.spec.yamlload import load_yaml

    if not raw.strip():
        return ""
    value, _ = load_yaml("", text=raw, file=f"--set {key}")
    return _coerce_numbers(value, "value")


def _deref(node: dict) -> dict:
    root = recipe_schema()
    while "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _check_key_path(key: str, data: dict) -> tuple:
    """Turn "schedule.phases.1.until" into a key path, checking each part against the schema."""
    parts = key.split(".")
    if any(not p for p in parts):
        raise ArchspecError("empty part in key path", path=f"--set {key}")
    path: list = []
    node: dict = _deref(recipe_schema())
    here: Any = data
    for i, part in enumerate(parts):
        if isinstance(here, list):
            where = ".".join(parts[:i])
            if not part.isdigit():
                raise ArchspecError(f'"{where}" is a list: use an index, e.g. {where}.0', path=f"--set {key}")
            index = int(part)
            if index >= len(here):
                raise ArchspecError(f"index {index} is out of range ({where} has {len(here)} item"
                                    f"{'s' if len(here) != 1 else ''})", path=f"--set {key}")
            path.append(index)
            node = _deref(_pick_branch(node, "array").get("items", {}))
            here = here[index]
            continue
        branch = _pick_branch(node, "object")
        props = branch.get("properties")
        if props is None:
            where = ".".join(parts[:i]) or "(top level)"
            raise ArchspecError(f'"{where}" has no sub-keys', path=f"--set {key}")
        if part not in props:
            where = ".".join(parts[:i])
            raise ArchspecError(
                f'unknown key "{part}"{did_you_mean(part, props)}; '
                f"{where + ' keys' if where else 'recipe keys'}: {', '.join(props)}",
                path=f"--set {key}",
            )
        path.append(part)
        node = _deref(props[part])
        here = here.get(part) if isinstance(here, dict) else None
    return tuple(path)


def _pick_branch(node: dict, want: str) -> dict:
    node = _deref(node)
    if "anyOf" in node:
        key = "properties" if want == "object" else "items"
        for branch in node["anyOf"]:
            branch = _deref(branch)
            if key in branch:
                return branch
    return node


def _apply_override(data: dict, origins: _Origins, item: str) -> None:
    if "=" not in item:
        raise ArchspecError(f'"{item}" is not KEY=VALUE', path="--set",
                            hint="example: --set optimizer.lr=1e-3")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ArchspecError(f'"{item}" has no key before "="', path="--set")
    _expand_shorthands(data)
    path = _check_key_path(key, data)
    if path[0] == "extends":
        raise ArchspecError("extends cannot be overridden: give that recipe instead (--recipe NAME_OR_PATH)",
                            path=f"--set {key}")
    _set_path(data, path, _parse_value(raw, key), origins, "--set")


def _set_path(data: dict, path: tuple, value: Any, origins: _Origins, label: str) -> None:
    """Set (or with None: remove) the value at `path`, recording `label` as where it came from."""
    here: Any = data
    for depth, part in enumerate(path[:-1]):
        if isinstance(part, int):
            here = here[part]
            continue
        if not isinstance(here.get(part), dict | list):  # e.g. `normalize: true` -> {mean: ...}
            here[part] = {}
            origins.drop(path[: depth + 1])
            origins.by_path[path[: depth + 1]] = label
        here = here[part]
    last = path[-1]
    origins.drop(path)
    if value is None:
        if isinstance(here, dict):
            here.pop(last, None)
        else:
            here[last] = None
        return
    old = here.get(last) if isinstance(here, dict) else here[last]
    here[last] = value
    origins.by_path[path] = label
    if value != old and len(path) == 2:
        _drop_inapplicable(here, path, origins)


def _drop_inapplicable(section: dict, path: tuple, origins: _Origins) -> None:
    """After `--set optimizer.name=sgd` (etc.), forget parameters that only the old kind had."""
    allowed: Iterable[str] | None = None
    if path == ("optimizer", "name") and section["name"] in OPTIMIZER_KEYS:
        allowed = (*COMMON_OPTIMIZER_KEYS, *OPTIMIZER_KEYS[section["name"]])
    elif path == ("loss", "name") and section["name"] == "nll":
        allowed = ("name",)
    elif path == ("schedule", "type") and isinstance(section["type"], str):
        kind = section["type"]
        params = ONECYCLE_DEFAULTS if kind == "onecycle" else PHASE_DEFAULTS.get(kind)
        if params is not None:
            allowed = ("interval", "type", *params)
    elif path == ("schedule", "phases"):
        allowed = ("interval", "phases")
    if allowed is None:
        return
    for k in [k for k in section if k not in allowed]:
        del section[k]
        origins.drop((path[0], k))


# --- validation ------------------------------------------------------------------------------


def _most_relevant(errors: list) -> Any:
    """The error to report: typos (unknown keys) first, and inside anyOf the branch of the right type."""
    from jsonschema.exceptions import best_match

    typos = [e for e in errors if e.validator == "additionalProperties"]
    error = best_match(typos or errors)
    while error.validator in ("anyOf", "oneOf") and error.context:
        by_branch: dict[int, list] = {}
        for sub in error.context:
            by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
        # A branch whose own "type" check failed at this level is the wrong shape: skip it.
        shaped = [errs for errs in by_branch.values()
                  if not any(e.validator in ("type", "enum") and not e.relative_path for e in errs)]
        candidates = shaped[0] if len(shaped) == 1 else list(error.context)
        typos = [e for e in candidates if e.validator == "additionalProperties"]
        error = best_match(typos or candidates)
    return error


def _validate_schema(data: dict, origins: _Origins) -> None:
    from archspec.spec.schema_check import check_schema

    check_schema(data, recipe_schema(), lambda path, message: origins.error(message, path), choose=_most_relevant)


def _keys_text(keys: Iterable[str]) -> str:
    return ", ".join(keys)


def _check_semantics(data: dict, origins: _Origins) -> None:
    """Rules the schema does not express: which keys apply to which kind of optimizer/schedule."""
    opt = data["optimizer"]
    name = opt["name"]
    allowed = (*COMMON_OPTIMIZER_KEYS, *OPTIMIZER_KEYS[name])
    for k in opt:
        if k not in allowed:
            raise origins.error(f'"{k}" does not apply to {name}; {name} takes: {_keys_text(allowed[1:])}',
                                ("optimizer", k))
    if opt.get("nesterov") and not opt.get("momentum"):
        raise origins.error("nesterov needs momentum > 0", ("optimizer", "nesterov"))

    loss = data.get("loss") or {}
    if loss.get("name") == "nll" and loss.get("label_smoothing"):
        raise origins.error("label_smoothing is not supported with nll (use cross_entropy or mse)",
                            ("loss", "label_smoothing"))

    normalize = data.get("normalize")
    if isinstance(normalize, dict) and len(normalize["mean"]) != len(normalize["std"]):
        raise origins.error(f"mean has {len(normalize['mean'])} values but std has {len(normalize['std'])}",
                            ("normalize",))

    augment = data.get("augment")
    if isinstance(augment, str):  # presets are checked here so the error has a file position;
        from archspec.data.augment import AUGMENT_PRESETS  # explicit lists are checked when built

        if augment not in AUGMENT_PRESETS:
            raise origins.error(f'unknown augment preset "{augment}"{did_you_mean(augment, AUGMENT_PRESETS)}; '
                                f"known: {', '.join(AUGMENT_PRESETS)}, or a list of torchvision.transforms.v2 "
                                "steps", ("augment",))

    dataset = data.get("dataset")
    if isinstance(dataset, str) and not dataset.startswith(IMAGEFOLDER_PREFIX):

        try:
            dataset_info(dataset)
        except ArchspecError as e:
            raise origins.error(e.message, ("dataset",)) from None

    if data.get("whiten") is not None and data.get("init") != "whiten":
        raise origins.error('whiten settings only apply with init: whiten (add it, or drop "whiten")', ("whiten",))

    _check_schedule(data.get("schedule") or {"type": "constant"}, name, origins)


def _check_piece(piece: dict, kind: str, extra: tuple[str, ...], path: tuple, origins: _Origins) -> None:
    params = ONECYCLE_DEFAULTS if kind == "onecycle" else PHASE_DEFAULTS[kind]
    allowed = (*extra, *params)
    what = f"a {kind} phase" if "until" in extra else f"schedule type {kind}"
    for k in piece:
        if k not in allowed:
            raise origins.error(f'"{k}" does not apply to {what}; it takes: {_keys_text(allowed)}', (*path, k))
    for k, default in params.items():
        if default is None and k not in piece and k != "max_lr":
            raise origins.error(f'{what} needs "{k}"', path)


def _check_schedule(schedule: dict, optimizer: str, origins: _Origins) -> None:
    path = ("schedule",)
    if "phases" in schedule:
        for k in schedule:
            if k not in ("interval", "phases"):
                hint = ' (with "phases", each phase has its own type and parameters)'
                raise origins.error(f'"{k}" cannot be used together with "phases"{hint}', (*path, k))
        phases = schedule["phases"]
        previous_until = 0.0
        for i, phase in enumerate(phases):
            ppath = (*path, "phases", i)
            _check_piece(phase, phase["type"], ("type", "until", "epochs"), ppath, origins)
            last = i == len(phases) - 1
            has_until, has_epochs = "until" in phase, "epochs" in phase
            if has_until and has_epochs:
                raise origins.error('give "until" (fraction of the run) or "epochs", not both', (*ppath, "epochs"))
            if last and has_epochs:
                raise origins.error('the last phase runs to the end of the run: drop "epochs" '
                                    '(or write until: 1.0)', (*ppath, "epochs"))
            if last and has_until and phase["until"] != 1:
                raise origins.error(f"the last phase must run to the end of the run (until: 1.0), "
                                    f"not until: {phase['until']:g}", (*ppath, "until"))
            if not last and not (has_until or has_epochs):
                raise origins.error('needs "until" (a fraction of the run, e.g. 0.1) or "epochs" (a length)', ppath)
            if has_until:
                if phase["until"] <= previous_until:
                    raise origins.error(f"until must increase from phase to phase "
                                        f"(previous phase ends at {previous_until:g})", (*ppath, "until"))
                previous_until = phase["until"]
        return
    kind = schedule.get("type", "constant")
    _check_piece(schedule, kind, ("interval", "type"), path, origins)
    if kind == "onecycle":
        if schedule.get("cycle_momentum", True) and optimizer == "adagrad":
            raise origins.error("adagrad has no momentum to cycle: set cycle_momentum: false",
                                (*path, "cycle_momentum") if "cycle_momentum" in schedule else (*path, "type"))
        base = schedule.get("base_momentum", ONECYCLE_DEFAULTS["base_momentum"])
        top = schedule.get("max_momentum", ONECYCLE_DEFAULTS["max_momentum"])
        if base > top:
            raise origins.error(f"base_momentum ({base:g}) is above max_momentum ({top:g})", path)


def recipe_to_yaml(recipe: Recipe) -> str:
    """The resolved recipe as YAML text (what `archspec recipes show` prints); loads back unchanged.

    Block style for sections, flow style for short lists and for each schedule phase, so the
    output reads like the hand-written built-ins.
    """
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    class FlowMap(dict):
        pass

    def represent_list(dumper, data):
        flow = all(not isinstance(item, list | dict) for item in data)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

    Dumper.add_representer(list, represent_list)
    Dumper.add_representer(
        FlowMap, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
    )
    data = recipe.to_dict()
    if "phases" in data["schedule"]:
        data["schedule"]["phases"] = [FlowMap(p) for p in data["schedule"]["phases"]]
    header = f"# recipe {recipe.name}" + (f" (from {recipe.source})" if recipe.source else "") + ", fully resolved\n"
    return header + yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=1_000_000)
