"""How the CLI's help names things: `SPEC`, `RUN...`, `N`, `KEY=VALUE`; nothing after a flag.

typer prints a Python type where a reader wants a name: `<list[Path]>` for the runs of
`compare`, `{spec}` in the usage line for a required argument, `<bool>` after every flag
(even `--help`). The classes here fix that for every command at once, so none is forgotten:

* an option's value is named by `METAVARS` (`--epochs N`, `--set KEY=VALUE`), unless the
  option gives its own metavar; a flag shows no value (`--quiet`, not `--quiet <bool>`);
* an argument shows its name and no type (`SPEC`, `RUN...`), in the usage line too, where a
  required one is bare and an optional one is in brackets, as in man pages and click.

An option missing from `METAVARS` falls back to its upper-cased name; tests/test_cli_help.py
checks that no help page shows a Python type.

`App` is a `typer.Typer` whose commands and groups use these classes by default.
"""

from __future__ import annotations

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

# Option flag or argument name -> how the help names its value.
METAVARS = {
    "spec": "SPEC", "specs": "SPEC...", "runs": "RUN...", "recipe": "RECIPE",
    "--recipe": "RECIPE", "--data": "DATASET", "--data-dir": "DIR", "--runs-dir": "DIR", "--run-dir": "DIR",
    "--resume": "RUN_DIR", "--out": "DIR", "--checkpoint": "CHECKPOINT", "--output": "FILE", "--plot": "FILE",
    "--set": "KEY=VALUE", "--grid": "KEY=V1,V2,...", "--sort": "COLUMN", "--format": "FORMAT", "--device": "DEVICE",
    "--lr": "LR", "--log-every": "SECONDS", "--title": "TEXT",
    "--epochs": "N", "--batch-size": "N", "--limit-train": "N", "--limit-test": "N", "--seed": "N", "--threads": "N",
    "--workers": "N", "--devices": "N", "--depth": "N", "--steps-per-epoch": "N",
    "--log": "NAME", "--mlflow-uri": "URI", "--dpi": "N", "--start": "LR", "--end": "LR", "--steps": "N",
    "--space": "FILE", "--trials": "N", "--sampler": "NAME", "--pruner": "NAME", "--parallel": "N",
    "--executor": "NAME", "--address": "ADDRESS", "--cpus-per-trial": "N", "--gpus-per-trial": "N",
}


def _metavar(param) -> str:
    long_flags = [opt for opt in getattr(param, "opts", []) if opt.startswith("--")]
    key = long_flags[0] if long_flags else param.name
    return METAVARS.get(key) or (param.name or "value").upper()


class _Argument(TyperArgument):
    """An argument named by its metavar everywhere (see the module docstring)."""

    def display_type_rich(self, ctx) -> str | None:
        return None  # the name column already says SPEC or RUN...

    def get_usage_pieces(self, ctx) -> list[str]:
        name = self.metavar or self.name.upper()
        if self.nargs != 1 and not name.endswith("..."):
            name += "..."
        return [name if self.required else f"[{name}]"]


def _humanize(params: list) -> list:
    for param in params:
        if isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = "" if getattr(param, "is_flag", False) else _metavar(param)  # a flag takes no value
        elif type(param) is TyperArgument:
            if param.metavar is None:
                param.metavar = _metavar(param)
            param.__class__ = _Argument  # same object, same state; only how it is shown changes
    return params


class HelpCommand(TyperCommand):
    def get_params(self, ctx) -> list:
        return _humanize(super().get_params(ctx))


class HelpGroup(TyperGroup):
    def get_params(self, ctx) -> list:
        return _humanize(super().get_params(ctx))


class App(typer.Typer):
    """A `typer.Typer` whose commands and groups name their parameters for people (`HelpCommand`)."""

    def __init__(self, *args, cls: type[TyperGroup] | None = None, **kwargs) -> None:
        super().__init__(*args, cls=cls or HelpGroup, **kwargs)

    def command(self, *args, cls: type[TyperCommand] | None = None, **kwargs):
        return super().command(*args, cls=cls or HelpCommand, **kwargs)


def version_text() -> str:
    """`archspec --version`: archspec's version, and torch's when it is installed (without importing it)."""
    from importlib import metadata

    import archspec

    parts = [f"archspec {archspec.__version__}"]
    try:
        parts.append(f"torch {metadata.version('torch')}")
    except metadata.PackageNotFoundError:
        pass
    return ", ".join(parts)
