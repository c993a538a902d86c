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
from rich.markup import escape

from archspec.cli_help import App, version_text
from archspec.errors import ArchspecError
from archspec.terminal import AutoWidthConsole
from archspec.train.distributed import (
    argv_from_context,
    check_devices,
    launch,
    recorded_exit,
    torchrun_worker,
)

# Bounds of numeric options, checked by the option parser (recipe files and --set meet the same
# ones in archspec/recipes/schema.json).
MAX_SEED = 2**63 - 1
MAX_WORKERS = 256
MAX_BATCH = 1_000_000
MAX_DPI = 1200  # pixels grow with dpi squared: 10^5 dpi would need terabytes; 1200 is print quality

app = App(  # typer.Typer whose help names values for people: SPEC, RUN..., N (archspec.cli_help)
    name="archspec",
    help="Declarative image-classifier specs: count parameters, train, compare.\n\n"
    "Example: archspec count specs/variant2.yaml",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
)
console = AutoWidthConsole()  # COLUMNS, else the terminal's width, else (a file or pipe) no limit
err_console = AutoWidthConsole(stderr=True)


def fail(error: ArchspecError | str, code: int = 2) -> None:
    """Print a user error as one line (plus an optional hint line) and exit."""
    text = str(error)
    err_console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
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


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="print archspec's version (and torch's) and exit")] = False,
) -> None:
    """Declarative image-classifier specs: count parameters, train, compare."""


# --- core commands: count, validate, show -----------------------------------------------------

SpecArg = Annotated[Path, typer.Argument(help="a spec YAML file", show_default=False)]
DataOpt = Annotated[
    str | None,
    typer.Option("--data", help="re-target the spec to a dataset (input shape and classes), e.g. mnist"),
]
AllowImportOpt = Annotated[
    bool, typer.Option("--allow-import", help="allow `module:` layers that import Python code (trust the spec)")
]
# The data and device options that train, lr-find, eval, sweep and tune share: one declaration, one help text.
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="where datasets live / download to")]
EpochsOpt = Annotated[int | None, typer.Option(help="override the recipe's epochs", min=1)]
LimitTrainOpt = Annotated[int | None, typer.Option("--limit-train", help="use only N training images", min=1)]
LimitTestOpt = Annotated[int | None, typer.Option("--limit-test", help="use only N test images", min=1)]
DeviceOpt = Annotated[str, typer.Option(help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")]


@app.command()
@user_errors
def count(
    spec: SpecArg,
    data: DataOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object instead of a table")] = False,
    depth: Annotated[int | None, typer.Option(help="show nested layers down to this depth (1 = top level)", min=1)]
    = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", "-b", min=1, help="batch size of the "
                                                   "training-memory estimate (default: the recipe's)")] = None,
    recipe: Annotated[str | None, typer.Option("--recipe", "-r", help="recipe whose optimizer, precision and "
                                               "batch size the estimate uses (default: the spec's, else adam)")]
    = None,
    device: Annotated[str, typer.Option(help="device type the memory estimate is for: cuda or cpu")] = "cuda",
    precision: Annotated[str | None, typer.Option(help="auto, fp32, bf16 or fp16 (default: the recipe's)")] = None,
    allow_import: AllowImportOpt = False,
) -> None:
    """Print the per-layer table, exact parameter count and training memory (no weights are allocated).

    Example: archspec count specs/variant2.yaml --depth 1 --batch-size 128
    """
    import json

    from archspec.recipes import load_recipe
    from archspec.recipes.build import memory_setup
    from archspec.spec.loader import load_spec
    from archspec.summary import summarize

    loaded = load_spec(spec, dataset=data, allow_import=allow_import)
    chosen = load_recipe(recipe or loaded.recipe, batch_size=batch_size)  # train's default: adam
    summary = summarize(loaded, memory=memory_setup(chosen, device, precision))
    if json_out:
        print(json.dumps(summary.to_dict(), indent=1))
        return
    from archspec.summary import print_summary

    print_summary(console, loaded, summary, depth=depth)


@app.command()
@user_errors
def validate(
    specs: Annotated[list[Path] | None, typer.Argument(help="spec YAML files", show_default=False)] = None,
    data: DataOpt = None,
    allow_import: AllowImportOpt = False,
    kinds: Annotated[bool, typer.Option("--kinds", help="list every layer kind with its options")] = False,
) -> None:
    """Check specs (syntax, schema, variables, blocks, shapes) without importing torch.

    Example: archspec validate specs/*.yaml   (archspec validate --kinds lists the layer kinds)
    """
    from archspec.layers import fmt_shape
    from archspec.spec.loader import load_spec

    if kinds:
        _print_kinds()
    if not specs:
        if kinds:
            return
        fail("give spec files to check (or --kinds to list the layer kinds)")
    failed = 0
    for path in specs:
        try:
            loaded = load_spec(path, dataset=data, allow_import=allow_import)
        except ArchspecError as e:
            failed += 1
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            if e.hint:
                err_console.print(e.hint, highlight=False, markup=False)
            continue
        n = sum(1 for _ in loaded.walk())
        console.print(f"[green]ok[/] {escape(str(path))}: {escape(loaded.name)}, "
                      f"{escape(fmt_shape(loaded.input_shape))} -> {escape(fmt_shape(loaded.output_shape))}, "
                      f"{n} layers", highlight=False)
    if failed:
        raise typer.Exit(2)


def _print_kinds() -> None:
    """Every layer kind: aliases, the option a scalar sets, options with defaults, what it does."""
    from rich.table import Table

    from archspec.layers import REGISTRY

    def word(value) -> str:  # a default as YAML writes it: true, null, avg
        return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    table = Table(title="layer kinds (docs/spec-language.md#kinds)", title_justify="left", header_style="bold")
    table.add_column("kind", no_wrap=True)
    for col in ("aliases", "scalar sets", "options (default)", "what"):
        table.add_column(col)
    for kind in sorted(dict.fromkeys(REGISTRY.values()), key=lambda k: k.name):
        opts = ", ".join(f"{k} {word(v['default'])}" if "default" in v else f"{k} (required)"
                         if k in kind.required else k for k, v in kind.options.items())
        table.add_row(kind.name, ", ".join(kind.aliases), kind.main or "", opts, kind.summary)
    table.add_row("repeat", "", "", "times (required), layers (required)", "the layers, `times` times over ($i)")
    console.print(table)


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


# --- train / eval (archspec/train) -------------------------------------------------------------

TRAIN_EXIT_CODES = {"completed": 0, "interrupted": 130, "diverged": 3}
DEFAULT_LOG_EVERY = 30.0  # archspec.train.report.DEFAULT_LOG_EVERY_S (not imported: it pulls in rich.progress)
LogEveryOpt = Annotated[float, typer.Option("--log-every", min=0, help="seconds between progress lines inside "
                                            "an epoch when the output is not a terminal (0: none)")]


def _load_for_run(spec: Path, data: str | None, run: Path | None, allow_import: bool):
    """The spec for `eval`/`export` of run `run`: re-targeted as that run was (archspec.train.prepare)."""
    from archspec.train.prepare import load_run_spec

    loaded, note = load_run_spec(spec, data=data, run=run, allow_import=allow_import)
    if note:
        err_console.print(note, highlight=False)
    return loaded


@app.command()
@user_errors
@recorded_exit
def train(
    ctx: typer.Context,
    spec: SpecArg,
    recipe: Annotated[str | None, typer.Option("--recipe", "-r", help="recipe name or YAML path "
                                               "(default: the spec's `recipe:`, else adam)")] = None,
    epochs: EpochsOpt = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="override the batch size", min=1)] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="override the learning rate")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override any recipe key: --set "
                                                   "optimizer.momentum=0.9 (repeatable)")] = None,
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    limit_train: LimitTrainOpt = None,
    limit_test: LimitTestOpt = None,
    device: DeviceOpt = "auto",
    seed: Annotated[int | None, typer.Option(help="random seed (same as --set seed=N)", min=0, max=MAX_SEED)] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for torch (same as --set "
                                                "threads=N; default: torch's, one per core)", min=1)] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="parent of new run directories")] = Path("runs"),
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="exact run directory (default: "
                                                 "RUNS_DIR/<spec>-<recipe>-<time>)")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="continue the run in this directory "
                                                "from its last.pt")] = None,
    workers: Annotated[int | None, typer.Option(help="data-loading worker processes", min=0, max=MAX_WORKERS)]
    = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or per-epoch rows")] = False,
    log_every: LogEveryOpt = DEFAULT_LOG_EVERY,
    allow_import: AllowImportOpt = False,
    devices: Annotated[int | None, typer.Option("--devices", help="train on N processes/GPUs with torchrun + "
                                                "DDP (batch size is per process)", min=1)] = None,
    weights: Annotated[str | None, typer.Option("--weights", help="start from torchvision's weights: "
                                                "'torchvision' (pretrained, downloaded) or a saved torchvision "
                                                "state_dict; for specs/torchvision/ specs (fine-tuning)")] = None,
    force: Annotated[bool, typer.Option("--force", help="skip the resource checks: the memory estimate, and "
                                        "at most one CPU process per core for --devices")] = False,
    log: Annotated[list[str] | None, typer.Option("--log", help="also log to this tracker: mlflow or tensorboard "
                                                  "(repeatable); none: no trackers, not even TensorBoard")] = None,
    mlflow_uri: Annotated[str | None, typer.Option("--mlflow-uri", help="log to this MLflow store (implies --log "
                                                   "mlflow; default store: MLFLOW_TRACKING_URI, else "
                                                   "sqlite:///mlflow.db here)")] = None,
    log_graph: Annotated[bool, typer.Option("--log-graph", help="add the model graph to the TensorBoard "
                                            "events")] = False,
    fmt: Annotated[str, typer.Option("--format", help="format of curves.* and lr.*: png, svg or pdf")] = "png",
    dpi: Annotated[int, typer.Option("--dpi", help="resolution of PNG figures (dots per inch)", min=1)] = 110,
) -> None:
    """Train a spec with a recipe; writes runs/<spec>-<recipe>-<time>/ (metrics, plots, checkpoints,
    TensorBoard events: tensorboard --logdir runs).

    Exit codes: 0 completed, 2 bad input, 3 diverged, 130 interrupted (Ctrl-C, SIGTERM, a full disk:
    resumable with --resume).

    Example: archspec train specs/mnist_quick.yaml --recipe quick --epochs 2 --set seed=1
    """
    if devices is not None and devices > 1 and not torchrun_worker():  # re-run this command under torchrun
        check_devices(devices, device, force=force)
        raise typer.Exit(launch(devices, ["train", *argv_from_context(ctx, drop=("devices",))]))
    from archspec.train.loop import train as run_training
    from archspec.train.prepare import prepare_run
    from archspec.train.tracking import with_trackers

    inputs = prepare_run(spec, recipe=recipe, overrides=list(set_ or []), epochs=epochs, batch_size=batch_size,
                         lr=lr, seed=seed, threads=threads, data=data, resume=resume, allow_import=allow_import)
    for note in inputs.notes:
        err_console.print(note, highlight=False)
    init_weights = None
    if weights is not None:
        from archspec.weights import weights_source

        init_weights = weights_source(weights, inputs.spec.name)
    result = run_training(
        inputs.spec, with_trackers(inputs.recipe, [*(log or ()), *(["mlflow"] if mlflow_uri else [])]),
        dataset=inputs.spec.dataset, data_dir=data_dir, device=device, run_dir=run_dir, runs_root=runs_dir,
        limit_train=limit_train, limit_test=limit_test, resume=resume, workers=workers, console=console,
        progress=not quiet, quiet=quiet, log_every=log_every, memory_check=not force, mlflow_uri=mlflow_uri,
        log_graph=log_graph, figure_format=fmt, dpi=dpi, init_weights=init_weights,
    )
    code = TRAIN_EXIT_CODES.get(result.status, 1)
    if code:
        raise typer.Exit(code)


@app.command("lr-find")
@user_errors
def lr_find(
    spec: SpecArg,
    recipe: Annotated[str | None, typer.Option("--recipe", "-r", help="recipe name or YAML path (default: the "
                                               "spec's `recipe:`, else adam): its optimizer, loss, data")] = None,
    start: Annotated[float, typer.Option("--start", help="first learning rate")] = 1e-7,
    end: Annotated[float, typer.Option("--end", help="last learning rate")] = 10.0,
    steps: Annotated[int, typer.Option("--steps", help="mini-batches (one learning rate each)", min=2)] = 100,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="override the batch size", min=1)] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override any recipe key (repeatable)")] = None,
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    limit_train: LimitTrainOpt = None,
    device: DeviceOpt = "auto",
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for torch", min=1)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="the plot (.png, .svg, .pdf)")] = Path("lr_find.png"),
    fmt: Annotated[str | None, typer.Option("--format", help="png, svg or pdf (default: the file name's suffix)",
                                            show_default=False)] = None,
    dpi: Annotated[int, typer.Option("--dpi", help="resolution of a PNG (dots per inch)", min=1)] = 110,
    allow_import: AllowImportOpt = False,
) -> None:
    """Learning-rate range test: train with an exponentially growing lr, plot the loss, suggest an lr.

    Example: archspec lr-find specs/mnist_quick.yaml --steps 100 -o lr_find.png
    """
    from archspec.figures import figure_format, lr_find_figure, write_figure
    from archspec.train.lr_find import lr_find as range_test
    from archspec.train.prepare import prepare_run

    figure_format(output, fmt)  # a bad name or --format fails before the test runs
    inputs = prepare_run(spec, recipe=recipe, overrides=set_ or [], batch_size=batch_size, threads=threads,
                         data=data, allow_import=allow_import)
    for note in inputs.notes:
        err_console.print(note, highlight=False)
    result = range_test(inputs.spec, inputs.recipe, start=start, end=end, steps=steps, dataset=inputs.spec.dataset,
                        data_dir=data_dir, device=device, limit_train=limit_train)
    title = f"lr range test: {inputs.spec.name} + {inputs.recipe.name} ({inputs.recipe.optimizer.name})"
    write_figure(lr_find_figure(result.lrs, result.losses, result.smoothed, suggested=result.suggested,
                                min_lr=result.min_lr, title=title), output, fmt=fmt, dpi=dpi)
    console.print(f"{len(result.lrs)} of {steps} steps, lr {result.lrs[0]:.3g} to {result.lrs[-1]:.3g}: "
                  f"{result.stop_reason}", highlight=False, soft_wrap=True)
    if result.suggested is not None:
        console.print(f"suggested lr: {result.suggested:.2g} (steepest descent of the smoothed loss)",
                      highlight=False)
    else:
        console.print(f"no suggestion: the smoothed loss fell by only {100 * result.drop:.0f}% of its start; "
                      "try more --steps (or a larger --end)", highlight=False, soft_wrap=True)
    if result.min_over_ten is not None:
        console.print(f"lowest smoothed loss at lr {result.min_lr:.2g}; a tenth of it: {result.min_over_ten:.2g}",
                      highlight=False)
    console.print(f"wrote {escape(str(output))}", highlight=False)


@app.command("eval")
@user_errors
def eval_(
    spec: SpecArg,
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="a .pt file, or a run directory "
                                             "(uses its best.pt)", show_default=False)],
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    limit_test: LimitTestOpt = None,
    device: DeviceOpt = "auto",
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="evaluation batch size", min=1,
                                                   max=MAX_BATCH)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object instead of tables")] = False,
    allow_import: AllowImportOpt = False,
) -> None:
    """Evaluate a checkpoint on the test set: loss, accuracy and a per-class accuracy table.

    Example: archspec eval specs/mnist_quick.yaml --checkpoint runs/mnist_quick-quick-20250101-120000
    """
    import json

    from archspec.tables import Column, print_table
    from archspec.train.evaluation import evaluate

    loaded = _load_for_run(spec, data, checkpoint, allow_import)
    result = evaluate(loaded, checkpoint, dataset=loaded.dataset, data_dir=data_dir, device=device, limit_test=limit_test,
                      batch_size=batch_size)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if json_out:
        print(json.dumps({"checkpoint": result.checkpoint, "epoch": result.epoch, "test_loss": result.test_loss,
                          "test_acc": result.test_acc, "images": result.num_images,
                          "per_class": [{"class": c, "correct": k, "total": t, "acc": a}
                                        for c, k, t, a in result.per_class]}, indent=1))
        return
    console.print(f"{escape(str(result.checkpoint))} (epoch {result.epoch}) on {result.num_images:,} test images: "
                  f"test loss {result.test_loss:.4f}, test accuracy {100 * result.test_acc:.2f}%", highlight=False)
    rows = result.per_class
    print_table(console, [[Column("class", [str(name) for name, *_ in rows], wrap=True),
                           Column("correct", [str(correct) for _, correct, _, _ in rows], justify="right"),
                           Column("total", [str(total) for _, _, total, _ in rows], justify="right"),
                           Column("accuracy", ["-" if total == 0 else f"{100 * acc:.2f}%"
                                               for _, _, total, acc in rows], justify="right")]],
                title="per-class accuracy")


# --- recipes (archspec/recipes) ----------------------------------------------------------------

recipes_app = App(
    help="Training recipes: list the built-ins, show one resolved, plot its learning-rate curve.\n\n"
    "Example: archspec recipes show warmup_cosine --set optimizer.lr=1e-3",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(recipes_app, name="recipes")
RecipeArg = Annotated[str, typer.Argument(help="a built-in recipe name or a recipe YAML path", show_default=False)]
RecipeSetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="override a recipe key: --set optimizer.lr=1e-3 (repeatable)")
]


@recipes_app.callback()
@user_errors
def recipes_list(ctx: typer.Context) -> None:
    """List the built-in recipes (run `archspec recipes show NAME` for one in full)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.markup import escape as esc

    from archspec.recipes import builtin_recipes
    from archspec.tables import Column, leaner_layouts, print_table

    recipes = builtin_recipes()
    columns = [Column("name", [r.name for r in recipes]),
               Column("epochs", [str(r.epochs) for r in recipes], justify="right"),
               Column("batch", [str(r.batch_size) for r in recipes], justify="right"),
               Column("optimizer", [r.optimizer.describe() for r in recipes]),
               Column("schedule", [r.schedule.describe() for r in recipes]),
               Column("description", [r.description for r in recipes], wrap=True)]
    print_table(console, leaner_layouts(columns, ("schedule", "batch", "epochs", "optimizer")),
                title=esc("built-in recipes"))


@recipes_app.command("show")
@user_errors
def recipes_show(recipe: RecipeArg, set_: RecipeSetOpt = None) -> None:
    """Print a recipe fully resolved (extends and overrides applied) as YAML.

    Example: archspec recipes show adam --set schedule.type=cosine > my-recipe.yaml
    """
    from archspec.recipes import load_recipe, recipe_to_yaml

    typer.echo(recipe_to_yaml(load_recipe(recipe, overrides=set_ or [])), nl=False)


@recipes_app.command("plot")
@user_errors
def recipes_plot(
    recipe: RecipeArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="image file (.png, .svg, .pdf)")] = Path("lr.png"),
    steps_per_epoch: Annotated[int | None, typer.Option("--steps-per-epoch", min=1, help="batches per epoch "
                                                        "(default: 1, or 100 for per-batch schedules)")] = None,
    set_: RecipeSetOpt = None,
    fmt: Annotated[str | None, typer.Option("--format", help="png, svg or pdf (default: the file name's "
                                            "suffix)", show_default=False)] = None,
    dpi: Annotated[int, typer.Option("--dpi", help="resolution of a PNG (dots per inch)", min=1, max=MAX_DPI)] = 110,
) -> None:
    """Draw a recipe's learning-rate curve with the real torch schedulers.

    Example: archspec recipes plot warmup_cosine -o lr.png
    """
    from archspec.recipes import load_recipe
    from archspec.recipes.build import lr_curve, plot_lr

    resolved = load_recipe(recipe, overrides=set_ or [])
    spe = steps_per_epoch or (100 if resolved.schedule.interval == "batch" else 1)
    lrs = lr_curve(resolved, spe)
    path = plot_lr(resolved, output, spe, lrs=lrs, fmt=fmt, dpi=dpi)
    console.print(f"wrote {path} ({len(lrs):,} steps, lr {min(lrs):.3g} to {max(lrs):.3g})", highlight=False)


# --- experiments: compare, sweep, report, export (archspec/experiments) -------------------------

RunsArg = Annotated[list[Path], typer.Argument(help="run directories, or folders of run directories",
                                               show_default=False)]
SortOpt = Annotated[str | None, typer.Option("--sort", help="sort by a column: test_acc, best_test_acc, time, "
                                             "params, speed, train_loss, test_loss, or an option like optimizer.lr")]
FigFormatOpt = Annotated[str | None, typer.Option("--format", help="figure format: png, svg or pdf (default: the "
                                                  "file name's suffix, else png)", show_default=False)]
DpiOpt = Annotated[int, typer.Option("--dpi", help="resolution of PNG figures (dots per inch)", min=1, max=MAX_DPI)]


ExecutorOpt = Annotated[str, typer.Option("--executor", help="where cells/trials run: local (here, one after "
                                          "another) or ray (Ray tasks; needs archspec[ray])")]
AddressOpt = Annotated[str | None, typer.Option("--address", help="Ray cluster to join, e.g. auto or "
                                                "ray://head:10001 (default: start a local Ray instance)")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars or per-epoch rows")]
CpusOpt = Annotated[float, typer.Option("--cpus-per-trial", help="CPUs each Ray task reserves", min=0.01)]
GpusOpt = Annotated[float, typer.Option("--gpus-per-trial", help="GPUs each Ray task reserves (fractions share "
                                        "a GPU)", min=0)]


def _executor(name: str, address: str | None, cpus: float, gpus: float):
    from archspec.experiments.executors import make_executor

    return make_executor(name, address=address, cpus_per_trial=cpus, gpus_per_trial=gpus)


@app.command()
@user_errors
def compare(
    runs: RunsArg,
    sort: SortOpt = None,
    csv_out: Annotated[bool, typer.Option("--csv", help="print CSV (raw numbers) instead of a table")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON (raw numbers) instead of a table")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="print a Markdown table")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="also write the overlaid accuracy/loss/lr curves "
                                              "to this image (.png, .svg, .pdf)")] = None,
    fmt: FigFormatOpt = None,
    dpi: DpiOpt = 110,
) -> None:
    """One row per run: spec, recipe, the options that differ between the runs, accuracy, loss, time.

    Example: archspec compare runs/sweep-tutorial-lr --sort test_acc --plot lr.png
    """
    from archspec.experiments import compare as cmp
    from archspec.experiments.runs import find_runs

    if csv_out + json_out + markdown > 1:
        raise ArchspecError("choose one of --csv, --json, --markdown")
    table = cmp.compare(find_runs(runs), sort=sort)
    if plot is not None:
        cmp.plot(table, plot, fmt=fmt, dpi=dpi)
    if csv_out:
        print(cmp.to_csv(table), end="")
    elif json_out:
        print(cmp.to_json(table))
    elif markdown:
        print(cmp.to_markdown(table), end="")
    else:
        cmp.print_table(console, table)
    if plot is not None and not (csv_out or json_out or markdown):
        console.print(f"wrote {escape(str(plot))}", highlight=False)


@app.command()
@user_errors
def sweep(
    specs: Annotated[list[Path], typer.Argument(help="spec YAML files (each is crossed with the grid)",
                                                show_default=False)],
    recipe: Annotated[str, typer.Option("--recipe", "-r", help="recipe name or YAML path for every cell",
                                        show_default=False)],
    grid: Annotated[list[str] | None, typer.Option("--grid", help="KEY=V1,V2,...: one axis of the grid, "
                                                   "values applied like --set (repeatable)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a recipe key in every cell: "
                                                   "--set optimizer.momentum=0.9 (repeatable)")] = None,
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    epochs: EpochsOpt = None,
    limit_train: LimitTrainOpt = None,
    limit_test: LimitTestOpt = None,
    device: DeviceOpt = "auto",
    out: Annotated[Path | None, typer.Option("--out", help="folder of the cells' run directories "
                                             "(default: runs/sweep-<specs>-<grid keys>)")] = None,
    band: Annotated[bool, typer.Option("--band", help="draw the min-max band of the training loss across "
                                       "the grid, per spec, to OUT/band.png (or .svg, .pdf: --format)")] = False,
    fmt: FigFormatOpt = None,
    dpi: DpiOpt = 110,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate and list the cells; train nothing")] = False,
    quiet: QuietOpt = False,
    log_every: LogEveryOpt = DEFAULT_LOG_EVERY,
    allow_import: AllowImportOpt = False,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    cpus_per_trial: CpusOpt = 1.0,
    gpus_per_trial: GpusOpt = 0.0,
) -> None:
    """Train every spec with every combination of grid values (resumable), then compare them.

    Re-running the same command skips finished cells and resumes interrupted ones.

    Example: archspec sweep specs/tutorial.yaml --recipe sgd --grid optimizer.lr=0.1,0.01,0.001
    """
    from archspec.experiments import compare as cmp
    from archspec.experiments import sweep as sw
    from archspec.experiments.runs import is_run_dir, load_run

    if band:
        from archspec.figures import figure_format

        figure_format("band", fmt)  # a bad --format fails now, not after the whole sweep has trained
    out_dir, cells = sw.plan(specs, recipe, grid=sw.parse_grid(grid), sets=list(set_ or []), data=data,
                             epochs=epochs, out=out, allow_import=allow_import)
    if dry_run:
        sw.print_plan(console, cells)
        return
    runner = _executor(executor, address, cpus_per_trial, gpus_per_trial)
    try:
        result = sw.run(cells, out_dir, data=data, data_dir=data_dir, device=device, limit_train=limit_train,
                        limit_test=limit_test, console=console, progress=not quiet, quiet=quiet,
                        log_every=log_every, executor=runner)
    finally:
        runner.close()
    runs = [load_run(c.run_dir) for c in cells if is_run_dir(c.run_dir)]
    if runs:
        cmp.print_table(console, cmp.compare(runs), title=f"sweep {out_dir}")
    if band and runs:
        groups: dict[str, list] = {}
        for run in runs:
            groups.setdefault(run.spec_name, []).append(run)
        path = sw.band(groups, out_dir / f"band.{fmt or 'png'}", fmt=fmt, dpi=dpi)
        console.print(f"wrote {escape(str(path))}", highlight=False)
    if result.interrupted:
        err_console.print("sweep interrupted: run the same command again to continue where it stopped",
                          highlight=False)
        raise typer.Exit(130)


@app.command()
@user_errors
def tune(
    spec: SpecArg,
    recipe: Annotated[str, typer.Option("--recipe", "-r", help="recipe name or YAML path every trial starts from",
                                        show_default=False)],
    space: Annotated[Path, typer.Option("--space", help="search-space YAML: params (recipe keys, vars.NAME), "
                                        "metric, sampler, pruner", show_default=False)],
    trials: Annotated[int | None, typer.Option("--trials", "-n", help="finished trials the study should have "
                                               "(default: the grid's size with --sampler grid)", min=1)] = None,
    sampler: Annotated[str | None, typer.Option("--sampler", help="tpe, random or grid (default: the space "
                                                "file's, else tpe)")] = None,
    pruner: Annotated[str | None, typer.Option("--pruner", help="median, halving, hyperband or none (default: "
                                               "the space file's, else median)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a recipe key in every trial "
                                                   "(repeatable)")] = None,
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    epochs: EpochsOpt = None,
    limit_train: LimitTrainOpt = None,
    limit_test: LimitTestOpt = None,
    device: DeviceOpt = "auto",
    out: Annotated[Path | None, typer.Option("--out", help="study folder: study.db and one run directory per "
                                             "trial (default: runs/tune-<spec>-<space>)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check the spec, recipe and space; train nothing")]
    = False,
    quiet: QuietOpt = False,
    allow_import: AllowImportOpt = False,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    cpus_per_trial: CpusOpt = 1.0,
    gpus_per_trial: GpusOpt = 0.0,
    parallel: Annotated[int | None, typer.Option("--parallel", help="trials at once with --executor ray "
                                                 "(default: as many as the cluster's resources fit)", min=1)] = None,
) -> None:
    """Search hyperparameters with Optuna: each trial is a run directory; bad trials are pruned early.

    The study lives in OUT/study.db: run the same command again to continue it (also after a kill).

    Example: archspec tune specs/tutorial.yaml --recipe sgd --space lr-space.yaml --trials 12
    """
    from archspec.experiments import sweep as sw
    from archspec.experiments import tune as tn

    study = tn.plan(spec, recipe, space, trials=trials, sets=list(set_ or []), data=data, epochs=epochs, out=out,
                    sampler=sampler, pruner=pruner, allow_import=allow_import, limits=(limit_train, limit_test))
    console.print(escape(tn.describe_plan(study)), highlight=False)
    if dry_run:
        return
    if parallel is not None and executor == "local":
        raise ArchspecError("--parallel needs --executor ray (the local executor runs one trial at a time)")
    options = sw.TrainOptions(data=data, data_dir=data_dir, device=device, limit_train=limit_train,
                              limit_test=limit_test, progress=not quiet and executor == "local", quiet=quiet)
    runner = _executor(executor, address, cpus_per_trial, gpus_per_trial)
    try:
        result = tn.run(study, executor=runner, options=options, console=console, parallel=parallel)
    finally:
        runner.close()
    console.print(tn.trials_table(result))
    for line in tn.closing_lines(result):
        console.print(escape(line), highlight=False)
    if result.interrupted:
        err_console.print("tune interrupted: run the same command again to continue the study", highlight=False)
        raise typer.Exit(130)


@app.command()
@user_errors
def report(
    runs: RunsArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="the HTML file to write")] = Path("report.html"),
    title: Annotated[str, typer.Option(help="page title")] = "archspec report",
    sort: SortOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="figures embedded as png or svg")] = "png",
    dpi: DpiOpt = 110,
) -> None:
    """Write one self-contained HTML page: comparison table, layer tables, every run's curves.

    Images and CSS are inline and nothing is fetched from the network.

    Example: archspec report runs/sweep-tutorial-lr -o lr-study.html
    """
    from archspec.experiments.report import write_report
    from archspec.experiments.runs import find_runs

    path = write_report(find_runs(runs), output, title=title, sort=sort, fmt=fmt, dpi=dpi)
    console.print(f"wrote {escape(str(path))}", highlight=False)


@app.command()
@user_errors
def export(
    spec: SpecArg,
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="a .pt file, or a run directory "
                                             "(uses its best.pt)", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help="torchscript or onnx (needs `pip install onnx`)")]
    = "torchscript",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="output file (default: "
                                                "<spec>.torchscript.pt or <spec>.onnx)")] = None,
    data: DataOpt = None,
    allow_import: AllowImportOpt = False,
) -> None:
    """Export a trained model (spec + checkpoint weights) to TorchScript or ONNX.

    The model is exported in eval mode and its outputs are checked against archspec's before the
    file is written.

    Example: archspec export specs/mnist_quick.yaml --checkpoint runs/mnist_quick-quick-20250101-120000
    """
    from archspec.experiments.export import export_model

    loaded = _load_for_run(spec, data, checkpoint, allow_import)  # a run trained with --data X: same X
    result = export_model(loaded, checkpoint, fmt=fmt, out=output)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    checked = ("output not checked" if result.max_abs_diff is None
               else f"max difference to archspec {result.max_abs_diff:.2g}")
    console.print(f"wrote {escape(str(result.path))} ({result.format}, {result.params:,} params, {checked})",
                  highlight=False)
    if result.unchecked:
        err_console.print(f"[yellow]note:[/] {escape(result.unchecked)}", highlight=False)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except ArchspecError as e:  # pragma: no cover - commands already catch these
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # outside a command (they print the same): e.g. while Typer builds the app
        print("interrupted", file=sys.stderr)
        sys.exit(130)

