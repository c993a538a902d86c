"""Training recipes: how to train a spec (optimizer, LR schedule, epochs, loss, augmentation).

`load_recipe` resolves a built-in name or a YAML file into a validated `Recipe` without importing
torch; `archspec.recipes.build` turns a recipe into torch objects (optimizer, scheduler, loss).
"""

from archspec.recipes.recipe import LossConfig, OneCycle, OptimizerConfig, Phase, Recipe, Schedule
from archspec.recipes.resolve import (
    builtin_names,
    builtin_recipes,
    load_recipe,
    recipe_schema,
    recipe_to_yaml,
)

__all__ = [
    "LossConfig",
    "OneCycle",
    "OptimizerConfig",
    "Phase",
    "Recipe",
    "Schedule",
    "builtin_names",
    "builtin_recipes",
    "load_recipe",
    "recipe_schema",
    "recipe_to_yaml",
]
