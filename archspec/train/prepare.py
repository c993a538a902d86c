"""What a run trains: the spec and the recipe, chosen the same way by `archspec train`, `sweep` and
`eval`/`export` (no torch import: the CLI calls this before anything trains).

The rules, in one place so the commands cannot drift apart:

* The spec is loaded, re-targeted to `data` when given. Without `data`, a run directory being
  resumed, evaluated or exported re-targets it the way that run was (`train --data X`): its
  spec.yaml tells, when its dataset, input shape or classes differ from the spec's own and
  re-targeting to its dataset reproduces them (`--data synthetic` keeps the spec's shapes, so the
  dataset name alone must be enough). So `--resume`, `eval` and `export` need not repeat `--data`.
* The recipe is the one named; else, when resuming, the run's own recipe.yaml; else the spec's
  `recipe:`; else `adam`. Overrides (`--set`, `--epochs`, `--batch-size`, `--lr`, `--seed`,
  `--threads`) apply on top, and the recipe records them (archspec.recipes.resolve).
* A spec that names no dataset takes the recipe's `dataset:` (re-targeted to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archspec.recipes.recipe import Recipe

DEFAULT_RECIPE = "adam"


@dataclass(frozen=True)
class RunInputs:
    """A run's spec and recipe, plus notes worth telling the user about how they were chosen."""

    spec: Any  # archspec.spec.loader.Spec
    recipe: Recipe
    notes: tuple[str, ...] = ()


def _saved_spec(run: str | Path | None) -> dict | None:
    """The resolved spec a run directory (or a checkpoint inside one) saved as spec.yaml, if any."""
    import yaml

    if run is None:
        return None
    folder = Path(run) if Path(run).is_dir() else Path(run).parent
    try:
        saved = yaml.safe_load((folder / "spec.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return saved if isinstance(saved, dict) else None


def load_run_spec(path: str | Path, *, data: str | None = None, run: str | Path | None = None,
                  allow_import: bool = False) -> tuple[Any, str | None]:
    """(the spec, a note or None): `path` re-targeted to `data`, or else the way run directory `run` was."""
    from archspec.spec.loader import load_spec

    loaded = load_spec(path, dataset=data, allow_import=allow_import)
    saved = _saved_spec(run) if data is None else None
    trained_on = saved.get("dataset") if saved else None
    if not trained_on:
        return loaded, None

    def shape(resolved: dict) -> tuple:
        return (list(resolved.get("input") or []), resolved.get("classes"))

    if shape(loaded.resolved) != shape(saved) or loaded.dataset != trained_on:
        retargeted = load_spec(path, dataset=trained_on, allow_import=allow_import)
        if shape(retargeted.resolved) == shape(saved):
            return retargeted, f"note: the run was trained on {trained_on}; using that dataset"
    return loaded, None


def _recipe_ref(spec, recipe: str | Path | None, resume: str | Path | None) -> str | Path:
    if recipe is not None:
        return recipe
    folder = None if resume is None else Path(resume) if Path(resume).is_dir() else Path(resume).parent
    if folder is not None and (folder / "recipe.yaml").is_file():  # `--resume RUN` or `--resume RUN/best.pt`
        return str(folder / "recipe.yaml")  # continue with the run's own recipe
    return spec.recipe or DEFAULT_RECIPE


def prepare_run(spec, *, recipe: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
                seed: int | None = None, threads: int | None = None, data: str | None = None,
                resume: str | Path | None = None, allow_import: bool = False) -> RunInputs:
    """The spec and recipe a run trains with (see the module docstring for the rules).

    `spec` is a spec file (loaded here with `data` / the resumed run's dataset) or an already loaded
    Spec (taken as it is, e.g. one spec shared by a sweep's cells). `resume` is the run directory a
    resumed run continues.
    """
    from archspec.recipes import load_recipe
    from archspec.spec.loader import load_spec

    notes: list[str] = []
    if isinstance(spec, (str, Path)):
        spec, note = load_run_spec(spec, data=data, run=resume, allow_import=allow_import)
        notes += [note] if note else []
    resolved = load_recipe(_recipe_ref(spec, recipe, resume), overrides=list(overrides), epochs=epochs,
                           batch_size=batch_size, lr=lr, seed=seed, threads=threads)
    if spec.dataset is None and resolved.dataset and spec.path:  # a dataset-less spec takes the recipe's
        spec = load_spec(spec.path, dataset=resolved.dataset, allow_import=allow_import or spec.allow_import)
    return RunInputs(spec=spec, recipe=resolved, notes=tuple(notes))
