"""The `archspec` command line: a thin Typer layer over the Python API.

Every command catches `ArchspecError` and prints it as one line (exit code 2, no traceback).
Heavy imports (torch) happen inside the commands that need them, so `archspec validate` and
`--help` stay fast.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from archspec.errors import ArchspecError

app = typer.Typer(
    name="archspec",
    help="Declarative image-classifier specs: count parameters, train, compare.\n\n"
    "Example: archspec count specs/variant2.yaml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(error: ArchspecError | str, code: int = 2) -> None:
    """Print a user error as one line (plus an optional hint line) and exit."""
    text = str(error)
    err_console.print(f"[bold red]error:[/] {text}", highlight=False, markup=True, soft_wrap=True)
    hint = getattr(error, "hint", None)
    if hint:
        err_console.print(hint, highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Decorator: turn ArchspecError (and Ctrl-C) into a clean exit instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ArchspecError as e:
            fail(e)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


# --- core commands: count, validate, show -----------------------------------------------------

SpecArg = Annotated[Path, typer.Argument(help="a spec YAML file", show_default=False)]
DataOpt = Annotated[
    str | None,
    typer.Option("--data", help="re-target the spec to a dataset (input shape and classes), e.g. mnist"),
]
AllowImportOpt = Annotated[
    bool, typer.Option("--allow-import", help="allow `module:` layers that import Python code (trust the spec)")
]


@app.command()
@user_errors
def count(
    spec: SpecArg,
    data: DataOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object instead of a table")] = False,
    depth: Annotated[int | None, typer.Option(help="show nested layers down to this depth (1 = top level)")] = None,
    allow_import: AllowImportOpt = False,
) -> None:
    """Print the per-layer table and exact parameter count (no weights are allocated).

    Example: archspec count specs/variant2.yaml --depth 1
    """
    import json

    from archspec.spec.loader import load_spec
    from archspec.summary import summarize

    loaded = load_spec(spec, dataset=data, allow_import=allow_import)
    summary = summarize(loaded)
    if json_out:
        print(json.dumps(summary.to_dict(), indent=1))
        return
    from archspec.report_table import print_summary

    print_summary(console, loaded, summary, depth=depth)


@app.command()
@user_errors
def validate(
    specs: Annotated[list[Path], typer.Argument(help="spec YAML files", show_default=False)],
    data: DataOpt = None,
    allow_import: AllowImportOpt = False,
) -> None:
    """Check specs (syntax, schema, variables, blocks, shapes) without importing torch.

    Example: archspec validate specs/*.yaml
    """
    from archspec.layers import fmt_shape
    from archspec.spec.loader import load_spec

    failed = 0
    for path in specs:
        try:
            loaded = load_spec(path, dataset=data, allow_import=allow_import)
        except ArchspecError as e:
            failed += 1
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            if e.hint:
                err_console.print(e.hint, highlight=False, markup=False)
            continue
        n = sum(1 for _ in loaded.walk())
        console.print(f"[green]ok[/] {path}: {loaded.name}, {fmt_shape(loaded.input_shape)} -> "
                      f"{fmt_shape(loaded.output_shape)}, {n} layers", highlight=False)
    if failed:
        raise typer.Exit(2)


@app.command()
@user_errors
def show(
    spec: SpecArg,
    data: DataOpt = None,
    code: Annotated[bool, typer.Option("--code", help="print plain PyTorch code that builds the same model")] = False,
    source: Annotated[bool, typer.Option("--source", help="print the spec after `extends` (vars and blocks kept)")]
    = False,
    allow_import: AllowImportOpt = False,
) -> None:
    """Print the resolved spec (extends, blocks, vars expanded) or the equivalent PyTorch code.

    Example: archspec show specs/variant5.yaml --code > model.py
    """
    import yaml

    from archspec.spec.loader import load_spec

    loaded = load_spec(spec, dataset=data, allow_import=allow_import)
    if code:
        from archspec.codegen import to_pytorch

        print(to_pytorch(loaded), end="")
    elif source:
        print(yaml.safe_dump(loaded.source, sort_keys=False, default_flow_style=None), end="")
    else:
        print(yaml.safe_dump(loaded.resolved, sort_keys=False, default_flow_style=None), end="")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except ArchspecError as e:  # pragma: no cover - commands already catch these
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

