"""`archspec sweep`: train every spec x every combination of grid values, one run directory each.

Each cell's run directory name is derived only from the spec name and the cell's grid values
(``runs/sweep-tutorial-lr/tutorial_optimizer.lr=0.1``), never from the time. That makes a sweep
restartable: running the same command again skips the cells that already finished, continues the
ones that were interrupted (`train(..., resume=cell_dir)`, the exact-resume path of `archspec train
--resume`), and starts the rest. A finished cell whose stored recipe or spec no longer matches
what the command asks for is an error instead of a silent skip, so a table never mixes settings.

Grid values are applied exactly like ``--set key=value`` (parsed as YAML scalars and checked
against the recipe schema), and every cell is validated before the first one trains, so a typo
in the last grid value does not surface hours into the sweep.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from archspec.errors import ArchspecError
from archspec.experiments.compare import short_keys

# Statuses after which a cell is finished: a diverged run would diverge again, identically (same seed);
# a stopped one (ended early by an observer, e.g. a pruned tune trial) was ended for good.
DONE = ("completed", "diverged", "stopped")


@dataclass
class Cell:
    """One training run of the sweep."""

    index: int
    spec_path: Path
    spec_name: str
    values: tuple[tuple[str, str], ...]  # (grid key, value as written)
    overrides: list[str]  # --set items followed by the grid items: what load_recipe applies
    run_dir: Path
    spec: Any = None  # the loaded Spec
    recipe: Any = None  # the resolved Recipe
    state: str = "new"  # new | done | resume | partial

    def label(self) -> str:
        return " ".join([self.spec_name, *(f"{k}={v}" for k, v in self.values)])


@dataclass
class SweepResult:
    out: Path
    cells: list[Cell]
    statuses: dict[int, str] = field(default_factory=dict)  # cell index -> status after this command
    interrupted: bool = False


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._=+-]+", "-", str(text)).strip("-.")
    return slug or "x"


def split_values(raw: str) -> list[str]:
    """Split "a,b,[1,2],'x,y'" on top-level commas (brackets and quotes may hold commas)."""
    parts, depth, quote, current = [], 0, "", []
    for ch in raw:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    parts.append("".join(current).strip())
    return parts


def parse_grid(items: list[str] | None) -> list[tuple[str, list[str]]]:
    """["optimizer.lr=0.1,0.01"] -> [("optimizer.lr", ["0.1", "0.01"])], with one-line errors."""
    grid: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for item in items or []:
        if "=" not in item:
            raise ArchspecError(f'"{item}" is not KEY=V1,V2,...', path="--grid",
                                hint="example: --grid optimizer.lr=1e-1,1e-2,1e-3")
        key, raw = (part.strip() for part in item.split("=", 1))
        if not key:
            raise ArchspecError(f'"{item}" has no key before "="', path="--grid")
        if key == "spec":
            raise ArchspecError("a sweep over specs needs no grid key: pass several spec files",
                                path="--grid spec", hint="example: archspec sweep specs/vgg_a.yaml specs/vgg_a_bn.yaml")
        if key in seen:
            raise ArchspecError(f'grid key "{key}" given twice: list all its values in one --grid',
                                path=f"--grid {key}")
        values = split_values(raw)
        if any(not v for v in values):
            raise ArchspecError(f'empty value in "{raw}"', path=f"--grid {key}",
                                hint=f"example: --grid {key}=V1,V2")
        if len(set(values)) != len(values):
            raise ArchspecError(f'repeated value in "{raw}"', path=f"--grid {key}")
        seen.add(key)
        grid.append((key, values))
    return grid


def default_out(spec_names: list[str], grid: list[tuple[str, list[str]]], runs_root: str | Path = "runs") -> Path:
    """runs/sweep-<specs>-<grid keys>: the same command always gets the same folder."""
    names = list(dict.fromkeys(spec_names))
    parts = names + list(short_keys([key for key, _ in grid]).values())
    name = _slug("-".join(parts))
    if len(name) > 60:
        name = name[:50].rstrip("-.") + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return Path(runs_root) / f"sweep-{name}"


def _relabel(error: ArchspecError, grid_keys: set[str], cell_label: str) -> ArchspecError:
    """A recipe error caused by a grid value names --grid (not --set) and the cell."""
    path = error.path
    if path and path.startswith("--set "):
        key = path[len("--set "):].split(".")[0]
        full = path[len("--set "):]
        if full in grid_keys or key in grid_keys or any(full.startswith(k) for k in grid_keys):
            path = "--grid " + full
    return ArchspecError(f"{error.message} (sweep cell: {cell_label})", file=error.file, line=error.line,
                         col=error.col, path=path, hint=error.hint)


def plan(specs: list[str | Path], recipe: str, *, grid: list[tuple[str, list[str]]] | None = None,
         sets: list[str] | None = None, data: str | None = None, epochs: int | None = None,
         out: str | Path | None = None, allow_import: bool = False, check_state: bool = True) -> tuple[Path, list[Cell]]:
    """Every cell of the sweep, loaded and validated (no training, no torch unless `check_state`).

    Each cell's spec and recipe are chosen as `archspec train` chooses them (archspec.train.prepare).
    """
    from archspec.spec.loader import load_spec
    from archspec.train.prepare import prepare_run

    if not specs:
        raise ArchspecError("no spec files given", hint="example: archspec sweep specs/tutorial.yaml --recipe sgd "
                                                        "--grid optimizer.lr=0.1,0.01")
    grid = grid or []
    loaded = []
    for path in specs:
        spec = load_spec(path, dataset=data, allow_import=allow_import)
        loaded.append((Path(path), spec))
    out_dir = Path(out) if out is not None else default_out([s.name for _, s in loaded], grid)
    if out_dir.exists() and not out_dir.is_dir():
        raise ArchspecError("the sweep folder path exists and is not a directory", file=str(out_dir))

    keys = [key for key, _ in grid]
    short = short_keys(keys)
    combos = list(itertools.product(*[values for _, values in grid])) if grid else [()]
    cells: list[Cell] = []
    by_dir: dict[Path, Cell] = {}
    for spec_path, spec in loaded:
        for combo in combos:
            values = tuple(zip(keys, combo, strict=True))
            name = _slug("_".join([spec.name, *(f"{short[k]}={v}" for k, v in values)]))
            cell = Cell(index=len(cells) + 1, spec_path=spec_path, spec_name=spec.name, values=values,
                        overrides=[*(sets or []), *(f"{k}={v}" for k, v in values)], run_dir=out_dir / name,
                        spec=spec)
            if cell.run_dir in by_dir:
                other = by_dir[cell.run_dir]
                raise ArchspecError(f'cells "{other.label()}" ({other.spec_path}) and "{cell.label()}" '
                                    f"({cell.spec_path}) would share the run directory {cell.run_dir}",
                                    hint="two specs with the same `name:` cannot be in one sweep; rename one")
            try:
                inputs = prepare_run(spec, recipe=recipe, overrides=cell.overrides, epochs=epochs,
                                     allow_import=allow_import)
            except ArchspecError as e:
                raise _relabel(e, set(keys), cell.label()) from None
            cell.spec, cell.recipe = inputs.spec, inputs.recipe
            by_dir[cell.run_dir] = cell
            cells.append(cell)
    if check_state:
        for cell in cells:
            cell.state = cell_state(cell)
    return out_dir, cells


def _normal(data: Any) -> Any:
    """JSON round trip: tuples -> lists, so a recipe compares equal to its YAML copy."""
    return json.loads(json.dumps(data))


def _settings(recipe: dict) -> dict:
    """A recipe's training settings, without the keys that only document it (description, overrides)."""
    from archspec.recipes.recipe import NOTE_KEYS

    return {k: v for k, v in _normal(recipe).items() if k not in NOTE_KEYS}


def cell_state(cell: Cell) -> str:
    """new (nothing there), done (finished with the same spec and recipe), resume (interrupted),
    or partial (a run directory without a checkpoint yet: it is started again from scratch)."""
    run_dir = cell.run_dir
    if not run_dir.is_dir():
        return "new"
    import yaml

    from archspec.train.checkpoint import plain, spec_fingerprint

    summary: dict[str, Any] = {}
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    if not (run_dir / "last.pt").is_file():
        return "partial" if any(run_dir.iterdir()) else "new"
    if isinstance(summary, dict) and summary.get("status") in DONE:
        try:
            stored_recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
            stored_spec = yaml.safe_load((run_dir / "spec.yaml").read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            stored_recipe = stored_spec = None
        wanted = _settings(plain(cell.recipe.to_dict()))
        if not isinstance(stored_recipe, dict) or _settings(stored_recipe) != wanted:
            stored = _settings(stored_recipe) if isinstance(stored_recipe, dict) else {}
            changed = sorted(k for k in set(wanted) | set(stored) if stored.get(k) != wanted.get(k))
            raise ArchspecError(f"this finished cell was trained with a different recipe "
                                f"(differs in: {', '.join(changed) or 'recipe.yaml unreadable'})",
                                file=str(run_dir), path=cell.label(),
                                hint="use another --out for the new settings, or delete this cell's directory")
        if not isinstance(stored_spec, dict) or spec_fingerprint(stored_spec) != spec_fingerprint(cell.spec.resolved):
            raise ArchspecError("this finished cell was trained with a different version of the spec",
                                file=str(run_dir), path=cell.label(),
                                hint="use another --out for the edited spec, or delete this cell's directory")
        return "done"
    return "resume"


def print_plan(console, cells: list[Cell]) -> None:
    """What --dry-run prints: one row per cell, never a value cut (archspec.tables).

    A recipe or epoch count that every cell shares goes into the heading; on a narrow terminal
    the index, then the run directory column, are dropped before the grid values wrap (between
    `key=value` pairs, never inside one)."""
    from rich.markup import escape

    from archspec.tables import Column, leaner_layouts, print_table

    where = cells[0].run_dir.parent if cells else ""
    recipes = {cell.recipe.name for cell in cells}
    epochs = {cell.recipe.epochs for cell in cells}
    shared = [f"recipe {next(iter(recipes))}"] if len(recipes) == 1 else []
    shared += [f"{next(iter(epochs))} epochs"] if len(epochs) == 1 else []
    title = f"{len(cells)} sweep cell{'s' if len(cells) != 1 else ''} in {where}/" + (
        f" ({', '.join(shared)})" if shared else "")
    columns = [
        Column("#", [str(c.index) for c in cells], justify="right"),
        Column("spec", [c.spec_name for c in cells]),
        Column("grid values", [" ".join(f"{k}={v}" for k, v in c.values) or "-" for c in cells], wrap=True),
    ]
    if len(recipes) > 1:
        columns.append(Column("recipe", [c.recipe.name for c in cells]))
    if len(epochs) > 1:
        columns.append(Column("epochs", [str(c.recipe.epochs) for c in cells], justify="right"))
    columns += [Column("run directory", [c.run_dir.name for c in cells]),
                Column("state", [c.state for c in cells])]
    print_table(console, leaner_layouts(columns, ("#", "run directory")), title=escape(title))


@dataclass
class TrainOptions:
    """The `archspec train` options every cell of a sweep (or trial of a study) shares."""

    data: str | None = None
    data_dir: str | Path | None = None
    device: str = "auto"
    limit_train: int | None = None
    limit_test: int | None = None
    progress: bool = True
    quiet: bool = False
    log_every: float | None = None  # seconds between progress lines when not on a terminal (None: train's)
    threads: int | None = None  # torch's CPU threads (a Ray task: its CPUs; None: leave torch's default)


@dataclass
class CellOutcome:
    """What became of one cell: its status after this command and its per-epoch metrics."""

    index: int
    status: str
    metrics: list[dict[str, Any]] = field(default_factory=list)
    skipped: bool = False  # already finished before this command
    resumed: bool = False  # continued from the checkpoint of an earlier attempt
    host: str = ""


def run_cell(cell: Cell, options: TrainOptions, owner: str | None = None, observers=(),
             console=None) -> CellOutcome:
    """Train one cell: skip it when finished, resume it from its last.pt when interrupted, else start it.

    This is the unit an executor runs (in this process, or as a Ray task on any node). The state is
    read from the run directory at the start of every attempt, so when Ray retries the task of a
    killed worker, the retry resumes from the checkpoint the dead attempt wrote. `owner` is the
    folder lock's token: a remote worker checks first that it sees the driver's folder. `observers`
    (archspec.train.observers) watch the training run, e.g. tune's pruning.
    """
    import socket

    from archspec.train.loop import train

    if owner is not None:
        from archspec.experiments.folder_lock import check_visible

        check_visible(cell.run_dir.parent, owner)
    if options.threads:  # a reused Ray worker keeps the thread count of its first task's OMP_NUM_THREADS
        import torch

        torch.set_num_threads(options.threads)
    state = cell_state(cell)
    host = socket.gethostname()
    if state == "done":
        from archspec.experiments.runs import load_run

        done = load_run(cell.run_dir)
        return CellOutcome(cell.index, done.status, done.metrics, skipped=True, host=host)
    try:
        result = train(cell.spec, cell.recipe, dataset=options.data, data_dir=options.data_dir, device=options.device,
                       run_dir=None if state == "resume" else cell.run_dir,
                       resume=cell.run_dir if state == "resume" else None, limit_train=options.limit_train,
                       limit_test=options.limit_test, console=console, progress=options.progress,
                       quiet=options.quiet, observers=observers,
                       **({} if options.log_every is None else {"log_every": options.log_every}))
    except ArchspecError as e:  # say which cell failed; the finished ones stay done
        raise ArchspecError(f"{e.message} (cell {cell.index}: {cell.label()})", file=e.file, line=e.line,
                            col=e.col, path=e.path, hint=e.hint) from None
    return CellOutcome(cell.index, result.status, result.metrics, resumed=state == "resume", host=host)


def run(cells: list[Cell], out: Path, *, data: str | None = None, data_dir: str | Path | None = None,
        device: str = "auto", limit_train: int | None = None, limit_test: int | None = None, console=None,
        progress: bool = True, quiet: bool = False, log_every: float | None = None, executor=None) -> SweepResult:
    """Train the cells (skipping finished ones) on `executor` (default: here, in order); stop
    handing out cells at the first interrupted one (Ctrl-C). The folder is locked meanwhile."""
    from rich.console import Console
    from rich.markup import escape

    from archspec.experiments.executors import LocalExecutor
    from archspec.experiments.folder_lock import lock_folder

    console = console or Console()
    executor = executor or LocalExecutor()
    local = executor.name == "local"
    options = TrainOptions(data=data, data_dir=data_dir, device=device, limit_train=limit_train,
                           limit_test=limit_test, progress=progress and local, quiet=quiet, log_every=log_every)
    if not local:  # workers may start in another directory (or on another node): give them whole paths
        options = for_workers(options, executor)
        cells = [replace(cell, run_dir=cell.run_dir.absolute()) for cell in cells]
    result = SweepResult(out=out, cells=cells)
    with lock_folder(out) as lock:
        queue = []
        for cell in cells:
            if cell_state(cell) == "done":
                status = json.loads((cell.run_dir / "summary.json").read_text(encoding="utf-8")).get("status")
                console.print(f"{_head(cell, cells)}: already {escape(str(status))}, skipped "
                              f"({escape(str(cell.run_dir))})", highlight=False)
                result.statuses[cell.index] = str(status)
            else:
                queue.append(cell)
        running: dict[Any, Cell] = {}
        while queue or running:
            while queue and not result.interrupted and (not local or not running):
                cell = queue.pop(0)
                verb = "resuming" if cell_state(cell) == "resume" else "training"
                console.print(f"{_head(cell, cells)}: {verb if local else 'queued'} -> {escape(str(cell.run_dir))}",
                              highlight=False)
                running[executor.submit(run_cell, cell, options, None if local else lock.token,
                                        label=f"cell {cell.index}")] = cell
            if not running:
                break
            for handle in executor.wait(list(running)):
                cell = running.pop(handle)
                try:
                    outcome = executor.result(handle)
                except BaseException:
                    executor.cancel(list(running))
                    raise
                result.statuses[cell.index] = outcome.status
                if not local:
                    console.print(f"{_head(cell, cells)}: {escape(outcome.status)}{_acc(outcome)} "
                                  f"on {escape(outcome.host)}" + (" (resumed)" if outcome.resumed else ""),
                                  highlight=False)
                if outcome.status == "interrupted":
                    result.interrupted = True
    return result


def for_workers(options: TrainOptions, executor) -> TrainOptions:
    """The options for a task that may start elsewhere: the data folder as a whole path, and torch's
    thread count set to the CPUs the task reserved."""
    return replace(options, data_dir=None if options.data_dir is None else Path(options.data_dir).absolute(),
                   threads=executor.threads())


def _head(cell: Cell, cells: list[Cell]) -> str:
    from rich.markup import escape

    return f"[bold][{cell.index}/{len(cells)}][/] {escape(cell.label())}"


def _acc(outcome: CellOutcome) -> str:
    accs = [row.get("test_acc") for row in outcome.metrics if row.get("test_acc") is not None]
    return f", test accuracy {100 * accs[-1]:.2f}%" if accs else ""


def band(runs_by_spec: dict[str, list], path: str | Path, *, title: str = "", fmt: str | None = None,
         dpi: int | None = None) -> Path:
    """sweep --band: the min-max band of the training loss across the grid, one band per spec: per step
    (steps.csv) when every run of the spec has per-step losses, else per epoch."""
    from archspec.figures import DEFAULT_DPI, band_figure, write_figure

    if not any(run.metrics for runs in runs_by_spec.values() for run in runs):
        raise ArchspecError("no cell has metrics yet: nothing to draw", path="--band")
    groups = {label: [run.curves() for run in runs] for label, runs in runs_by_spec.items()}
    return write_figure(band_figure(groups, key="train_loss", title=title), path, fmt=fmt, dpi=dpi or DEFAULT_DPI)
